"""Run one loader outside the manager, for tests and benchmarks.

It starts the loader exactly as the manager does (bootstrap on stdin, lifecycle socketpair,
own session, the SDK directory symlink) and waits for its first lifecycle event.
Never imported by the loader itself.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from typing import Any, Dict, List, Optional, Tuple

from ..protocol.client import Client
from ..protocol.framing import FrameDecoder
from .launch import bootstrap_argv, make_sdk_dir


def file_target(
    path: str, attribute: Optional[str] = None, working_directory: Optional[str] = None
) -> Dict[str, Any]:
    return {
        "kind": "python_file",
        "python_file": path,
        "module_name": None,
        "attribute": attribute,
        "working_directory": working_directory or os.path.dirname(path),
    }


def module_target(
    module: str, working_directory: str, attribute: Optional[str] = None
) -> Dict[str, Any]:
    return {
        "kind": "python_module",
        "python_file": None,
        "module_name": module,
        "attribute": attribute,
        "working_directory": working_directory,
    }


class LoaderProcess:
    """One loader process; `start()` returns its first lifecycle event ("loaded"/"load_error")."""

    def __init__(
        self,
        python: str,
        target: Dict[str, Any],
        runtime_dir: str,
        *,
        location: str = "test",
        listen: Optional[str] = None,
        secret: Optional[str] = None,
        lifeline: bool = True,
        env: Optional[Dict[str, str]] = None,
        max_frame_bytes: int = 64 * 1024 * 1024,
        tls: Optional[Dict[str, str]] = None,
        extra_bootstrap: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.python = python
        self.runtime_dir = runtime_dir
        self.location = location
        self.secret = secret or secrets.token_hex(16)
        self.address = listen or f"unix:{os.path.join(runtime_dir, location + '.sock')}"
        self.bootstrap: Dict[str, Any] = {
            "location": location,
            "listen": self.address,
            "secret": self.secret,
            "status_fd": None,
            "target": target,
            "max_frame_bytes": max_frame_bytes,
            "tls": tls,
            "protocol": 1,
        }
        self.bootstrap.update(extra_bootstrap or {})
        self.use_lifeline = lifeline
        self.env = env
        self.stdout_path = os.path.join(runtime_dir, f"{location}.stdout")
        self.stderr_path = os.path.join(runtime_dir, f"{location}.stderr")
        self.process: Optional[subprocess.Popen] = None
        self.status: Optional[socket.socket] = None
        self.events: List[Any] = []
        self._decoder = FrameDecoder()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def spawn(self, bootstrap_line: Optional[bytes] = None) -> None:
        os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)
        sdk_dir = make_sdk_dir(self.runtime_dir)
        child_end = None
        pass_fds: tuple = ()
        if self.use_lifeline:
            self.status, child_end = socket.socketpair()
            self.bootstrap["status_fd"] = child_end.fileno()
            pass_fds = (child_end.fileno(),)
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            try:
                self.process = subprocess.Popen(
                    bootstrap_argv(self.python, sdk_dir),
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    pass_fds=pass_fds,
                    start_new_session=True,
                    env=self.env,
                )
            finally:
                if child_end is not None:
                    child_end.close()
        assert self.process.stdin is not None
        line = (
            bootstrap_line
            if bootstrap_line is not None
            else json.dumps(self.bootstrap).encode() + b"\n"
        )
        try:
            self.process.stdin.write(line)
            self.process.stdin.close()
        except BrokenPipeError:
            pass

    def next_event(self, timeout: float = 30.0) -> Any:
        """The next lifecycle notification, or None on EOF."""
        assert self.status is not None
        deadline = time.monotonic() + timeout
        while not self.events:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no lifecycle event from the loader")
            self.status.settimeout(remaining)
            data = self.status.recv(65536)
            if not data:
                return None
            self.events.extend(self._decoder.feed(data))
        return self.events.pop(0)

    def start(self, timeout: float = 30.0) -> Any:
        self.spawn()
        if not self.use_lifeline:
            self.wait_listening(timeout)
            return None
        return self.next_event(timeout)

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Without a lifeline: poll until the socket accepts connections."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client(timeout=1).close()
                return
            except OSError:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"loader exited with {self.process.returncode}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def client(self, **kwargs: Any) -> Client:
        return Client(self.address, self.secret, **kwargs)

    def stderr_text(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stdout_text(self) -> str:
        with open(self.stdout_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def close_lifeline(self) -> None:
        if self.status is not None:
            self.status.close()
            self.status = None

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM, then SIGKILL the whole group; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 15)
            except OSError:
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, 9)  # whatever is left of its group
        except OSError:
            pass
        returncode = self.process.wait()
        self.close_lifeline()
        return returncode

    def __enter__(self) -> LoaderProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def start_fork_server(
    python: str, sdk_dir: str, env: Optional[Dict[str, str]] = None, timeout: float = 60.0
) -> Tuple[subprocess.Popen, socket.socket]:
    """Start a fork server (loader/forkserver.py) under `python` as the manager does: its
    own session, cwd /, the interpreter's start-up variables of `env` (default: ours) only,
    one end of a SOCK_SEQPACKET pair as its status socket; wait for its `ready` message.

    Returns the process and our end of the pair (its timeout is `timeout`). Raises
    RuntimeError (the server killed) if it does not say it is ready.
    """
    from . import forkserver

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(
        forkserver.argv(python, sdk_dir, theirs.fileno()),
        pass_fds=(theirs.fileno(),),
        env=forkserver.start_vars(dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")),
        cwd="/",
        start_new_session=True,
    )
    theirs.close()
    ours.settimeout(timeout)
    try:
        ready = json.loads(ours.recv(65536) or b"{}")
    except (OSError, ValueError):
        ready = {}
    if ready.get("ready") is not True:
        ours.close()
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the fork server under {python} did not get ready: {ready}")
    return proc, ours
