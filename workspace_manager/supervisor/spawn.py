"""Starting a process that waits for its bootstrap line: the part of a spawn that needs no
event loop, so `wsm job execute` starts its run's process before it imports asyncio
(runs/execute.py). supervisor/process.py adopts it (`HeldSpawn.release`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional, Sequence

from workspace_manager.supervisor import fdlimit, orphans
from workspace_manager.supervisor.cgroup import Cgroup

if TYPE_CHECKING:
    from workspace_manager.supervisor.process import Child, SpawnedLoader


@dataclass
class HeldSpawn:
    """A process started in its own session (and cgroup) that waits for its bootstrap line
    on stdin: a run's process started ahead of its run (runs/execute.py, the prestart)."""

    popen: subprocess.Popen
    parent_end: socket.socket
    status_fd: int  # the status socket's fd number in the child
    started_at: float  # time.monotonic()
    cgroup: Optional[Cgroup]
    child: Optional[Child] = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def watch(self) -> Child:
        """See its exit from now on (process.Child); in the event loop's thread."""
        if self.child is None:
            from workspace_manager.supervisor.process import Child

            self.child = Child(self.popen)
        return self.child

    def write_bootstrap(self, bootstrap: dict, *, keep_stdin: bool = False) -> None:
        """Write the bootstrap line (with `status_fd` and `cgroup` added). With
        `keep_stdin` the child's stdin stays open for a later line (the runner's `go`);
        otherwise it is closed: EOF after the line."""
        popen = self.popen
        boot = dict(bootstrap, status_fd=self.status_fd)
        if self.cgroup is not None:
            boot["cgroup"] = str(self.cgroup.path)
        assert popen.stdin is not None
        try:
            # A small line into a fresh pipe (64 KiB): never blocks. (A larger run_config
            # blocks only until the child, already waiting for it, has read it.)
            popen.stdin.write(json.dumps(boot).encode() + b"\n")
            popen.stdin.flush()
            if not keep_stdin:
                popen.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died at once; the exit is reported by wait()

    async def release(
        self, bootstrap: Optional[dict] = None, *, keep_stdin: bool = False
    ) -> SpawnedLoader:
        """Write the bootstrap line (`write_bootstrap`; None: it was written already) and
        adopt the pipes, the exit watched (`watch`). `SpawnedLoader.stdin` is the child's
        stdin while it is still open."""
        import asyncio

        from workspace_manager.supervisor.process import SpawnedLoader, pipe_reader

        child = self.watch()
        if bootstrap is not None:
            self.write_bootstrap(bootstrap, keep_stdin=keep_stdin)
        popen = self.popen
        assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
        stdout = await pipe_reader(popen.stdout)
        stderr = await pipe_reader(popen.stderr)
        reader, writer = await asyncio.open_unix_connection(sock=self.parent_end, limit=2**20)
        stdin = None if popen.stdin.closed else popen.stdin
        return SpawnedLoader(
            child, stdout, stderr, reader, writer, self.started_at, self.cgroup, stdin
        )

    async def discard(self) -> None:
        """Kill the unused process (nothing of the user's has run in it) and free its
        pipes, socket and cgroup."""
        import asyncio

        child = self.watch()
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await child.wait()
        for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        self.parent_end.close()
        if self.cgroup is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.cgroup.remove)


def start_held(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Dict[str, str],
    cgroup: Optional[Cgroup] = None,
) -> HeldSpawn:
    """Start `argv` in its own session with pipes for stdin, stdout and stderr and a status
    socket (its fd number goes in the bootstrap), inside `cgroup` when it can be joined;
    the bootstrap is `HeldSpawn.release`d later, and the line is written only once the
    process is in its cgroup: nothing it starts is born outside. Raises OSError when the
    program cannot be started."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    status_fd = child_end.fileno()
    try:
        with orphans.starting():  # may run in a worker thread: never taken for a leftover
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                pass_fds=(child_end.fileno(),),
                start_new_session=True,
            )
            orphans.OWN.add(popen.pid)  # reaped by its `Child` (watch), which discards it
        fdlimit.restore_for(popen.pid)  # the user's soft limit, before any code of theirs runs
    except BaseException:
        parent_end.close()
        raise
    finally:
        child_end.close()
    started = time.monotonic()
    if cgroup is not None:
        try:
            cgroup.add(popen.pid)
        except OSError:  # e.g. not delegated to us: the process tree must do
            cgroup.remove()
            cgroup = None
    return HeldSpawn(popen, parent_end, status_fd, started, cgroup)
