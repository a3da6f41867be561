"""The Dagster side of the bench: a throwaway venv, `dagster api grpc`, and its own gRPC client.

Two halves in one file. `ensure_venv` and `run` are called by bench/run.py in
wsm's interpreter (standard library only). `main` runs inside the Dagster venv
(`<venv>/bin/python bench/dagster_location.py ...`), spawns the code server the
way Dagster's own tooling does, measures it with `DagsterGrpcClient`, and prints
one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import measure

#: Where the bench keeps what it installs between runs: $XDG_CACHE_HOME/wsm-bench.
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wsm-bench"
DEFAULT_VENV = CACHE_ROOT / "dagster-venv"
_READY_MARK = ".wsm-bench-ready"
_POLL_S = 0.002


# --- in wsm's interpreter -------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path = DEFAULT_VENV, log=print, spec: str = "dagster") -> Optional[Path]:
    """The venv's python with `spec` (a pip requirement) installed, built once and reused.

    None if the install fails. A venv without the ready mark (an interrupted install) is
    rebuilt from scratch.
    """
    python = venv_python(venv)
    if (venv / _READY_MARK).exists() and python.exists():
        return python
    install_log = venv.parent / f"{venv.name}-install.log"
    log(f"installing dagster into {venv} (once; reused by later runs; log: {install_log}) ...")
    try:
        if venv.exists():
            shutil.rmtree(venv)
        venv.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log(f"could not install dagster: {exc}")
        return None
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", spec],
        [str(python), "-c", "import dagster"],
    ]
    try:
        with open(install_log, "wb") as out:
            for step in steps:
                subprocess.run(step, check=True, stdout=out, stderr=subprocess.STDOUT)
    except (OSError, subprocess.CalledProcessError) as exc:
        tail = install_log.read_text(errors="replace").splitlines()[-5:]
        log(f"could not install dagster ({exc}):\n" + "\n".join(tail))
        shutil.rmtree(venv, ignore_errors=True)
        return None
    (venv / _READY_MARK).write_text("ok\n")
    return python


def run(python: Path, repo_file: Path, runs: int, pings: int, snapshots: int) -> Dict:
    """Run `main` under the venv's python; its JSON result."""
    argv = [
        str(python),
        str(Path(__file__).resolve()),
        "--repo-file",
        str(repo_file),
        "--runs",
        str(runs),
        "--pings",
        str(pings),
        "--snapshots",
        str(snapshots),
    ]
    proc = measure.spawn(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate()
    finally:
        measure.stop(proc, grace_s=15.0)  # time for it to stop the code servers it started
    if proc.returncode != 0:
        raise RuntimeError(f"the Dagster driver failed with status {proc.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1])


# --- inside the Dagster venv ----------------------------------------------------------


class DagsterLocation:
    """One `dagster api grpc` process on a Unix socket, started like Dagster's tooling does."""

    def __init__(self, repo_file: Path, workdir: Path, children: measure.Children) -> None:
        self.repo_file = repo_file
        self.socket = str(workdir / f"dagster-{len(os.listdir(workdir))}.sock")
        self.log_path = workdir / (Path(self.socket).stem + ".log")
        self._children = children
        self._workdir = workdir
        self.proc: Optional[subprocess.Popen] = None

    def argv(self) -> List[str]:
        return [
            sys.executable,
            "-m",
            "dagster",
            "api",
            "grpc",
            "--socket",
            self.socket,
            "--python-file",
            str(self.repo_file),
            "--working-directory",
            str(self.repo_file.parent),
            "--location-name",
            "bench",
            "--log-level",
            "warning",
        ]

    def start(self, timeout_s: float = 300.0) -> float:
        """Spawn and wait for the first answered ping; seconds from spawn to that answer."""
        from dagster._core.errors import DagsterUserCodeUnreachableError
        from dagster._grpc.client import DagsterGrpcClient

        env = measure.bench_env(DAGSTER_HOME=str(self._workdir))
        log = open(self.log_path, "wb")
        t0 = time.perf_counter()
        self.proc = self._children.add(
            measure.spawn(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        )
        log.close()
        client = DagsterGrpcClient(socket=self.socket)
        deadline = t0 + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster api grpc exited:\n{self.log_path.read_text()}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"dagster api grpc not answering after {timeout_s}s")
            if os.path.exists(self.socket):
                try:
                    client.ping("")
                    return time.perf_counter() - t0
                except DagsterUserCodeUnreachableError:
                    pass
            time.sleep(_POLL_S)

    def stop(self) -> None:
        if self.proc is not None:
            measure.stop(self.proc)


def _snapshot_calls(socket: str):
    """The two ways to fetch a repository snapshot from a Dagster code server, with decode."""
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value

    client = DagsterGrpcClient(socket=socket)
    origin = RemoteRepositoryOrigin(
        GrpcServerCodeLocationOrigin(host="localhost", socket=socket, location_name="bench"),
        "bench_repo",
    )

    def fetch(defer: bool) -> int:
        data = client.external_repository(origin, defer_snapshots=defer)
        snap = deserialize_value(data, RepositorySnap)
        return len(snap.get_job_refs() if defer else snap.get_job_datas())

    return lambda: fetch(False), lambda: fetch(True)


def _persistent_ping(socket: str):
    """Ping over one long-lived channel: the protocol's cost without the client's per-call channel."""
    import grpc
    from dagster._grpc.__generated__ import dagster_api_pb2
    from dagster._grpc.__generated__.dagster_api_pb2_grpc import DagsterApiStub

    channel = grpc.insecure_channel("unix:" + socket)
    stub = DagsterApiStub(channel)
    request = dagster_api_pb2.PingRequest(echo="")
    return channel, lambda: stub.Ping(request, timeout=30)


def measure_all(repo_file: Path, runs: int, pings: int, snapshots: int) -> Dict:
    """Every Dagster figure: startup and memory overheads, ping, snapshot."""
    from dagster._grpc.client import DagsterGrpcClient

    repo_file = repo_file.resolve()
    module = repo_file.stem
    bare_argv = measure.bare_import_argv(sys.executable, [str(repo_file.parent)], module)
    workdir = Path(tempfile.mkdtemp(prefix="wsm-bench-dagster-"))
    try:
        with measure.Children() as children:
            located: List[Dict[str, float]] = []
            bare: List[Dict[str, float]] = []
            # One untimed round first: writes the .pyc, warms the page cache.
            for i in range(runs + 1):
                bare_run = measure.measure_bare_import(
                    bare_argv, cwd=str(repo_file.parent), env=measure.bench_env()
                )
                loc = DagsterLocation(repo_file, workdir, children)
                seconds = loc.start()
                rss = measure.rss_bytes(loc.proc.pid)  # type: ignore[union-attr]
                loc.stop()
                if i:
                    bare.append(bare_run)
                    located.append({"seconds": seconds, "rss_bytes": rss})
            result: Dict = {"spawn": measure.summarize_spawn(located, bare)}

            loc = DagsterLocation(repo_file, workdir, children)
            loc.start()
            client = DagsterGrpcClient(socket=loc.socket)
            result["ping"] = measure.time_calls(lambda: client.ping(""), pings, warmup=20)
            channel, ping = _persistent_ping(loc.socket)
            result["ping_one_channel"] = measure.time_calls(ping, pings, warmup=20)
            channel.close()
            full, deferred = _snapshot_calls(loc.socket)
            result["snapshot"] = measure.time_median_ms(full, snapshots, warmup=1)
            result["snapshot_deferred"] = measure.time_median_ms(deferred, snapshots, warmup=1)
            result["jobs_in_snapshot"] = full()
            loc.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    import dagster

    result["version"] = dagster.__version__
    result["python"] = sys.version.split()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure a Dagster code server (bench driver).")
    parser.add_argument("--repo-file", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=3)
    args = parser.parse_args()
    measure.sigterm_as_keyboard_interrupt()
    try:
        result = measure_all(args.repo_file, args.runs, args.pings, args.snapshots)
    except KeyboardInterrupt:
        sys.exit(130)  # every code server it started is stopped by now
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
