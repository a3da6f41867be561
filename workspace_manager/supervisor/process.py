"""Spawning a loader process and stopping it together with everything it spawned.

Each location runs in its own session (so its own process group); a lifecycle socket
inherited by the child tells it when the manager is gone, even after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import (
    IO,
    TYPE_CHECKING,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Protocol,
    Sequence,
    Set,
    TypeVar,
    Union,
)

from workspace_manager.loader import proctable
from workspace_manager.protocol import framing
from workspace_manager.supervisor import orphans, proctree
from workspace_manager.supervisor.cgroup import Cgroup
from workspace_manager.supervisor.spawn import HeldSpawn, start_held

if TYPE_CHECKING:
    # psutil (~17 ms to import) is imported where a tree is walked or signalled: `wsm job
    # execute` imports this module before it starts its run and needs psutil only after
    import psutil

T = TypeVar("T")


class Reapable(Protocol):
    """What `Child` needs of a process: a `subprocess.Popen`, or a location forked for us
    (supervisor/forkserver.py)."""

    pid: int

    def wait(self) -> int: ...


class Child:
    """A child process whose exit is seen the moment it happens, whatever holds its pipes.

    asyncio's `Process.wait()` returns only once the child has exited *and* every pipe to
    it is closed (CPython gh-119710): a grandchild that inherited stdout kept a dead
    loader "running" until heartbeats ran out. Here the exit comes from a pidfd
    (pidfd_open(2), Linux 5.3) that becomes readable when the process exits; without
    pidfds, from a thread blocked in waitpid(2) on that one pid. Either way the child is
    reaped here and nowhere else. Same shape as `asyncio.subprocess.Process` where it is used
    (`pid`, `returncode`, `wait()`): negative return codes are signals.
    """

    def __init__(self, popen: Union[subprocess.Popen, Reapable]) -> None:
        self.popen = popen
        self.pid = popen.pid
        orphans.OWN.add(self.pid)  # reaped here: never a leftover for `orphans.collect`
        self.returncode: Optional[int] = None
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future = self._loop.create_future()
        self._pidfd: Optional[int] = None
        try:
            self._pidfd = os.pidfd_open(self.pid)  # type: ignore[attr-defined]
            self._loop.add_reader(self._pidfd, self._on_pidfd)
        except (AttributeError, OSError):
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
            threading.Thread(target=self._wait_thread, name=f"wait-{self.pid}", daemon=True).start()

    def _on_pidfd(self) -> None:
        assert self._pidfd is not None
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        self._set(self.popen.wait())  # exited: reaps at once

    def _wait_thread(self) -> None:
        code = self.popen.wait()
        try:
            self._loop.call_soon_threadsafe(self._set, code)
        except RuntimeError:
            pass  # the loop is closed

    def _set(self, code: int) -> None:
        orphans.OWN.discard(self.pid)
        if self.returncode is None:
            self.returncode = code
        if not self._done.done():
            self._done.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._done)


class Waitable(Protocol):
    pid: int

    @property
    def returncode(self) -> Optional[int]: ...

    async def wait(self) -> int: ...


@dataclass
class SpawnedLoader:
    process: Child
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader
    status_reader: asyncio.StreamReader
    status_writer: asyncio.StreamWriter
    started_at: float  # time.monotonic()
    cgroup: Optional[Cgroup] = None
    stdin: Optional[IO[bytes]] = None  # kept open for a later line (HeldSpawn.release)

    @property
    def pid(self) -> int:
        return self.process.pid


async def pipe_reader(pipe: IO[bytes]) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader


async def spawn_loader(
    argv: Sequence[str],
    bootstrap: dict,
    *,
    cwd: str,
    env: Dict[str, str],
    cgroup: Optional[Cgroup] = None,
    new_cgroup: Optional[Callable[[], Optional[Cgroup]]] = None,
) -> SpawnedLoader:
    """Start a loader in its own session (and in ``cgroup``, or the one ``new_cgroup``
    makes, when it can be joined); its stdout/stderr are pipes for the log reader.

    The loader reads its bootstrap line before it runs any repository code, and the line is
    written only once the process is in its cgroup: nothing it starts is born outside.
    Making the cgroup, starting the process and writing the line happen in a worker thread
    (`start_held_off_loop`).
    """
    held = await start_held_off_loop(
        argv, cwd=cwd, env=env, cgroup=cgroup, new_cgroup=new_cgroup, bootstrap=bootstrap
    )
    held.watch()
    return await held.release(None)


async def start_held_off_loop(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Dict[str, str],
    cgroup: Optional[Cgroup] = None,
    new_cgroup: Optional[Callable[[], Optional[Cgroup]]] = None,
    bootstrap: Optional[dict] = None,
) -> HeldSpawn:
    """`spawn.start_held` in a worker thread, after `new_cgroup()` when given, and with
    `bootstrap` written (`HeldSpawn.write_bootstrap`) when given. Each of those blocks: Popen
    returns only once the child has exec'd (CPython's vfork path: 15-60 ms on a loaded
    machine), making and joining a cgroup are slow kernel writes (~2-20 ms each), and a
    pipe write may wait for the GIL. On the loop, 100 locations starting at once queued
    behind each other and every health answer waited. The thread releases the GIL
    meanwhile, so starts overlap and the loop keeps turning. Cancelled meanwhile, the
    process the thread still starts is killed and reaped, never left. Raises OSError as
    `start_held`."""

    def start() -> HeldSpawn:
        group = new_cgroup() if new_cgroup is not None else cgroup
        held = start_held(argv, cwd=cwd, env=env, cgroup=group)
        if bootstrap is not None:
            held.write_bootstrap(bootstrap)
        return held

    future = asyncio.get_running_loop().run_in_executor(_spawn_pool(), start)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_discard_started)
        raise


def in_spawn_thread(work: Callable[[], T]) -> Awaitable[T]:
    """`work()` in one of the threads that start processes (a cgroup to make and join for a
    forked location: supervisor/forkserver.py), never in the loop's default executor."""
    return asyncio.get_running_loop().run_in_executor(_spawn_pool(), work)


#: Starts under way at once. Their own threads: queued in the loop's default executor, 100
#: starts held back what else runs there (opening the run records, code fingerprints), and
#: the health address waited seconds to serve. More at once gains nothing: each waits for
#: its child's exec, and the children share the machine's cores.
SPAWN_THREADS = 4
_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None


def _spawn_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(SPAWN_THREADS, thread_name_prefix="wsm-spawn")
    return _pool


def _discard_started(future: asyncio.Future) -> None:
    """A process started for a spawn that was cancelled meanwhile: kill its process group
    (it leads one; its bootstrap line may be in, so its code may have begun) and its
    cgroup, and reap it. A descendant that left the group goes with the cgroup, or is
    swept as an orphan of a dead loader (orphans.py)."""
    if future.cancelled() or future.exception() is not None:
        return
    held: HeldSpawn = future.result()
    try:
        os.killpg(held.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

    async def discard() -> None:
        try:
            if held.cgroup is not None:
                await asyncio.get_running_loop().run_in_executor(_spawn_pool(), held.cgroup.kill)
            await held.discard()
        except Exception:
            # The loop is closing (a start that failed part-way: its executor is gone). The
            # process is killed already; the cgroup root's close and the exit take the rest.
            pass
        finally:
            _discarding.discard(task)

    task = asyncio.ensure_future(discard())
    _discarding.add(task)  # the loop keeps only weak references to tasks


#: Discards under way (`_discard_started`).
_discarding: Set[asyncio.Future] = set()


def spawn_held(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Dict[str, str],
    cgroup: Optional[Cgroup] = None,
) -> HeldSpawn:
    """`spawn.start_held`, its exit watched from now on (call in the event loop's thread).
    Raises OSError when the program cannot be started."""
    held = start_held(argv, cwd=cwd, env=env, cgroup=cgroup)
    held.watch()
    return held


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
        return proctable.descendants(self._children, pid)


def _children_map() -> Dict[int, List[int]]:
    """parent pid -> child pids: from /proc (`loader/proctable.py`), else through psutil."""
    rows = proctable.scan()
    if rows is not None:
        return proctable.children_map(rows)
    import psutil

    children: Dict[int, List[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid is not None:
            children.setdefault(ppid, []).append(proc.pid)
    return children


#: The manager's one table (every location of a manager shares one event loop).
PROCESS_TABLE = ProcessTable()


def process_tree(pid: int) -> List[psutil.Process]:
    """The process and all its descendants, found before anything is killed: from the
    tree's own children files (`proctree.py`: a few reads per process of the tree, not a
    read of every process on the machine), else through psutil."""
    import psutil

    try:
        root = psutil.Process(pid)
        pids = proctree.descendant_pids(pid)
        if pids is None:
            return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    return [root, *_processes(pids)]


def descendants(pid: int) -> List[psutil.Process]:
    """The process's descendants (not itself), as `process_tree(pid)[1:]`, without making a
    psutil object of the process itself, nor importing psutil when it has none: what a
    loader that just loaded usually has (`Instance.record_tree`, once a location)."""
    pids = proctree.descendant_pids(pid)
    if pids is None:
        return process_tree(pid)[1:]
    if not pids:
        return []
    return _processes(pids)


def _processes(pids: Iterable[int]) -> List[psutil.Process]:
    """A psutil object of each of `pids` still there (one that exited meanwhile is left out)."""
    import psutil

    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return found


def signal_tree(
    pid: int,
    pgid: Optional[int],
    sig: int,
    known: Sequence[psutil.Process],
    cgroup: Optional[Cgroup] = None,
) -> None:
    """Signal the process group, every known descendant (also those that left the group:
    setsid, double fork) and everything in the cgroup. psutil checks a known process's start
    time before signalling, so a pid reused since it was recorded is never hit."""
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    import psutil

    for proc in known:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass
    if cgroup is not None:
        cgroup.signal(sig)


async def terminate_tree(
    process: Waitable,
    grace: float = 3.0,
    kill_wait: float = 2.0,
    known: Sequence[psutil.Process] = (),
    cgroup: Optional[Cgroup] = None,
) -> None:
    """SIGTERM the location's whole tree, then SIGKILL whatever is left after ``grace``.

    The tree is the loader's process group, its descendants now, the descendants recorded
    earlier (``known``: an orphan of a loader that already exited is no longer anyone's
    descendant) and, when it has one, everything in its cgroup, which nothing escapes.
    """
    pid = process.pid
    known = _unique([*known, *process_tree(pid)])
    pgid = pid  # start_new_session: the loader leads its own group
    signal_tree(pid, pgid, signal.SIGTERM, known, cgroup)
    deadline = time.monotonic() + grace
    if process.returncode is None:
        try:
            await asyncio.wait_for(process.wait(), grace)
        except asyncio.TimeoutError:
            pass
    await kill_leftovers(pid, pgid, known, deadline, kill_wait, cgroup)
    if process.returncode is None:
        await process.wait()


async def kill_leftovers(
    pid: int,
    pgid: int,
    known: Sequence[psutil.Process],
    deadline: float,
    kill_wait: float,
    cgroup: Optional[Cgroup] = None,
) -> None:
    """Wait out the grace for descendants, then SIGKILL the group, every known descendant
    and the cgroup."""

    def running() -> bool:
        return any(alive(p) for p in known) or bool(cgroup is not None and cgroup.pids())

    while time.monotonic() < deadline and running():
        await asyncio.sleep(0.05)
    survivors = [p for p in known if alive(p)]
    if cgroup is not None and cgroup.pids():
        await asyncio.get_running_loop().run_in_executor(None, cgroup.kill, kill_wait)
    if survivors or _group_alive(pgid):
        signal_tree(pid, pgid, signal.SIGKILL, survivors)
        end = time.monotonic() + kill_wait
        while time.monotonic() < end and any(alive(p) for p in survivors):
            await asyncio.sleep(0.02)


def _unique(procs: Sequence[psutil.Process]) -> List[psutil.Process]:
    seen: Dict[int, psutil.Process] = {}
    for p in procs:
        seen.setdefault(p.pid, p)
    return list(seen.values())


def alive(proc: psutil.Process) -> bool:
    """Running (not a zombie), and still the process that was recorded."""
    import psutil

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


def pss_bytes(pid: int) -> Optional[int]:
    """Proportional set size of one process: each page it maps divided by the number of
    processes sharing it, so a tree's sum counts shared pages once (proc(5),
    /proc/PID/smaps_rollup, Linux 4.14). None when it cannot be read (gone, or no such file)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
