"""One run's process: spawn it like a loader (supervisor/process.py: its own session, its
own cgroup, pipes for stdout and stderr, a status socket whose EOF is its lifeline), read
its events and output with their times, see its exit the moment it happens, stop its tree.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

from workspace_manager.loader import proctable
from workspace_manager.protocol import framing
from workspace_manager.runs.plan import RunPlan, bootstrap_for, plan_from_launch, spawn_runner
from workspace_manager.supervisor import process as proc_mod
from workspace_manager.supervisor.lines import LineSplitter
from workspace_manager.supervisor.spawn import HeldSpawn

if TYPE_CHECKING:
    import psutil  # imported where a tree is read: `wsm job execute` spawns before that

#: Events are small; a log message this big is the job's own doing and ends the channel.
MAX_EVENT = 16 * 1024 * 1024
#: How long the end of output and events is waited for after the process exited (a
#: grandchild may hold the pipes open).
DRAIN_SECONDS = 1.0


EventSink = Callable[[Dict[str, Any]], None]  # one decoded event map
OutputSink = Callable[[str, float, str], None]  # (stream, time, one line without newline)


class RunProcess:
    """A started run process. `events` sees each event map in order; `output` each line of
    stdout/stderr with the time it was read (both None: kept until `attach`). `wait()`
    returns the exit status (negative: a signal) once the process has exited and its events
    are read."""

    def __init__(
        self,
        spawned: proc_mod.SpawnedLoader,
        events: Optional[EventSink],
        output: Optional[OutputSink],
    ):
        self.spawned = spawned
        self._events = events
        self._output = output
        self._kept: List[Callable[[], None]] = []  # deliveries before `attach`
        self.final_event: Optional[Dict[str, Any]] = None
        self.first_event: asyncio.Future = asyncio.get_running_loop().create_future()
        self._known: Dict[int, psutil.Process] = {}
        self._reader = asyncio.ensure_future(self._read_events())
        self._pumps = [
            asyncio.ensure_future(self._pump("stdout", spawned.stdout)),
            asyncio.ensure_future(self._pump("stderr", spawned.stderr)),
        ]

    @property
    def pid(self) -> int:
        return self.spawned.pid

    @property
    def returncode(self) -> Optional[int]:
        return self.spawned.process.returncode

    @classmethod
    async def start(
        cls,
        plan: RunPlan,
        bootstrap: Optional[Dict[str, Any]],
        events: Optional[EventSink],
        output: Optional[OutputSink],
        *,
        name: str = "run",
        held: Optional[HeldSpawn] = None,
        hold: bool = False,
    ) -> RunProcess:
        """Give the run its bootstrap: in `held` (a process started ahead of the run by
        `spawn_runner`; None: `held` has it already), or in one spawned now. With `hold`, the runner loads the job, sends `loaded` (or its
        load `failure`) and waits for `go()` before the job starts (a manager gone meanwhile:
        it exits, nothing run). Raises OSError when the interpreter cannot be started."""
        if held is None:
            held = spawn_runner(plan, name=name, run_id=str((bootstrap or {}).get("run_id")))
        if bootstrap is not None:
            bootstrap = dict(bootstrap, hold=True) if hold else bootstrap
        spawned = await held.release(bootstrap, keep_stdin=hold)
        return cls(spawned, events, output)

    def go(self) -> None:
        """Let a held run's job start (the `go` line on its stdin). Harmless once it exited."""
        stdin = self.spawned.stdin
        if stdin is None or stdin.closed:
            return
        try:
            stdin.write(b"go\n")
            stdin.close()
        except (BrokenPipeError, ConnectionResetError, ValueError):
            pass

    def attach(self, events: EventSink, output: OutputSink) -> None:
        """Send what came so far, then everything after, to these sinks."""
        self._events, self._output = events, output
        kept, self._kept = self._kept, []
        for deliver in kept:
            deliver()

    def _event(self, item: Dict[str, Any]) -> None:
        if self._events is None:
            self._kept.append(lambda: self._event(item))
        else:
            self._events(item)

    def _line(self, stream: str, when: float, text: str) -> None:
        if self._output is None:
            self._kept.append(lambda: self._line(stream, when, text))
        else:
            self._output(stream, when, text)

    async def _read_events(self) -> None:
        decoder = framing.FrameDecoder(MAX_EVENT)
        reader = self.spawned.status_reader
        while True:
            try:
                data = await reader.read(65536)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                if not self.first_event.done():
                    self.first_event.set_result(None)
                return
            try:
                items = decoder.feed(data)
            except framing.FrameError as exc:
                items = exc.objects
                self._deliver(items)
                self._line("wsm", time.time(), f"bad event from the run's process: {exc}")
                return
            self._deliver(items)

    def _deliver(self, items: Sequence[Any]) -> None:
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("event"), str):
                continue
            if item["event"] in ("success", "failure"):
                self.final_event = item
            if item["event"] == "loaded":
                self.record_tree()
            if not self.first_event.done():
                self.first_event.set_result(item)
            self._event(item)

    async def _pump(self, stream: str, reader: asyncio.StreamReader) -> None:
        lines = LineSplitter()
        while True:
            try:
                chunk = await reader.read(65536)
            except Exception:
                chunk = b""
            now = time.time()
            for line in lines.feed(chunk) if chunk else lines.end():
                self._line(stream, now, _text(line))
            if not chunk:
                return

    async def wait(self) -> int:
        """The exit status, once the process has exited and what it wrote is read (at most
        DRAIN_SECONDS after the exit: a grandchild holding a pipe does not hold us)."""
        code = await self.spawned.process.wait()
        await asyncio.wait([self._reader, *self._pumps], timeout=DRAIN_SECONDS)
        return code

    def record_tree(self) -> None:
        """Remember the run's descendants now: without a cgroup, an orphan of an exited
        process is found only through this record. A run with no child (most, and every
        one when its `loaded` comes) costs no psutil (~15 ms to import, on the path from
        `loaded` to the job's start)."""
        if self.returncode is None and proctable.has_children(self.pid) is not False:
            for proc in proc_mod.process_tree(self.pid)[1:]:
                self._known.setdefault(proc.pid, proc)

    def terminate(self) -> None:
        """SIGTERM the run's whole tree (its group, its descendants, its cgroup)."""
        self.record_tree()
        proc_mod.signal_tree(
            self.pid,
            self.pid,
            signal.SIGTERM,
            list(self._known.values()) + proc_mod.process_tree(self.pid)[:1],
            self.spawned.cgroup,
        )

    async def kill_tree(self, kill_wait: float = 2.0) -> None:
        """SIGKILL whatever is left of the tree and its cgroup, also after the run exited
        (a job that returned may have left children: they end with it)."""
        self.record_tree()
        known = list(self._known.values())
        cgroup = self.spawned.cgroup
        if self.returncode is None:
            known += proc_mod.process_tree(self.pid)[:1]
        await proc_mod.kill_leftovers(
            self.pid, self.pid, known, time.monotonic(), kill_wait, cgroup
        )

    async def close(self) -> None:
        """After the exit: kill leftovers, remove the cgroup, release the pipes."""
        await self.kill_tree()
        if self.spawned.cgroup is not None:
            cgroup = self.spawned.cgroup
            await asyncio.get_running_loop().run_in_executor(None, cgroup.remove)
        self.spawned.status_writer.close()
        if self.spawned.stdin is not None and not self.spawned.stdin.closed:
            try:
                self.spawned.stdin.close()
            except OSError:
                pass
        for task in [self._reader, *self._pumps]:
            task.cancel()


def _text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", "replace")


def pid_alive(pid: int) -> bool:
    """A live, non-zombie process has this pid."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


__all__ = [
    "RunPlan",
    "RunProcess",
    "bootstrap_for",
    "pid_alive",
    "plan_from_launch",
    "spawn_runner",
]
