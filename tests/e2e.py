"""End-to-end helpers: write a workspace into tmp_path, run the real `wsm` command, read its
health endpoint with a real HTTP client, and prove no process is left behind."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import psutil
import yaml

WSM = str(Path(sys.executable).parent / "wsm")
if not os.path.exists(WSM):  # pragma: no cover - installed without console scripts
    WSM = sys.executable


def wsm_argv(*args: str) -> List[str]:
    if WSM == sys.executable:
        return [sys.executable, "-m", "workspace_manager.cli.main", *args]
    return [WSM, *args]


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


class WorkspaceDir:
    """A workspace under construction in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = dict(os.environ)
        self.env["WSM_RUNTIME_DIR"] = str(root / ".wsm-run")
        self.env["WSM_STATE_DIR"] = str(root / ".wsm-state")
        self.env["WSM_CACHE_DIR"] = str(root / ".wsm-cache")
        self.env.pop("PYTHONPATH", None)

    def file(self, relpath: str, text: str) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def workspace(self, data: Any, name: str = "workspace.yaml") -> Path:
        text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
        return self.file(name, text)

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            wsm_argv(*args),
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


class WsmUp:
    """`wsm up` as a real subprocess; use as a context manager so it is always stopped."""

    def __init__(
        self,
        ws: WorkspaceDir,
        *args: str,
        health: bool = True,
        command: str = "up",
        env: Optional[Dict[str, str]] = None,
        prefix: Sequence[str] = (),
    ) -> None:
        """``prefix``: argv to run `wsm` under, which must exec it in the same process
        (e.g. `unshare -m sh -c '... exec "$@"'`), so the tracked tree is wsm's."""
        argv = [command, *args]
        if health:
            argv += ["--health", "127.0.0.1:0"]
        self.ws = ws
        self.proc = subprocess.Popen(
            [*prefix, *wsm_argv(*argv)],
            cwd=ws.root,
            env=env or ws.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.lines: List[str] = []
        self.seen_pids: Set[int] = set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port: Optional[int] = None
        if health:
            match = wait_for(self._health_line, 30, "the health endpoint line")
            self.port = int(match.group(1))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _health_line(self) -> Optional[re.Match]:
        if self.proc.poll() is not None:
            raise AssertionError("wsm up exited early:\n" + self.output())
        for line in self.lines:
            m = re.search(r"health endpoint on http://[^:]+:(\d+)", line)
            if m:
                return m
        return None

    def output(self) -> str:
        return "\n".join(self.lines)

    # -- health endpoint ----------------------------------------------------------------

    def get(self, path: str) -> Tuple[int, str]:
        assert self.port is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def status(self) -> Dict[str, Any]:
        code, body = self.get("/status")
        assert code == 200, body
        return json.loads(body)

    def location(self, name: str) -> Dict[str, Any]:
        return self.status()["locations"][name]

    def wait_state(self, name: str, *states: str, timeout: float = 60.0) -> Dict[str, Any]:
        def check() -> Optional[Dict[str, Any]]:
            self.track()
            loc = self.status()["locations"].get(name)
            return loc if loc and loc["state"] in states else None

        return wait_for(check, timeout, f"{name} to be {'/'.join(states)}")

    def wait_all_settled(self, timeout: float = 60.0) -> Dict[str, Any]:
        def check() -> Optional[Dict[str, Any]]:
            self.track()
            st = self.status()
            done = all(
                loc["state"] in ("ready", "error", "failed") for loc in st["locations"].values()
            )
            return st if done else None

        return wait_for(check, timeout, "every location to settle")

    # -- processes -----------------------------------------------------------------------

    @property
    def _started(self) -> Dict[int, float]:
        """pid -> its start time: a pid reused by an unrelated process (pid_max is 32768
        here, and busy runs wrap it within a minute) is neither "left behind" nor killed.
        Made on first use, so subclasses with an __init__ of their own get it too."""
        return self.__dict__.setdefault("_started_at", {})

    def track(self) -> Set[int]:
        """Remember every process of the run, so `assert_no_leftovers` can check them all."""
        try:
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                try:
                    self._started.setdefault(p.pid, p.create_time())
                except psutil.Error:
                    continue
                self.seen_pids.add(p.pid)
        except psutil.Error:
            pass
        return self.seen_pids

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.track()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("wsm up did not exit after signal:\n" + self.output()) from None
        self._reader.join(5)
        return code

    def assert_no_leftovers(self, timeout: float = 5.0) -> None:
        def gone() -> bool:
            return not [p for p in self.seen_pids if _alive(p, self._started.get(p))]

        try:
            wait_for(gone, timeout, "every process of the run to exit")
        except AssertionError:
            left = [p for p in self.seen_pids if _alive(p, self._started.get(p))]
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            raise AssertionError(f"processes left behind: {left}\n{self.output()}") from None

    def __enter__(self) -> WsmUp:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()
        self.assert_no_leftovers()


def _alive(pid: int, started: Optional[float] = None) -> bool:
    """Running and not a zombie; with `started`, only if it is still that same process."""
    try:
        p = psutil.Process(pid)
        if started is not None and p.create_time() != started:
            return False  # the pid now belongs to another process
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def manager_key(ws: WorkspaceDir) -> str:
    """The runtime/state key of the manager for `ws`'s workspace.yaml."""
    from workspace_manager.supervisor import runtime

    return runtime.manager_key(f"workspace:{ws.root / 'workspace.yaml'}")


def control_call(ws: WorkspaceDir, method: str, params: Dict[str, Any]) -> Any:
    """One call on the control socket of `ws`'s running manager."""
    from workspace_manager.protocol.client import Client
    from workspace_manager.supervisor import runtime

    os.environ["WSM_RUNTIME_DIR"] = ws.env["WSM_RUNTIME_DIR"]
    try:
        record = runtime.find_manager(manager_key(ws))
    finally:
        del os.environ["WSM_RUNTIME_DIR"]
    assert record is not None
    with Client(record.control, record.secret) as client:
        return client.call(method, params)


def probe_imports(
    folder: Path, probe: str, *args: str
) -> Tuple[Any, subprocess.CompletedProcess[str]]:
    """`python -c PROBE ARGS` in `folder` with a WorkspaceDir's private runtime, state and
    cache dirs: (the JSON the probe printed after `MODULES `, the finished process)."""
    done = subprocess.run(
        [sys.executable, "-c", probe, *args],
        cwd=folder,
        env=WorkspaceDir(folder).env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("MODULES ")), None)
    assert line is not None, done.stderr
    return json.loads(line[len("MODULES ") :]), done


def modules_in(modules: List[str], names: Tuple[str, ...]) -> List[str]:
    """The modules that are, or are in, one of the packages `names`."""
    return sorted({m for m in modules for n in names if m == n or m.startswith(n + ".")})
