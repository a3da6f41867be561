"""A run process's entry point: bootstrap, lifeline, import the code, run one job, report.

Started by the manager (docs/daemon.md) as
`<python> -c "import sys; sys.path.insert(0, SDK_DIR); from workspace_manager.runner.main import main; main()"`
with one JSON line on stdin, written when the manager has the run for it: the process may
be started ahead (runs/prestart.py), so it imports what it needs before it reads the line.
With `hold` in the bootstrap it loads the job, sends `loaded` and waits for a `go` line on
stdin before the job starts (EOF instead: the run was not recorded, exit 0 with nothing
run). Events go to `status_fd` (runner/events.py). Exit statuses: 0 success, 1 the job
failed, 3 bad bootstrap, 4 load error; a SIGTERM while the job runs raises `RunInterrupted`
in it (its `finally` blocks run) and exits 143, as a shell reports it.
"""

from __future__ import annotations

import os
import signal
import sys

from ..loader import lifeline
from ..protocol.messages import EXIT_BAD_BOOTSTRAP, EXIT_LOAD_ERROR, EXIT_OK
from .bootstrap import BootstrapError, RunBootstrap, parse_run_bootstrap
from .events import Channel, capture_output

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional

EXIT_JOB_FAILED = 1
MAX_BOOTSTRAP = 1 << 24  # run_config travels in it


class RunInterrupted(BaseException):
    """Raised in the job when the run is asked to stop (SIGTERM, SIGINT): Dagster's
    DagsterExecutionInterruptedError. A BaseException, so `except Exception` in the job does
    not swallow it."""


def _say(text: str) -> None:
    print(f"wsm-run: {text}", file=sys.stderr, flush=True)


class _Signals:
    """SIGTERM/SIGINT: before the job runs, exit at once; while it runs, RunInterrupted in
    the job; once the manager is gone, nothing (the lifeline thread kills our tree)."""

    running = False

    def handle(self, signum: int, frame: Any) -> None:
        if lifeline.lost.is_set():
            return
        if not self.running:
            lifeline.exit_now(128 + signum)
        self.running = False  # a second signal while unwinding exits at once
        raise RunInterrupted(f"the run was asked to stop ({signal.Signals(signum).name})")

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle)


def _read_bootstrap() -> RunBootstrap:
    line = sys.stdin.buffer.readline(MAX_BOOTSTRAP)
    if not line:  # started ahead and not used (or the manager is gone): nothing to do
        lifeline.exit_now(EXIT_OK)
    return parse_run_bootstrap(line)


def _close_stdin(hold: bool) -> Optional[int]:
    """Point fd 0 at /dev/null (the job must not read our stdin); with `hold`, the pipe is
    kept on a private fd for the `go` line, out of processes the job starts."""
    kept = None
    if hold:
        kept = os.dup(0)
        os.set_inheritable(kept, False)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return kept


def _wait_for_go(fd: int) -> None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 16)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    if data.strip() != b"go":  # EOF: the run was not recorded, it must not run
        lifeline.exit_now(EXIT_OK)


def _error(exc: BaseException) -> Dict[str, Any]:
    from ..protocol.messages import error_from_exception

    # the runner's own frames first in the traceback say nothing to the user
    return error_from_exception(exc, "UserCodeError", (os.path.dirname(os.path.dirname(__file__)),))


def main() -> None:
    signals = _Signals()
    signals.install()  # before the lifeline can fire: our own group SIGTERM must not kill us
    _prepare()
    try:
        boot = _read_bootstrap()
    except (BootstrapError, OSError, UnicodeDecodeError) as exc:
        _say(f"bad bootstrap: {exc}")
        lifeline.exit_now(EXIT_BAD_BOOTSTRAP)
    sock = None
    if boot.status_fd is not None:
        try:
            sock = lifeline.open_channel(boot.status_fd)
        except OSError as exc:
            _say(f"bad bootstrap: status_fd {boot.status_fd}: {exc}")
            lifeline.exit_now(EXIT_BAD_BOOTSTRAP)
        lifeline.watch(sock)
    go_fd = _close_stdin(boot.hold)
    lifeline.contain(boot.cgroup)  # before any repository code can start a process
    os.environ["WSM_RUN_ID"] = boot.run_id
    channel = Channel(sock)
    if sock is not None:
        capture_output(channel)  # before the code is imported: its prints are the run's
    job = _load(boot, channel)
    channel.send("loaded", pid=os.getpid())
    if go_fd is not None:
        _wait_for_go(go_fd)
    log = _logger_maker(boot.run_id, channel)
    channel.send("started")
    signals.running = True
    try:
        result = job.execute(boot.run_config, run_id=boot.run_id, tags=boot.tags, log=log)
        signals.running = False
    except BaseException as exc:  # SystemExit and RunInterrupted too: the job did not finish
        signals.running = False
        error = _error(exc)
        channel.send("failure", stage="job", error=error)
        if sock is None:
            _say(f"job {boot.job} failed:\n{str(error.get('traceback') or '').rstrip()}")
        lifeline.exit_now(
            128 + signal.SIGTERM if isinstance(exc, RunInterrupted) else EXIT_JOB_FAILED
        )
    from ..sdk.values import plain_or_repr

    channel.send("success", result=plain_or_repr(result))
    lifeline.exit_now(EXIT_OK)


def _logger_maker(run_id: str, channel: Channel) -> Callable[[], Any]:
    """What makes `context.log` when the job first reads it (runner/runlog.py): a job that
    never logs imports no `logging`."""

    def make() -> Any:
        from .runlog import run_logger

        return run_logger(run_id, channel)

    return make


def _prepare() -> None:
    """Import what loading a job needs (the SDK, the loader's target code) before the
    bootstrap is read: a process started ahead of its run has this done when the run comes.
    A failure here shows again, with its traceback, where the job is loaded."""
    try:
        from ..loader import target  # noqa: F401
        from ..sdk import evaluation, values  # noqa: F401
    except BaseException:
        pass


def _load(boot: RunBootstrap, channel: Channel) -> Any:
    """Import the location's code as its loader does and find the job; on any error send
    `failure` (stage "load") and exit 4."""
    try:
        from ..loader.target import load_repositories
        from ..sdk.evaluation import select_repository

        repositories = load_repositories(boot.target)
        repo = select_repository(repositories, boot.repository, kind="job", name=boot.job)
        return repo.get_job(boot.job)
    except BaseException as exc:
        error = _load_error(exc, boot.dropped_pythonpath)
        if type(exc).__name__ == "NotFoundError":  # no such job: the message says it all
            error = {"type": "NotFound", "message": str(exc), "traceback": None}
        channel.send("failure", stage="load", error=error)
        if channel.sock is None:
            _say(f"cannot load job {boot.job}:\n{str(error.get('traceback') or error['message'])}")
        lifeline.exit_now(EXIT_LOAD_ERROR)


def _load_error(exc: BaseException, dropped_pythonpath: Optional[str]) -> Dict[str, Any]:
    try:
        from ..loader.methods import load_error

        return load_error(exc, dropped_pythonpath)
    except BaseException:  # the SDK itself failed to import
        import traceback

        return {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        }
