"""Spawning a loader process and stopping it together with everything it spawned.

Each location runs in its own session (so its own process group); a lifecycle socket
inherited by the child tells it when the manager is gone, even after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import psutil

from workspace_manager.protocol import framing


@dataclass
class SpawnedLoader:
    process: asyncio.subprocess.Process
    status_reader: asyncio.StreamReader
    status_writer: asyncio.StreamWriter
    started_at: float  # time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid


async def spawn_loader(
    argv: Sequence[str],
    bootstrap: dict,
    *,
    cwd: str,
    env: Dict[str, str],
) -> SpawnedLoader:
    """Start a loader in its own session; its stdout/stderr are pipes for the log reader."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        bootstrap = dict(bootstrap, status_fd=child_end.fileno())
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            pass_fds=(child_end.fileno(),),
            start_new_session=True,
        )
    except BaseException:
        parent_end.close()
        raise
    finally:
        child_end.close()
    started = time.monotonic()
    assert process.stdin is not None
    process.stdin.write(json.dumps(bootstrap).encode() + b"\n")
    try:
        await process.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # it died at once; the exit is reported by wait()
    process.stdin.close()
    reader, writer = await asyncio.open_unix_connection(sock=parent_end, limit=2**20)
    return SpawnedLoader(process, reader, writer, started)


async def read_status_events(reader: asyncio.StreamReader, max_frame: int) -> List[object]:
    """Read frames from the lifecycle channel until one arrives or EOF (empty list)."""
    decoder = framing.FrameDecoder(max_frame)
    while True:
        data = await reader.read(65536)
        if not data:
            return []
        events = decoder.feed(data)
        if events:
            return events


def describe_exit(returncode: Optional[int]) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


class ProcessTable:
    """Who is whose child, for every process on the machine, rescanned at most every
    ``max_age`` seconds and shared by all locations.

    Memory sampling needs each location's descendants. psutil's ``children(recursive=True)``
    reads every ``/proc/*/stat`` per call; doing that for each location at each sample was
    nearly all of an idle manager's CPU (50 locations: ~6% of a core). One shared scan per
    period costs the same for any number of locations; a child spawned since the last scan
    is counted from the next one. Killing never uses this table (see `process_tree`).
    """

    def __init__(self, max_age: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._children: Dict[int, List[int]] = {}
        self._scanned_at: Optional[float] = None

    def descendants(self, pid: int) -> List[int]:
        now = self._clock()
        if self._scanned_at is None or now - self._scanned_at >= self.max_age:
            self._children = _children_map()
            self._scanned_at = now
        found: List[int] = []
        stack = [pid]
        seen = {pid}
        while stack:
            for child in self._children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    found.append(child)
                    stack.append(child)
        return found


def _children_map() -> Dict[int, List[int]]:
    """parent pid -> child pids. On Linux straight from ``/proc/*/stat`` (psutil's
    `process_iter` also checks each process's identity, several times the cost)."""
    children: Dict[int, List[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = None
    if entries is None or not os.path.exists("/proc/self/stat"):
        for proc in psutil.process_iter(["ppid"]):
            ppid = proc.info.get("ppid")
            if ppid is not None:
                children.setdefault(ppid, []).append(proc.pid)
        return children
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rfind(b")") + 2 :].split(None, 2)  # state, ppid, ...
        if len(fields) >= 2:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


#: The manager's one table (every location of a manager shares one event loop).
PROCESS_TABLE = ProcessTable()


def process_tree(pid: int) -> List[psutil.Process]:
    """The process and all its descendants, found before anything is killed."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def signal_tree(pid: int, pgid: Optional[int], sig: int, known: Sequence[psutil.Process]) -> None:
    """Signal the process group, plus any descendant that left the group (setsid, double fork)."""
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in known:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


async def terminate_tree(
    process: asyncio.subprocess.Process, grace: float = 3.0, kill_wait: float = 2.0
) -> None:
    """SIGTERM the location's whole tree, then SIGKILL whatever is left after ``grace``."""
    pid = process.pid
    known = process_tree(pid)
    pgid = pid  # start_new_session: the loader leads its own group
    signal_tree(pid, pgid, signal.SIGTERM, known)
    deadline = time.monotonic() + grace
    if process.returncode is None:
        try:
            await asyncio.wait_for(process.wait(), grace)
        except asyncio.TimeoutError:
            pass
    await kill_leftovers(pid, pgid, known, deadline, kill_wait)
    if process.returncode is None:
        await process.wait()


async def kill_leftovers(
    pid: int, pgid: int, known: Sequence[psutil.Process], deadline: float, kill_wait: float
) -> None:
    """Wait out the grace for descendants, then SIGKILL the group and every known descendant."""
    while time.monotonic() < deadline and any(_alive(p) for p in known):
        await asyncio.sleep(0.05)
    survivors = [p for p in known if _alive(p)]
    if survivors or _group_alive(pgid):
        signal_tree(pid, pgid, signal.SIGKILL, survivors)
        end = time.monotonic() + kill_wait
        while time.monotonic() < end and any(_alive(p) for p in survivors):
            await asyncio.sleep(0.02)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
