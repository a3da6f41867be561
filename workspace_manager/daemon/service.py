"""The daemon in `wsm up` (SPEC section 7): one asyncio task per running schedule and
sensor of each ready location, so a slow one delays nothing else.

Its loop keeps the tasks in line with the locations: when a location becomes ready with a
new snapshot its instigators' tasks are (re)made; when it stops serving they are
cancelled; a STOPPED one has none. What each task does is in daemon/loops.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from workspace_manager.cancelling import cancel_and_wait
from workspace_manager.daemon import loops
from workspace_manager.daemon.clock import Clock
from workspace_manager.daemon.instigators import (
    RUN_STATUS,
    Instigator,
    instigators_of,
    resolve_status,
)
from workspace_manager.daemon.ticks import next_tick
from workspace_manager.runs.prestart import KEEP_AFTER
from workspace_manager.storage.records import (
    INSTIGATOR_KINDS,
    RUNNING,
    SCHEDULE,
    SENSOR,
    STOPPED,
    InstigatorState,
    RunRecord,
    TickRecord,
)
from workspace_manager.supervisor.location import NotReady
from workspace_manager.supervisor.state import State
from workspace_manager.workspace.model import Workspace

#: How often the daemon's loop looks at the locations without being poked.
LOOP_SECONDS = 1.0
#: a task still running this long after its cancel swallowed it: cancel it again
CANCEL_AGAIN_SECONDS = 1.0

TaskKey = Tuple[str, Optional[str], str, str]


class Daemon:
    """Schedules and sensors of every ready location.

    `locations()` is the manager's {name: Location} (anything with `state`, `snapshot`
    and `call(method, params)`); `store` an AsyncStorage; `runs` the RunCoordinator (or
    anything with `wake()`; None: runs stay queued); `events` the manager's EventSink."""

    def __init__(
        self,
        *,
        store: Any,
        locations: Callable[[], Mapping[str, Any]],
        workspace: Callable[[], Workspace],
        events: Any,
        runs: Any = None,
        clock: Optional[Clock] = None,
        max_catchup_runs: Optional[int] = None,
    ) -> None:
        self.store = store
        self.locations = locations
        self.workspace = workspace
        self.events = events
        self.runs = runs
        self.clock = clock or Clock()
        self._max_catchup = max_catchup_runs
        #: wall time of the daemon loop's last pass (for /status); 0 before the first
        self.last_loop = 0.0
        self._states: Dict[Tuple[str, str, str], InstigatorState] = {}
        self._last_ticks: Dict[Tuple[str, str, str], TickRecord] = {}
        self._known: Dict[str, List[Instigator]] = {}  # by location: its last ready snapshot
        self._snapshots: Dict[str, Any] = {}  # the snapshot each location's tasks come from
        self._tasks: Dict[TaskKey, asyncio.Task] = {}
        self._finished_events: List[asyncio.Event] = []
        self._poke = asyncio.Event()
        self._ended: set = set()  # instigators whose task ended by itself
        self._helpers: set = set()  # background reads (kept: the loop holds tasks weakly)
        self._workspace_default: Optional[str] = None
        self._loop_task: Optional[asyncio.Task] = None
        self._stopping = False
        self._lock = asyncio.Lock()
        if runs is not None and hasattr(runs, "add_finished_listener"):
            runs.add_finished_listener(self._run_finished)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the kept states, then run the loop (its first pass happens now)."""
        for state in await self.store.list_instigators():
            self._states[(state.location, state.name, state.kind)] = state
        self._stopping = False
        await self.sync()
        self._loop_task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        """Cancel the loop and every task (a tick being recorded finishes first)."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self._cancel(list(self._tasks))
        for helper in list(self._helpers):
            helper.cancel()
        await asyncio.gather(*self._helpers, return_exceptions=True)

    def poke(self) -> None:
        """Look at the locations now (one changed state)."""
        self._poke.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._poke.wait(), LOOP_SECONDS)
            if self._stopping:  # wait_for swallows a cancel as a poke comes (< 3.12, gh-86296)
                return
            self._poke.clear()
            try:
                await self.sync()
            except Exception as exc:  # the storage refused a read: next pass
                self.events.message(f"daemon: {exc!r}")

    async def sync(self) -> None:
        """One pass: make the tasks match the ready locations' snapshots and the states."""
        async with self._lock:
            self.last_loop = self.clock.time()
            current = dict(self.locations())
            fresh: List[str] = []  # locations whose instigators are looked at again
            for name in [n for n in self._known if n not in current]:
                await self._drop_location(name, forget=True)
            for name, loc in current.items():
                snapshot = loc.snapshot if loc.state is State.READY else None
                if snapshot is None:
                    if name in self._snapshots:
                        await self._drop_location(name, forget=False)
                    continue
                if self._snapshots.get(name) is not snapshot:
                    await self._drop_location(name, forget=False)
                    self._snapshots[name] = snapshot
                    self._known[name] = instigators_of(name, snapshot)
                    # for the listing only: the tasks do not wait for it
                    self._spawn(self._load_last_ticks(self._known[name]))
                    fresh.append(name)
            # Only what may have changed is looked at again: a pass over 2,000 instigators
            # every second would cost the manager 1% of a core for nothing.
            default = self.workspace().daemon.default_status
            if default != self._workspace_default:
                self._workspace_default = default
                fresh = list(self._snapshots)
            for name in fresh:
                for inst in self._known.get(name, []):
                    self._align(inst)
            ended, self._ended = self._ended, set()
            for inst in ended:
                task = self._tasks.get(inst.task_key)
                if task is None or not task.done():
                    continue
                del self._tasks[inst.task_key]
                if not task.cancelled() and task.exception() is not None:
                    self.events.message(f"daemon: {inst.kind} {inst.name}: {task.exception()!r}")
                if inst.location in self._snapshots and inst in self._known[inst.location]:
                    self._align(inst)

    def _align(self, inst: Instigator) -> None:
        """Start or cancel `inst`'s task to match its status."""
        running = self.status_of(inst)[0] == RUNNING
        task = self._tasks.get(inst.task_key)
        if running and (task is None or task.done()):
            task = self._tasks[inst.task_key] = asyncio.ensure_future(self._task_for(inst))
            task.add_done_callback(lambda _, inst=inst: self._task_ended(inst))  # type: ignore[misc]
        elif not running and task is not None:
            task.cancel()
            del self._tasks[inst.task_key]

    def _task_ended(self, inst: Instigator) -> None:
        """A task ended on its own (never, unless a bug): the next pass says why and makes
        it again. Cancelled tasks were taken out of `_tasks` first and are not seen."""
        self._ended.add(inst)
        self.poke()

    def _task_for(self, inst: Instigator) -> Any:
        if inst.kind == SCHEDULE:
            loop = loops.schedule_loop
        elif inst.sensor_type == RUN_STATUS:
            loop = loops.run_status_loop
        else:
            loop = loops.sensor_loop
        return loops.guarded(self, inst, lambda: loop(self, inst))

    async def _drop_location(self, name: str, forget: bool) -> None:
        self._snapshots.pop(name, None)
        await self._cancel([k for k in self._tasks if k[0] == name])
        if forget:
            self._known.pop(name, None)

    async def _cancel(self, keys: List[TaskKey]) -> None:
        tasks = [self._tasks.pop(k) for k in keys if k in self._tasks]
        # a cancelled task finishes recording its tick first (commit is shielded): its
        # successor reads the state it left. A location call's asyncio.wait_for may swallow
        # the cancel as its answer comes (cancelling.py): it is cancelled again.
        await cancel_and_wait(tasks, CANCEL_AGAIN_SECONDS)

    async def _load_last_ticks(self, instigators: List[Instigator]) -> None:
        missing = [i for i in instigators if i.key not in self._last_ticks]
        found = await asyncio.gather(
            *(self.store.list_ticks(i.location, i.name, i.kind, 1) for i in missing)
        )
        for inst, ticks in zip(missing, found):
            if ticks and inst.key not in self._last_ticks:  # a task may have ticked since
                self._last_ticks[inst.key] = ticks[0]

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._helpers.add(task)
        task.add_done_callback(self._helper_done)

    def _helper_done(self, task: asyncio.Future) -> None:
        self._helpers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.events.message(f"daemon: cannot read the last ticks: {task.exception()!r}")

    # -- what the loops use (loops.Host) ---------------------------------------------------

    def state(self, inst: Instigator) -> InstigatorState:
        """The kept state of `inst` (a fresh one when nothing is kept)."""
        return self._states.get(inst.key) or InstigatorState(inst.location, inst.name, inst.kind)

    def max_catchup_runs(self) -> int:
        if self._max_catchup is not None:
            return self._max_catchup
        return self.workspace().daemon.max_catchup_runs

    async def call(self, inst: Instigator, method: str, params: Dict[str, Any]) -> Any:
        loc = self.locations().get(inst.location)
        if loc is None:
            raise loops.LocationGone(inst.location)
        try:
            return await loc.call(method, params)
        except (NotReady, ConnectionError) as exc:
            raise loops.LocationGone(str(exc)) from None

    async def commit(
        self, tick: TickRecord, runs: List[RunRecord], state: InstigatorState
    ) -> Tuple[TickRecord, List[RunRecord]]:
        """Record a finished evaluation in one record_tick, then wake the run queue and
        report. Not interrupted by a cancel: a tick is recorded whole or, when it was not
        reached, not at all."""
        tick.ended_at = self.clock.time()
        # AsyncStorage.record_tick gives a future (no task is made for it here)
        work = asyncio.ensure_future(self.store.record_tick(tick, runs, state))
        try:
            stored, created = await asyncio.shield(work)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                stored, created = await work
                self._recorded(state, stored, created)
            raise
        return self._recorded(state, stored, created)

    def _recorded(
        self, state: InstigatorState, stored: TickRecord, created: List[RunRecord]
    ) -> Tuple[TickRecord, List[RunRecord]]:
        if created and self.runs is not None:
            self.runs.wake()  # first: the runs' start is on the schedule's latency path
        self._states[state_key(state)] = state
        self._last_ticks[state_key(state)] = stored
        for run in created:
            self.events.run(run, "queued")
        self.events.tick(stored)
        return stored, created

    async def keep_state(self, state: InstigatorState) -> None:
        work = asyncio.ensure_future(self.store.set_instigator(state))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await work
            raise
        self._states[state_key(state)] = state

    def finished_event(self) -> asyncio.Event:
        event = asyncio.Event()
        self._finished_events.append(event)
        if len(self._finished_events) > 64:  # of tasks long gone
            self._finished_events = self._finished_events[-64:]
        return event

    def _run_finished(self, record: RunRecord) -> None:
        for event in self._finished_events:
            event.set()

    def warm(self, inst: Instigator, tick: float) -> None:
        """A tick of schedule `inst` comes at wall time `tick`: the coordinator starts a
        process for the run it may request (runs/prestart.py)."""
        warm = getattr(self.runs, "warm", None)
        if warm is not None:
            warm(inst.location, tick + KEEP_AFTER)

    def message(self, text: str) -> None:
        self.events.message(text)

    # -- status -----------------------------------------------------------------------------

    def status_of(self, inst: Instigator) -> Tuple[str, str]:
        """(RUNNING | STOPPED, "user" | "code" | "workspace" | "default")."""
        stored = self._states.get(inst.key)
        return resolve_status(
            stored.status if stored else None,
            inst.default_status,
            self.workspace().daemon.default_status,
        )

    def instigators(self, kind: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every schedule and sensor (of one kind) of every location that was ready, as
        docs/daemon.md describes, in location then name order."""
        if kind is not None and kind not in INSTIGATOR_KINDS:
            raise ValueError(f"kind must be one of {', '.join(INSTIGATOR_KINDS)}")
        out = [
            self.describe(inst)
            for name in sorted(self._known)
            for inst in sorted(self._known[name], key=lambda i: (i.kind, i.name))
            if kind is None or inst.kind == kind
        ]
        return out

    def describe(self, inst: Instigator) -> Dict[str, Any]:
        status, source = self.status_of(inst)
        state = self.state(inst)
        last = self._last_ticks.get(inst.key)
        coming = None
        if inst.kind == SCHEDULE and status == RUNNING:
            with contextlib.suppress(Exception):
                coming = next_tick(
                    str(inst.cron_schedule), inst.execution_timezone, self.clock.time()
                )
        return {
            "location": inst.location,
            "repository": inst.repository,
            "name": inst.name,
            "kind": inst.kind,
            "job_name": inst.job_name,
            "description": inst.description,
            "status": status,
            "status_source": source,
            "cron_schedule": inst.cron_schedule if inst.kind == SCHEDULE else None,
            "execution_timezone": (inst.execution_timezone or "UTC")
            if inst.kind == SCHEDULE
            else None,
            "next_tick": coming,
            "minimum_interval_seconds": inst.minimum_interval_seconds
            if inst.kind == SENSOR
            else None,
            "sensor_type": inst.sensor_type if inst.kind == SENSOR else None,
            "cursor": state.cursor,
            "last_tick": last.as_dict() if last is not None else None,
            "serving": inst.location in self._snapshots,
        }

    async def set_status(self, kind: str, name: str, status: str) -> Dict[str, Any]:
        """Start or stop a schedule or sensor; the choice is kept. `name`: NAME, or
        LOCATION:NAME. LookupError (one line) when unknown or ambiguous; ValueError for a
        bad kind or status. A schedule started again fires from now on, never for the
        time it was stopped."""
        if kind not in INSTIGATOR_KINDS:
            raise ValueError(f"kind must be one of {', '.join(INSTIGATOR_KINDS)}")
        wanted = str(status).upper()
        if wanted not in (RUNNING, STOPPED):
            raise ValueError(f"status must be RUNNING or STOPPED, got {status!r}")
        inst = self._find(kind, name)
        async with self._lock:
            was = self.status_of(inst)[0]
            state = dataclasses.replace(self.state(inst), status=wanted)
            if kind == SCHEDULE and wanted == RUNNING and was != RUNNING:
                state = dataclasses.replace(state, last_tick_time=self.clock.time())
            await self.keep_state(state)
            if inst.location in self._snapshots:
                if wanted == STOPPED:
                    await self._cancel([inst.task_key])
                self._align(inst)
        described = self.describe(inst)
        notify = getattr(self.events, "instigator", None)  # the web page's live events
        if notify is not None:
            notify(
                {
                    "kind": kind,
                    "location": inst.location,
                    "name": inst.name,
                    "status": wanted,
                    "next_tick": described["next_tick"],
                }
            )
        return described

    def next_tick_of(self, kind: str, location: str, name: str) -> Optional[float]:
        """The next tick (unix time) of a running schedule; None for a stopped one, a
        sensor, or one this daemon does not know."""
        try:
            inst = self._find(kind, f"{location}:{name}")
        except (LookupError, ValueError):
            return None
        coming = self.describe(inst)["next_tick"]
        return float(coming) if coming is not None else None

    def _find(self, kind: str, name: str) -> Instigator:
        location, sep, short = name.rpartition(":")
        found = [
            inst
            for insts in self._known.values()
            for inst in insts
            if inst.kind == kind and inst.name == short and (not sep or inst.location == location)
        ]
        if not found:
            where = f" in location {location!r}" if sep else ""
            raise LookupError(f"no {kind} named {short!r}{where}")
        places = sorted({i.location for i in found})
        if len(places) > 1:
            raise LookupError(
                f"{kind} {short!r} is in several locations ({', '.join(places)}); use LOCATION:NAME"
            )
        if len(found) > 1:
            repos = ", ".join(str(i.repository) for i in found)
            raise LookupError(f"{kind} {short!r} is in several repositories ({repos})")
        return found[0]


def state_key(state: InstigatorState) -> Tuple[str, str, str]:
    return (state.location, state.name, state.kind)
