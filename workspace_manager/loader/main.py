"""The loader's entry point: bootstrap, lifeline, import the code, report, serve.

Started by the manager (docs/architecture.md) as
`<python> -c "import sys; sys.path.insert(0, SDK_DIR); from workspace_manager.loader.main import main; main()"`
with one JSON line on stdin. Exit statuses: 0 clean shutdown, 3 bad bootstrap, 4 load error.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from ..protocol.messages import EXIT_BAD_BOOTSTRAP, EXIT_LOAD_ERROR, EXIT_OK, notification
from . import lifeline
from .bootstrap import Bootstrap, BootstrapError, parse_bootstrap
from .heartbeat import Beat
from .server import Server, log

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Optional

MAX_BOOTSTRAP = 1 << 20


def _read_bootstrap() -> Bootstrap:
    line = sys.stdin.buffer.readline(MAX_BOOTSTRAP)
    devnull = os.open(os.devnull, os.O_RDONLY)  # repository code must not read our stdin
    os.dup2(devnull, 0)
    os.close(devnull)
    return parse_bootstrap(line)


class _Signals:
    """SIGTERM/SIGINT: before serving, exit at once; while serving, a clean shutdown; after the
    manager is gone, nothing (the lifeline thread is killing the process group)."""

    server: Optional[Server] = None

    def handle(self, signum: int, frame: Any) -> None:
        if lifeline.lost.is_set():
            return
        if self.server is None:
            lifeline.exit_now(128 + signum)
        self.server.request_stop()

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle)


def main() -> None:
    signals = _Signals()
    signals.install()  # before the lifeline can fire: our own group SIGTERM must not kill us
    try:
        boot = _read_bootstrap()
    except (BootstrapError, OSError, UnicodeDecodeError) as exc:
        log("?", f"bad bootstrap: {exc}")
        lifeline.exit_now(EXIT_BAD_BOOTSTRAP)
    status: Optional[socket.socket] = None
    if boot.status_fd is not None:
        try:
            status = lifeline.open_channel(boot.status_fd)
        except OSError as exc:
            log(boot.location, f"bad bootstrap: status_fd {boot.status_fd}: {exc}")
            lifeline.exit_now(EXIT_BAD_BOOTSTRAP)
        lifeline.watch(status)
    lifeline.contain(boot.cgroup)  # before any repository code can start a process
    beat: Optional[Beat] = None
    if boot.heartbeat is not None:  # before the code: a wsm fault is not a load error
        try:
            beat = Beat(boot.heartbeat.path, boot.heartbeat.offset)
        except (OSError, ValueError) as exc:
            log(boot.location, f"bad bootstrap: heartbeat {boot.heartbeat.path}: {exc}")
            lifeline.exit_now(EXIT_BAD_BOOTSTRAP)

    # Imported here, not at module level: the SDK is repository-facing code, and an error
    # in it is reported like any other load error.
    try:
        from .methods import Methods
        from .target import load_repositories

        repositories = load_repositories(boot.target)
        methods = Methods(boot.location, repositories)
    except BaseException as exc:
        _report_load_error(boot, status, exc)
        lifeline.exit_now(EXIT_LOAD_ERROR)

    server = Server(
        listen=boot.listen,
        secret=boot.secret,
        location=boot.location,
        methods=methods,
        max_frame=boot.max_frame_bytes,
        tls=boot.tls,
        hello_timeout=boot.hello_timeout,
        beat=beat,
        beat_seconds=boot.heartbeat.seconds if boot.heartbeat is not None else None,
    )
    try:
        server.bind()
    except Exception as exc:
        log(boot.location, f"cannot listen on {boot.listen}: {exc}")
        lifeline.exit_now(1)
    signals.server = server
    lifeline.send(status, notification("loaded", {"repositories": methods.repository_names}))
    if status is None:
        log(boot.location, f"serving {', '.join(methods.repository_names)} on {server.listen}")
    server.serve_forever()
    server.close()
    lifeline.exit_now(EXIT_OK)


def _report_load_error(
    boot: Bootstrap, status: Optional[socket.socket], exc: BaseException
) -> None:
    hint = ""
    try:
        from .methods import load_error, pythonpath_hint

        error = load_error(exc, boot.dropped_pythonpath)
        hint = pythonpath_hint(exc, boot.dropped_pythonpath)
    except BaseException:  # the SDK itself failed to import
        from ..protocol.messages import error_from_exception

        error = error_from_exception(exc)
    if status is not None:
        # The manager keeps the traceback (its log, /status, `wsm list`) and its console
        # shows one line; writing it to stderr too would echo it line by line.
        lifeline.send(status, notification("load_error", {"error": error}))
        return
    text = str(error.get("traceback") or "").rstrip()
    if not text:
        import traceback  # only now: a loader that loads pays nothing for it

        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    if hint:
        text = f"{text}\n{hint}"
    log(boot.location, f"failed to load {_describe(boot)}:\n{text}")


def _describe(boot: Bootstrap) -> str:
    target = boot.target
    what = target.python_file if target.kind == "python_file" else target.module_name
    if target.attribute:
        return f"{what} (attribute {target.attribute})"
    return str(what)
