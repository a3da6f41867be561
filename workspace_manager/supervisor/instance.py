"""One generation of a location's process: spawn it, wait for it to load, connect, watch it.

A `Location` owns at most one serving instance at a time; a reload starts a second one and
swaps when it is ready, so the old one keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from workspace_manager.protocol import messages
from workspace_manager.protocol.errors import (
    SHUTTING_DOWN,
    MessageTooLarge,
    ProtocolError,
    RemoteError,
)
from workspace_manager.supervisor import process as proc_mod
from workspace_manager.supervisor.heartbeats import bootstrap_entry
from workspace_manager.supervisor.lines import LineSplitter
from workspace_manager.supervisor.memsample import MemorySampler
from workspace_manager.supervisor.plan import LaunchPlan
from workspace_manager.supervisor.rpc import AsyncConnection

if TYPE_CHECKING:
    import psutil  # imported where memory is sampled: `wsm job execute` imports this module

OutputSink = Callable[[str, bytes], None]  # (stream name, one line without newline)


class LoadFailed(Exception):
    """The repository code could not be loaded (import error, DefinitionError, timeout)."""

    def __init__(self, message: str, traceback: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.traceback = traceback


#: How a user raises the frame limit, named in the error of a snapshot that does not fit.
RAISE_LIMIT_HINT = "raise supervision: {max_message_mb: N} in workspace.yaml"


def snapshot_refused(exc: RemoteError, hint: str = RAISE_LIMIT_HINT) -> LoadFailed:
    """The location's `error` when its loaded code cannot send its snapshot: the same code
    gives the same snapshot, so restarting would only repeat the failure."""
    if isinstance(exc, MessageTooLarge):
        return LoadFailed(f"its snapshot cannot be sent: {exc.message}; {hint}")
    return LoadFailed(f"its snapshot cannot be read: {exc}", exc.traceback)


class ExitedDuringStartup(Exception):
    def __init__(self, returncode: Optional[int]) -> None:
        super().__init__(proc_mod.describe_exit(returncode) + " while loading")
        self.returncode = returncode


class Instance:
    def __init__(self, plan: LaunchPlan, on_output: OutputSink) -> None:
        self.plan = plan
        self.secret = plan.secret or secrets.token_hex(16)
        self.address = plan.listen or f"unix:{plan.socket_path}"
        self.connect_to = plan.connect or self.address
        self._on_output = on_output
        self.spawned: Optional[proc_mod.SpawnedLoader] = None
        self.connection: Optional[AsyncConnection] = None
        self.server_info: Dict[str, Any] = {}
        self.snapshot: Optional[dict] = None
        self._pumps: list = []
        self._children: Dict[int, psutil.Process] = {}  # descendants, by pid
        self.cpu_seconds: Optional[float] = None  # sampled with the RSS, for /metrics
        self._memory: Optional[MemorySampler] = None
        # this instance's page of the manager's heartbeat file (supervisor/heartbeats.py)
        self.beat_slot: Optional[int] = None

    @property
    def pid(self) -> Optional[int]:
        return self.spawned.pid if self.spawned else None

    @property
    def returncode(self) -> Optional[int]:
        return self.spawned.process.returncode if self.spawned else None

    async def start(self, startup_timeout: float) -> None:
        """Spawn, wait for "loaded", connect and fetch the snapshot; raise LoadFailed or
        ExitedDuringStartup."""
        bootstrap = dict(
            self.plan.bootstrap, secret=self.secret, listen=self.address, tls=self.plan.tls
        )
        try:
            self.plan.socket_path.unlink()
        except FileNotFoundError:
            pass
        board = self.plan.heartbeats
        if board is not None and self.beat_slot is None:
            try:
                self.beat_slot = board.take()
            except OSError:  # no room for the file: this one is pinged
                pass
            else:
                bootstrap["heartbeat"] = bootstrap_entry(
                    board, self.beat_slot, self.plan.heartbeat_seconds
                )
        cgroups = self.plan.cgroups
        name = str(self.plan.bootstrap.get("location"))
        new_cgroup = (lambda: cgroups.new(name)) if cgroups else None  # made in a spawn thread
        forks = self.plan.forks  # a fork server's child when one can (supervisor/forkserver.py)
        self.spawned = (
            await forks.spawn(self.plan, bootstrap, new_cgroup) if forks else None
        ) or await proc_mod.spawn_loader(
            self.plan.argv, bootstrap, cwd=self.plan.cwd, env=self.plan.env, new_cgroup=new_cgroup
        )
        self._pumps = [
            asyncio.ensure_future(self._pump("stdout", self.spawned.stdout)),
            asyncio.ensure_future(self._pump("stderr", self.spawned.stderr)),
        ]
        deadline = time.monotonic() + startup_timeout
        try:
            await asyncio.wait_for(self._await_loaded(), startup_timeout)
            remaining = max(0.5, deadline - time.monotonic())
            self.connection = await AsyncConnection.open(
                self.connect_to,
                self.secret,
                timeout=remaining,
                max_frame=self.plan.max_frame,
                ssl_context=self.plan.client_ssl,
            )
            self.server_info = self.connection.server_info
            try:
                self.snapshot = await self.connection.call(
                    "get_snapshot", {}, timeout=max(0.5, deadline - time.monotonic())
                )
            except RemoteError as exc:
                if exc.type == SHUTTING_DOWN:  # asked to stop meanwhile: not the code's fault
                    raise
                await self.stop(grace=0)
                raise snapshot_refused(exc) from None
            self.record_tree()  # what import-time code started (the memory samples add more)
        except asyncio.TimeoutError:
            await self.stop(grace=0)
            raise LoadFailed(f"did not load within {startup_timeout:g}s") from None

    async def _await_loaded(self) -> None:
        assert self.spawned is not None
        events = await proc_mod.read_status_events(self.spawned.status_reader, self.plan.max_frame)
        if not events:
            returncode = await self.spawned.process.wait()
            await self._drain_output()
            raise ExitedDuringStartup(returncode)
        try:
            event = messages.parse(events[0])
        except ProtocolError as exc:
            raise LoadFailed(f"bad lifecycle message from loader: {exc}") from None
        if not isinstance(event, messages.Notification):
            raise LoadFailed("bad lifecycle message from loader")
        if event.event == "load_error":
            error = (event.params or {}).get("error") or {}
            await self.spawned.process.wait()
            await self._drain_output()
            raise LoadFailed(
                str(error.get("message") or "load failed"), error.get("traceback") or None
            )
        if event.event != "loaded":
            raise LoadFailed(f"unexpected lifecycle event {event.event!r}")

    async def _pump(self, name: str, stream: Optional[asyncio.StreamReader]) -> None:
        """Forward the child's output line by line (long lines in pieces: lines.py);
        binary garbage is never fatal."""
        if stream is None:
            return
        lines = LineSplitter()
        while True:
            try:
                chunk = await stream.read(65536)
            except Exception:
                chunk = b""
            for line in lines.feed(chunk) if chunk else lines.end():
                self._on_output(name, line)
            if not chunk:
                return

    async def _drain_output(self) -> None:
        if self._pumps:
            await asyncio.wait(self._pumps, timeout=1.0)

    @property
    def started_at(self) -> float:
        return self.spawned.started_at if self.spawned else time.monotonic()

    def describe_exit(self, returncode: Optional[int]) -> str:
        return proc_mod.describe_exit(returncode)

    async def wait_exit(self) -> Optional[int]:
        assert self.spawned is not None
        returncode = await self.spawned.process.wait()
        return returncode

    def record_tree(self) -> None:
        """Remember the loader's descendants now: once the loader has exited (or been
        killed), an orphan of it is nobody's descendant, and without a cgroup only this
        record still finds it."""
        if self.pid is None or self.returncode is not None:
            return
        for proc in proc_mod.descendants(self.pid):
            self._children.setdefault(proc.pid, proc)

    def _members(self) -> List[int]:
        """The location's processes: its cgroup's, else the loader and its descendants
        (from the manager's shared process table: one /proc scan per period for all
        locations, not `children(recursive=True)`, which scans /proc on every call)."""
        assert self.spawned is not None
        if self.spawned.cgroup is not None:
            pids = self.spawned.cgroup.pids()
            if pids:
                return pids
        return [self.spawned.pid, *proc_mod.PROCESS_TABLE.descendants(self.spawned.pid)]

    def rss_bytes(self) -> Optional[int]:
        """Memory of the location's processes, as the kernel counts it: the sum of their
        PSS (`pss_bytes`), so pages shared by forked children count once, not once per
        process as a sum of RSS would; a process's PSS is read again only when its RSS moved
        (supervisor/memsample.py). The same walk samples their CPU time into
        `cpu_seconds` (never decreasing: a descendant reaped by init takes its time with
        it). Named for the /status field it feeds. Runs in a worker thread (location.py):
        it touches `_children` one dict operation at a time, as the loop's thread does."""
        if self.pid is None or self.returncode is not None:
            return None
        import psutil

        members = self._members()
        for pid in members:
            if pid not in self._children:
                try:  # kept to find and stop the location's processes (`stop`)
                    self._children[pid] = psutil.Process(pid)
                except psutil.Error:
                    pass
        if self._memory is None:
            self._memory = MemorySampler(proc_mod.pss_bytes)
        total, cpu = self._memory.sample(members)
        current = set(members)
        for pid, proc in list(self._children.items()):
            if pid not in current and not proc_mod.alive(proc):
                del self._children[pid]
        self.cpu_seconds = max(cpu, self.cpu_seconds or 0.0)
        return total

    def _give_back_beat(self) -> None:
        if self.beat_slot is not None and self.plan.heartbeats is not None:
            self.plan.heartbeats.give_back(self.beat_slot)
            self.beat_slot = None

    def beat_count(self) -> int:
        """Its heartbeat counter (only while `beat_slot` is set)."""
        assert self.beat_slot is not None and self.plan.heartbeats is not None
        return self.plan.heartbeats.count(self.beat_slot)

    async def stop(self, grace: float = 3.0) -> None:
        """Ask the loader to shut down, then SIGTERM/SIGKILL its whole tree; idempotent.

        The tree is recorded before the loader is asked to go: a child it leaves behind is
        reparented when it exits and is no longer found from its pid."""
        if self.spawned is None:
            self._give_back_beat()  # the spawn failed: no process will write its page
            return
        self.record_tree()
        known = [p for pid, p in list(self._children.items()) if pid != self.spawned.pid]
        proc = self.spawned.process
        if proc.returncode is None and self.connection is not None and grace > 0:
            try:
                await self.connection.call("shutdown", {}, timeout=min(1.0, grace))
                await asyncio.wait_for(proc.wait(), grace)
            except Exception:
                pass
        if self.connection is not None:
            self.connection.close()
        cgroup = self.spawned.cgroup
        await proc_mod.terminate_tree(
            proc, grace=min(grace, 2.0) if grace else 0.0, known=known, cgroup=cgroup
        )
        if cgroup is not None:  # rmdir retries for up to 0.5 s: never on the loop
            await asyncio.get_running_loop().run_in_executor(None, cgroup.remove)
        self.spawned.status_writer.close()
        self._give_back_beat()  # its process is gone
        await self._drain_output()
        for task in self._pumps:
            task.cancel()
        try:
            self.plan.socket_path.unlink()
        except OSError:
            pass
