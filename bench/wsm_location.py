"""The wsm side of the bench: our loader spawned directly, without the manager, and our client.

It starts the loader exactly as the supervisor does (docs/architecture.md): an SDK
dir, `bootstrap_argv`, the bootstrap JSON on stdin, a lifecycle socketpair whose
"loaded" notification says the location is listening.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import measure

from workspace_manager.loader.launch import bootstrap_argv, make_sdk_dir
from workspace_manager.protocol.client import Client
from workspace_manager.protocol.framing import DEFAULT_MAX_FRAME, FrameDecoder

LOCATION = "bench"
_SCRUBBED_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONEXECUTABLE")


def child_env() -> Dict[str, str]:
    """The environment the supervisor gives a loader (wsm's own variables scrubbed)."""
    env = {k: v for k, v in measure.bench_env().items() if k not in _SCRUBBED_VARS}
    env["WSM_LOCATION"] = LOCATION
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def bare_argv(python: str, sdk_dir: str, repo_file: Path) -> List[str]:
    """A bare interpreter with the loader's flags and sys.path, importing the same file."""
    argv = bootstrap_argv(python, sdk_dir)
    flags = argv[1 : argv.index("-c")]
    bare = measure.bare_import_argv(python, [str(repo_file.parent), sdk_dir], repo_file.stem)
    return [bare[0], *flags, *bare[1:]]


class WsmLocation:
    """One loader process serving `repo_file` on a Unix socket in `workdir`."""

    def __init__(
        self,
        repo_file: Path,
        workdir: Path,
        sdk_dir: str,
        children: measure.Children,
        python: str = sys.executable,
    ) -> None:
        self.repo_file = repo_file
        self.sdk_dir = sdk_dir
        self.python = python
        n = len([p for p in os.listdir(workdir) if p.endswith(".log")])
        self.socket = str(workdir / f"{n}.sock")
        self.log_path = workdir / f"{n}.log"
        self.secret = secrets.token_hex(16)
        self._children = children
        self.proc: Optional[subprocess.Popen] = None
        self._status: Optional[socket.socket] = None
        self.client: Optional[Client] = None

    def bootstrap(self, status_fd: int) -> dict:
        return {
            "location": LOCATION,
            "listen": f"unix:{self.socket}",
            "secret": self.secret,
            "status_fd": status_fd,
            "target": {
                "kind": "python_file",
                "python_file": str(self.repo_file),
                "module_name": None,
                "attribute": None,
                "working_directory": str(self.repo_file.parent),
            },
            "max_frame_bytes": DEFAULT_MAX_FRAME,
            "tls": None,
            "protocol": 1,
        }

    def start(self, timeout_s: float = 120.0) -> float:
        """Spawn, wait for "loaded", connect and ping; seconds from spawn to the answer."""
        parent_end, child_end = socket.socketpair()
        self._status = parent_end
        line = json.dumps(self.bootstrap(child_end.fileno())).encode() + b"\n"
        log = open(self.log_path, "wb")
        try:
            t0 = time.perf_counter()
            self.proc = self._children.add(
                measure.spawn(
                    bootstrap_argv(self.python, self.sdk_dir),
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=log,
                    cwd=str(self.repo_file.parent),
                    env=child_env(),
                    pass_fds=(child_end.fileno(),),
                )
            )
        finally:
            child_end.close()
            log.close()
        self.proc.stdin.write(line)  # type: ignore[union-attr]
        self.proc.stdin.close()  # type: ignore[union-attr]
        self._wait_loaded(t0 + timeout_s)
        self.client = Client(f"unix:{self.socket}", self.secret)
        self.client.call("ping")
        return time.perf_counter() - t0

    def _wait_loaded(self, deadline: float) -> None:
        decoder = FrameDecoder()
        assert self._status is not None
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RuntimeError(f"loader not loaded in time; log:\n{self._log()}")
            ready, _, _ = select.select([self._status], [], [], left)
            if not ready:
                continue
            data = self._status.recv(65536)
            if not data:
                raise RuntimeError(f"loader closed its status channel; log:\n{self._log()}")
            for event in decoder.feed(data):
                if event[1] == "loaded":
                    return
                raise RuntimeError(f"loader reported {event!r}; log:\n{self._log()}")

    def _log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._status is not None:
            self._status.close()  # EOF: the loader stops its process group
            self._status = None
        if self.proc is not None:
            measure.stop(self.proc)


def measure_all(repo_file: Path, runs: int, pings: int, snapshots: int) -> Dict:
    """Every wsm figure: startup and memory overheads, ping, snapshot."""
    repo_file = repo_file.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="wsm-bench-"))
    try:
        sdk_dir = str(make_sdk_dir(str(workdir)))
        bare = bare_argv(sys.executable, sdk_dir, repo_file)
        env = child_env()
        with measure.Children() as children:
            located: List[Dict[str, float]] = []
            bare_runs: List[Dict[str, float]] = []
            # One untimed round first: writes the .pyc, warms the page cache.
            for i in range(runs + 1):
                bare_run = measure.measure_bare_import(bare, cwd=str(repo_file.parent), env=env)
                loc = WsmLocation(repo_file, workdir, sdk_dir, children)
                seconds = loc.start()
                rss = measure.rss_bytes(loc.proc.pid)  # type: ignore[union-attr]
                loc.stop()
                if i:
                    bare_runs.append(bare_run)
                    located.append({"seconds": seconds, "rss_bytes": rss})
            result: Dict = {"spawn": measure.summarize_spawn(located, bare_runs)}

            loc = WsmLocation(repo_file, workdir, sdk_dir, children)
            loc.start()
            client, proc = loc.client, loc.proc
            assert client is not None and proc is not None
            result["ping"] = measure.time_calls(lambda: client.call("ping"), pings, warmup=200)
            placed = measure.ping_by_placement(
                lambda: client.call("ping"), proc.pid, max(1000, pings // 4)
            )
            if placed:
                result["ping_by_placement"] = placed
            result["snapshot"] = measure.time_median_ms(
                lambda: client.call("get_snapshot"), snapshots, warmup=1
            )
            snap = client.call("get_snapshot")
            repo = snap["repositories"][0]
            result["snapshot_counts"] = {
                "jobs": len(repo["jobs"]),
                "schedules": len(repo["schedules"]),
                "sensors": len(repo["sensors"]),
            }
            loc.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["python"] = sys.version.split()[0]
    return result
