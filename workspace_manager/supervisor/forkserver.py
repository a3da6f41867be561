"""Fork servers, the manager's side: one per interpreter, started on first use, each asked
to fork one location per request (the server's side and its protocol: loader/forkserver.py).

A forked location is set up exactly as a spawned one (supervisor/spawn.py): its own session,
stdin/stdout/stderr pipes and status socket made here and handed over with SCM_RIGHTS, its
working directory and environment from the plan, its own cgroup, joined before the
bootstrap line is written. It becomes the manager's own child (the server double-forks and
the manager is the child subreaper), so `process.Child` sees its exit and its status at once.

`ForkServers.spawn` returns None whenever forking cannot give the same result as a spawn,
and the caller spawns as before: fork servers turned off (`WSM_FORKSERVER=off`), the
manager is no child subreaper (a manager embedded in a test), a plan that is not the plain
loader's (`wsm serve`: its own address and TLS), a location whose start-up variables
(`loader.forkserver.start_vars`: PYTHONPATH, LD_PRELOAD, the locale...) differ from its
server's and no server can be added for them, an interpreter whose server would not start
(not CPython, too old for the SDK), a server that died (it is not restarted), or any error
on the way.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import time
from typing import Callable, Deque, Dict, List, Optional, Set, Tuple

from workspace_manager.loader import forkserver as server_side
from workspace_manager.loader.launch import bootstrap_argv
from workspace_manager.supervisor import fdlimit, orphans
from workspace_manager.supervisor.cgroup import Cgroup
from workspace_manager.supervisor.plan import LaunchPlan
from workspace_manager.supervisor.process import Child, SpawnedLoader, in_spawn_thread, pipe_reader

#: Set to "off" (or 0/no/false) to spawn every location as before.
CONTROL_VAR = "WSM_FORKSERVER"

#: At most this many servers (distinct interpreter and start-up variables) per manager.
MAX_SERVERS = 8

#: How long a server may take to import the loader and report ready.
READY_TIMEOUT = 60.0

#: How long a fork may take to be answered (a few ms when the machine is not overloaded).
ANSWER_TIMEOUT = 30.0

#: Requests sent and not yet answered, at most: enough to keep a server forking while the
#: manager's loop is busy, few enough that their descriptors in flight (4 each) stay far
#: below the open-file limit the kernel holds them to (unix(7): ETOOMANYREFS).
MAX_IN_FLIGHT = 64

#: The manager's send buffer on a server's socket (the kernel caps it at net.core.wmem_max):
#: a request carries the location's whole environment, and the default buffer held a few
#: dozen.
SEND_BUFFER = 1 << 20

Key = Tuple[str, Tuple[Tuple[str, str], ...]]


def enabled() -> bool:
    """False when `WSM_FORKSERVER` turns fork servers off."""
    return os.environ.get(CONTROL_VAR, "").strip().lower() not in ("off", "0", "no", "false")


class ForkServerGone(Exception):
    """The server is not (or no longer) usable; the location is spawned instead."""


class ForkedProcess:
    """A location forked by a server and reparented to the manager: the `pid`, `wait()`
    and `returncode` of a `subprocess.Popen`, for `process.Child`. Negative codes are
    signals, as Popen's."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


class ForkServer:
    """One server process for one interpreter and one set of start-up variables."""

    def __init__(
        self,
        python: str,
        start_env: Dict[str, str],
        sdk_dir: str,
        on_message: Callable[[str], None],
    ) -> None:
        self.python = python
        self.start_env = start_env
        self.sdk_dir = sdk_dir
        self._on_message = on_message
        self.child: Optional[Child] = None
        self._sock: Optional[socket.socket] = None
        self._ready: Optional[asyncio.Future] = None
        self._pending: Dict[int, asyncio.Future] = {}
        self._next_id = 0
        self._tasks: List[asyncio.Future] = []
        self.failed: Optional[str] = None  # why it is not usable, once it is not
        self._closing = False
        # requests not yet sent (the socket's buffer was full), in order: (data, descriptors,
        # resolved once sent); sent from one writer callback, as many as fit each time
        self._outbox: Deque[Tuple[int, bytes, List[int], asyncio.Future]] = collections.deque()
        self._writer_armed = False
        self._in_flight: Set[int] = set()  # ids sent whose caller still waits for the answer

    @property
    def pid(self) -> Optional[int]:
        return self.child.pid if self.child else None

    def start(self) -> None:
        """Start the process (in the event loop's thread); `ready` waits for it."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        parent, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            popen = subprocess.Popen(
                server_side.argv(self.python, self.sdk_dir, child_end.fileno()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd="/",  # never a repository's folder: '' on sys.path must find no user code
                env=self.start_env,
                pass_fds=(child_end.fileno(),),
                start_new_session=True,
            )
        except OSError as exc:
            parent.close()
            self._fail(f"cannot start: {exc}")
            return
        finally:
            child_end.close()
        fdlimit.restore_for(popen.pid)  # what it forks gets the user's limit, as a spawn does
        parent.setblocking(False)
        try:
            parent.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass
        self._sock = parent
        self.child = Child(popen)
        loop.add_reader(parent, self._on_readable)
        self._tasks.append(asyncio.ensure_future(self._watch_exit()))
        assert popen.stderr is not None
        self._tasks.append(asyncio.ensure_future(self._pump_stderr(popen.stderr)))

    async def ready(self) -> None:
        """Wait until the server has imported the loader; ForkServerGone if it cannot."""
        if self.failed is not None:
            raise ForkServerGone(self.failed)
        assert self._ready is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT)
        except asyncio.TimeoutError:
            self._fail(f"not ready within {READY_TIMEOUT:g}s")
        if self.failed is not None:
            raise ForkServerGone(self.failed)

    async def _watch_exit(self) -> None:
        assert self.child is not None
        code = await self.child.wait()
        from workspace_manager.supervisor.process import describe_exit

        if not self._closing:
            why = f" ({self.failed})" if self.failed and "socket" not in self.failed else ""
            self._on_message(
                f"fork server ({self.python}) {describe_exit(code)}{why}; "
                "its interpreter's locations are spawned from now on"
            )
        self._fail(f"the fork server {describe_exit(code)}")

    async def _pump_stderr(self, pipe) -> None:  # type: ignore[no-untyped-def]
        reader = await pipe_reader(pipe)
        while True:
            line = await reader.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            if text:
                self._on_message(f"fork server ({self.python}): {text}")

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail(f"its socket failed: {exc}")
                return
            if not data:
                self._fail("its socket closed")
                return
            try:
                message = json.loads(data)
            except ValueError:
                self._fail("it sent a malformed answer")
                return
            if "ready" in message:
                if message.get("ready"):
                    if self._ready is not None and not self._ready.done():
                        self._ready.set_result(None)
                else:
                    self._fail(str(message.get("error") or "not ready"))
                continue
            future = self._pending.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(message)

    def _fail(self, reason: str) -> None:
        """Not usable from now on: every waiting request and `ready` fail."""
        if self.failed is None:
            self.failed = reason
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ForkServerGone(self.failed))
        self._pending.clear()
        while self._outbox:
            future = self._outbox.popleft()[3]
            if not future.done():
                future.set_exception(ForkServerGone(self.failed))
        if self._sock is not None:
            try:
                loop = asyncio.get_running_loop()
                loop.remove_reader(self._sock)
                if self._writer_armed:
                    self._writer_armed = False
                    loop.remove_writer(self._sock)
            except (RuntimeError, ValueError):
                pass

    async def _send(self, request_id: int, data: bytes, fds: List[int]) -> None:
        """One request, sent once the socket has room for it, after those queued before it.

        While 1,000 locations start, the server's socket buffer holds a few dozen requests:
        the rest wait here. One writer callback sends as many as fit whenever the socket has
        room, instead of each waiting sender taking a lock and a loop turn or two of its own
        (at 1,000 locations those turns fed the server slower than it forked). At most
        `MAX_IN_FLIGHT` are sent unanswered. A request whose caller was cancelled meanwhile
        is dropped unsent (its descriptors are closed by then). ForkServerGone when the
        server fails first."""
        if self.failed is not None:
            raise ForkServerGone(self.failed)
        sent = asyncio.get_running_loop().create_future()
        self._outbox.append((request_id, data, fds, sent))
        self._flush()
        await sent

    def _flush(self) -> None:
        """Send the queued requests until the socket is full (then wait for room) or none
        is left."""
        assert self._sock is not None
        while self._outbox and len(self._in_flight) < MAX_IN_FLIGHT:
            request_id, data, fds, sent = self._outbox[0]
            if sent.done():  # its caller was cancelled: not sent, ever
                self._outbox.popleft()
                continue
            try:
                socket.send_fds(self._sock, [data], fds)
            except (BlockingIOError, InterruptedError):
                if not self._writer_armed:
                    self._writer_armed = True
                    asyncio.get_running_loop().add_writer(self._sock, self._flush)
                return
            except OSError as exc:
                self._fail(f"its socket failed: {exc}")
                return
            self._outbox.popleft()
            self._in_flight.add(request_id)
            sent.set_result(None)
        if self._writer_armed:
            self._writer_armed = False
            asyncio.get_running_loop().remove_writer(self._sock)

    async def fork(self, cwd: str, env: Dict[str, str], fds: List[int]) -> Child:
        """Fork a location with these four descriptors (stdin, stdout, stderr, status) and
        adopt it: its exit is watched from the moment its pid is known. ForkServerGone."""
        if self.failed is not None:
            raise ForkServerGone(self.failed)
        self._next_id += 1
        request_id = self._next_id
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        data = json.dumps({"id": request_id, "cwd": cwd, "env": env}).encode()
        # From the fork until its pid reaches us, the location is a child of ours that we
        # do not know: `orphans.collect` must not take it for a leftover meanwhile.
        token = object()
        orphans.IN_FLIGHT.add(token)
        try:
            await self._send(request_id, data, fds)
            try:
                answer = await asyncio.wait_for(future, ANSWER_TIMEOUT)
            except asyncio.TimeoutError:
                self._fail(f"no answer within {ANSWER_TIMEOUT:g}s")  # stuck: not used again
                raise ForkServerGone(self.failed) from None
            pid = answer.get("pid")
            if not isinstance(pid, int):
                raise ForkServerGone(str(answer.get("error") or "no pid in its answer"))
            return Child(ForkedProcess(pid))
        finally:
            self._pending.pop(request_id, None)
            orphans.IN_FLIGHT.discard(token)
            if request_id in self._in_flight:  # answered, or given up on: room for another
                self._in_flight.discard(request_id)
                if self._outbox and self.failed is None:
                    self._flush()

    async def close(self, timeout: float = 2.0) -> None:
        """EOF on its socket ends it; SIGKILL after `timeout`."""
        self._closing = True
        self._fail("closed")
        if self._sock is not None:
            self._sock.close()
        if self.child is not None and self.child.returncode is None:
            try:
                await asyncio.wait_for(self.child.wait(), timeout)
            except asyncio.TimeoutError:
                try:
                    os.killpg(self.child.pid, signal.SIGKILL)
                except OSError:
                    pass
                await self.child.wait()
        for task in self._tasks:
            task.cancel()


class ForkServers:
    """The manager's fork servers, keyed by interpreter and start-up variables."""

    def __init__(self, sdk_dir: str, on_message: Callable[[str], None] = lambda _: None) -> None:
        self.sdk_dir = sdk_dir
        self._on_message = on_message
        self._servers: Dict[Key, ForkServer] = {}

    @property
    def servers(self) -> List[ForkServer]:
        return list(self._servers.values())

    def _server_for(self, plan: LaunchPlan) -> Optional[ForkServer]:
        if not orphans.is_subreaper():
            return None  # the location would be reparented past us: we could not reap it
        if plan.listen is not None or plan.tls is not None or not plan.argv:
            return None
        if not os.path.isdir(plan.cwd):
            return None  # the spawn says why in its own words
        python = str(plan.argv[0])
        if tuple(plan.argv) != tuple(bootstrap_argv(python, self.sdk_dir)):
            return None
        start_env = server_side.start_vars(plan.env)
        key: Key = (python, tuple(sorted(start_env.items())))
        server = self._servers.get(key)
        if server is None:
            if len(self._servers) >= MAX_SERVERS:
                return None
            server = self._servers[key] = ForkServer(
                python, start_env, self.sdk_dir, self._on_message
            )
            server.start()
        return None if server.failed is not None else server

    async def spawn(
        self,
        plan: LaunchPlan,
        bootstrap: dict,
        new_cgroup: Optional[Callable[[], Optional[Cgroup]]],
    ) -> Optional[SpawnedLoader]:
        """Fork the plan's loader from its interpreter's server, in the cgroup `new_cgroup()`
        makes (in a spawn thread: slow kernel writes) when it can join it, and write its
        bootstrap (with `status_fd` and `cgroup` added) once it is there; None when it cannot
        be forked (see the module docstring): spawn it then."""
        started = time.monotonic()  # a first location waits for its server: counted
        server = self._server_for(plan)
        if server is None:
            return None
        try:
            await server.ready()
        except ForkServerGone:
            return None
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours = [stdin_w, stdout_r, stderr_r]
        theirs = [stdin_r, stdout_w, stderr_w, child_end.fileno()]
        try:
            child = await server.fork(plan.cwd, plan.env, theirs)
        except BaseException as exc:  # cancelled too: a child forked meanwhile reads EOF
            for fd in ours:
                os.close(fd)
            parent_end.close()
            if isinstance(exc, (ForkServerGone, OSError)):
                return None
            raise
        finally:
            for fd in theirs[:3]:
                os.close(fd)
            child_end.close()
        cgroup = await in_spawn_thread(lambda: _join_new(new_cgroup, child.pid))
        boot = dict(bootstrap, status_fd=server_side.STATUS_FD)
        if cgroup is not None:
            boot["cgroup"] = str(cgroup.path)
        stdin = open(stdin_w, "wb", buffering=0)
        try:
            stdin.write(json.dumps(boot).encode() + b"\n")  # a fresh pipe: never blocks
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died at once; the exit is reported by wait()
        finally:
            stdin.close()
        try:
            stdout = await pipe_reader(open(stdout_r, "rb", buffering=0))
            stderr = await pipe_reader(open(stderr_r, "rb", buffering=0))
            reader, writer = await asyncio.open_unix_connection(sock=parent_end, limit=2**20)
        except BaseException:  # cancelled: nobody would stop it, so it goes now
            os.kill(child.pid, signal.SIGKILL)
            parent_end.close()
            raise
        return SpawnedLoader(child, stdout, stderr, reader, writer, started, cgroup)

    async def close(self) -> None:
        """Stop every server (the locations they forked are not theirs: they stay)."""
        await asyncio.gather(*(s.close() for s in self._servers.values()), return_exceptions=True)


def _join_new(new_cgroup: Optional[Callable[[], Optional[Cgroup]]], pid: int) -> Optional[Cgroup]:
    """The cgroup `new_cgroup()` makes, with `pid` in it; None when there is none or it
    cannot be joined (e.g. not delegated to us: the process tree must do)."""
    cgroup = new_cgroup() if new_cgroup is not None else None
    if cgroup is None:
        return None
    try:
        cgroup.add(pid)
    except OSError:
        cgroup.remove()
        return None
    return cgroup
