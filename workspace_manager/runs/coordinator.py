"""The run coordinator: the queue, its limits, launching, timeouts, retries, cancel, drain
and recovery (docs/daemon.md, "Runs"). One per manager, on the manager's loop.

The storage holds the truth: a run is QUEUED there (by `submit`, or by the daemon's ticks,
which then call `wake`), and each pass of the dequeue loop reads the queued runs and starts
what the limits allow (runs/queue.py). Every write goes through the off-loop storage
(storage/writer.py), in order, so the loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from workspace_manager.runs.ids import new_run_id
from workspace_manager.runs.outcome import Outcome, outcome
from workspace_manager.runs.prestart import Prestart
from workspace_manager.runs.process import RunPlan, RunProcess, bootstrap_for
from workspace_manager.runs.queue import (
    MAX_RETRIES_TAG,
    TIMEOUT_TAG,
    Limits,
    check_tags,
    runs_to_start,
)
from workspace_manager.runs.queue import number_tag as _number_tag
from workspace_manager.storage.base import RunNotFound
from workspace_manager.storage.records import (
    CANCELED,
    CANCELING,
    FAILURE,
    IN_PROGRESS_STATUSES,
    QUEUED,
    STARTED,
    STARTING,
    LogLine,
    RunRecord,
    check_run_input,
    queued_message,
)
from workspace_manager.supervisor.lines import text_pieces
from workspace_manager.workspace.model import RemoteTarget, Workspace

#: The reason given to runs found in progress at start: their process died with the manager.
KILLED_REASON = "the manager was killed while the run was in progress"
#: How often a running manager looks for runs of `wsm job execute` whose process is gone
#: (Dagster's run monitoring does the same for run workers, by default every 120 s).
MONITOR_SECONDS = 2.0
#: psutil's create_time is the boot time (whole seconds in /proc/stat) plus the process's
#: start in clock ticks: it may be off by up to a second either way from time.time().
PID_CLOCK_SLACK = 2.0
SHUTDOWN_REASON = "the manager shut down"
#: Between SIGTERM of a canceled run's tree and SIGKILL of what is left (Dagster: 10 s too).
CANCEL_GRACE = 10.0
#: How often queued runs that wait (location not ready, limits) are looked at again.
POLL_SECONDS = 1.0


def execute_ended_reason(pid: object) -> str:
    """The reason a run of `wsm job execute` ends FAILURE when its process is gone."""
    return f"the `wsm job execute` process (pid {pid}) ended while the run was in progress"


def owner_alive(origin: Dict[str, Any], created_at: float) -> bool:
    """Is the `wsm job execute` process named by a run's origin (`pid`) still running it?
    A process with that pid that started after the run was created (psutil create_time,
    from /proc/PID/stat, against `created_at`, with PID_CLOCK_SLACK) is another process that
    reuses the pid (pid_max wraps within a minute on a busy machine); a zombie is gone."""
    pid = origin.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= created_at + PID_CLOCK_SLACK
    except psutil.Error:
        return False


class RunPlanError(Exception):
    """The run cannot be planned (its location is gone, remote, not ready): one line."""


@dataclass
class RunHooks:
    """What the coordinator needs from its manager; plain callables keep it testable."""

    workspace: Callable[[], Workspace]
    location_ready: Callable[[str], bool]
    snapshot: Callable[[str], Optional[dict]]
    plan: Callable[[str], Awaitable[RunPlan]]  # raises RunPlanError
    report: Callable[[RunRecord, str], None] = lambda record, event: None
    message: Callable[[str], None] = lambda text: None
    log: Callable[[LogLine], None] = lambda line: None  # each line as it arrives (execute)
    clock: Callable[[], float] = time.time
    #: why a location that is not ready will not load its code until it changes (its state
    #: and error: "location 'x' is error: ..."), None while it may still get ready
    not_loading: Callable[[str], Optional[str]] = lambda name: None


@dataclass
class _Active:
    """A run this coordinator launched and has not finished."""

    record: RunRecord
    process: Optional[RunProcess] = None
    cancel_reason: Optional[str] = None
    task: Optional[asyncio.Task] = None
    writes: List[asyncio.Future] = field(default_factory=list)


class RunCoordinator:
    def __init__(
        self,
        store: Any,  # storage.writer.AsyncStorage: every Storage method as a coroutine
        hooks: RunHooks,
        *,
        cancel_grace: float = CANCEL_GRACE,
        poll_seconds: float = POLL_SECONDS,
        monitor_seconds: float = MONITOR_SECONDS,
    ) -> None:
        self.store = store
        self.hooks = hooks
        self.cancel_grace = cancel_grace
        self.poll_seconds = poll_seconds
        self.monitor_seconds = monitor_seconds
        self._monitor_task: Optional[asyncio.Task] = None
        #: run id -> when the monitor last saw its `wsm job execute` process alive
        self._seen_alive: Dict[str, float] = {}
        self._active: Dict[str, _Active] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: Optional[asyncio.Task] = None
        self._queued = 0
        self._listeners: List[Callable[[RunRecord], None]] = []
        self._hurry = asyncio.Event()
        #: processes started ahead of schedule ticks (runs/prestart.py)
        self.prestart = Prestart(hooks.plan)

    # -- the contract -----------------------------------------------------------------------

    async def start(self) -> None:
        """Recovery first (runs left in progress by a killed manager end FAILURE), then the
        dequeue loop, which launches the runs still queued, and the monitor of runs of `wsm
        job execute` (one whose process is gone ends FAILURE within `monitor_seconds`)."""
        await self._recover()
        self._loop_task = asyncio.ensure_future(self._dequeue_loop())
        self._monitor_task = asyncio.ensure_future(self._monitor_loop())
        self.wake()

    async def submit(
        self,
        location: Optional[str],
        job: str,
        *,
        run_config: Optional[dict] = None,
        tags: Optional[Dict[str, str]] = None,
        origin: Optional[dict] = None,
        repository: Optional[str] = None,
    ) -> RunRecord:
        """A manual launch: QUEUED in the storage, the queue woken. `location` None: the one
        location whose snapshot has `job`. LookupError (one line) for an unknown location or
        job, or a job in several locations; ValueError for a bad `wsm/` tag
        (`BadTag`) or a run config or tags that are not plain JSON (`BadRunInput`)."""
        if self._stopping:
            raise LookupError("the manager is shutting down; no run can be launched")
        location, repository, job_tags = self.find_job(job, location, repository)
        check_run_input(run_config or {}, tags or {})  # BadRunInput: a ValueError
        merged = {**job_tags, **(tags or {})}
        priority = check_tags(merged)  # BadTag: a ValueError
        record = RunRecord(
            run_id=new_run_id(),
            location=location,
            job=job,
            status=QUEUED,
            repository=repository,
            run_config=dict(run_config or {}),
            tags=merged,
            origin=dict(origin or {"kind": "manual"}),
            priority=priority,
            created_at=self.hooks.clock(),
        )
        stored = await self.store.add_run(record, queued_message(record.origin))
        self.hooks.report(stored, "queued")
        self.wake()
        return stored

    def wake(self) -> None:
        """Look at the queue now (runs were queued, a run ended, a location became ready)."""
        self._wake.set()

    async def cancel(self, run_id: str, reason: str = "canceled by user") -> RunRecord:
        """QUEUED: CANCELED at once. In progress: CANCELING, SIGTERM to its tree, SIGKILL
        after the grace, then CANCELED with `reason`. A final run is returned as it is.
        LookupError for an unknown run (or an ambiguous prefix)."""
        try:
            record = await self.store.get_run(run_id)
        except RunNotFound as exc:
            raise LookupError(str(exc)) from None
        active = self._active.get(record.run_id)
        if active is not None:
            return await self._cancel_active(active, reason)
        if record.status == QUEUED:
            record = await self.store.update_run(
                record.run_id,
                status=CANCELED,
                message=reason,
                error=reason,
                ended_at=self.hooks.clock(),
            )
            self._finished(record, "canceled")
            return record
        if record.is_final:
            return record
        pid = record.origin.get("pid")
        if record.origin.get("kind") == "execute" and owner_alive(record.origin, record.created_at):
            raise LookupError(
                f"run {record.run_id} is {record.status} but not run by this manager "
                f"(`wsm job execute`, pid {pid}): stop it there"
            )
        # Nothing runs it any more (its `wsm job execute` is gone, or the manager that ran it
        # was killed): end it now, as Dagster's forced termination of a run whose worker
        # is gone marks it CANCELED at once.
        gone = (
            f"its `wsm job execute` process, pid {pid}, had ended"
            if record.origin.get("kind") == "execute"
            else "its process had ended"
        )
        return await self._end_orphan(record, CANCELED, reason, f"{reason} ({gone})")

    def warm(self, location: str, until: float) -> None:
        """A run of `location` is likely before wall time `until` (a schedule's tick comes):
        start its process now, to be taken by that run (runs/prestart.py)."""
        if not self._stopping:
            self.prestart.warm(location, until)

    async def shutdown(self, drain_seconds: float) -> None:
        """Stop launching; wait up to `drain_seconds` for the runs in progress; cancel the
        rest ("the manager shut down") and wait for them to end. Queued runs stay queued."""
        self._stopping = True
        self.wake()
        await self.prestart.close()
        if self._loop_task is not None:
            self._loop_task.cancel()
        if self._monitor_task is not None:
            self._monitor_task.cancel()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks and drain_seconds > 0:
            self.hooks.message(
                f"waiting up to {drain_seconds:g}s for {len(tasks)} run(s) in progress"
            )
            hurry = asyncio.ensure_future(self._hurry.wait())
            drained = asyncio.ensure_future(asyncio.wait(tasks))
            await asyncio.wait(
                [drained, hurry], timeout=drain_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            hurry.cancel()
            drained.cancel()
        left = list(self._active.values())
        for active in left:
            with contextlib.suppress(Exception):
                await self._cancel_active(active, SHUTDOWN_REASON)
        tasks = [a.task for a in left if a.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.cancel_grace + 10.0)
        await self._write_logs()

    async def run_now(
        self,
        record: RunRecord,
        message: str = "executed",
        process: Optional[RunProcess] = None,
    ) -> RunRecord:
        """Store `record` and run it at once in the foreground, outside the queue and its
        limits, without retries (`wsm job execute`). `process`: the run's process, already
        started with `hold` for this record (its job starts once STARTING is committed).
        Returns the final record."""
        self._stopping = True  # no queue passes, no retries: this coordinator runs one run
        # Stored STARTING, never QUEUED: a manager running for the same workspace launches
        # the QUEUED runs it finds, and would run this one a second time.
        record = dataclasses.replace(record, status=STARTING, start_time=self.hooks.clock())
        # submitted first, in order, but not waited for: the process starts while the
        # storage may still be opening (runs/execute.OpeningStorage)
        added = self.store.add_run(record, message)
        active = self._active[record.run_id] = _Active(record, process)
        active.task = asyncio.ensure_future(self._execute(active))
        try:
            stored = await added
        except BaseException:  # it cannot be recorded (StorageError): stop it
            active.cancel_reason = "the run cannot be recorded"
            await self._stop(active)
            await asyncio.wait([active.task], timeout=self.cancel_grace + 5)
            raise
        self.hooks.report(stored, "starting")
        try:
            await asyncio.shield(active.task)
        finally:
            await self._write_logs()
        return await self.store.get_run(record.run_id)

    async def kill_now(self, run_id: str) -> None:
        """SIGKILL a run's tree at once (a second Ctrl-C)."""
        active = self._active.get(run_id)
        if active is not None and active.process is not None:
            await active.process.kill_tree()

    def hurry(self) -> None:
        """Cut a drain short (a second Ctrl-C): cancel what runs now, without the grace."""
        self.cancel_grace = 0.0
        self._hurry.set()

    def queue_length(self) -> int:
        """Queued runs not yet started, as of the last pass over the queue."""
        return self._queued

    def in_progress(self) -> int:
        """Runs this manager has launched and not yet finished."""
        return len(self._active)

    def add_finished_listener(self, callback: Callable[[RunRecord], None]) -> None:
        """`callback(record)` for every run that reaches a final status (run status sensors)."""
        self._listeners.append(callback)

    # -- finding a job ------------------------------------------------------------------------

    def find_job(
        self, job: str, location: Optional[str] = None, repository: Optional[str] = None
    ) -> Tuple[str, Optional[str], Dict[str, str]]:
        """(location, repository, the job's own tags) for `job`, from the snapshots of the
        ready locations. LookupError with one line when it is unknown or ambiguous."""
        workspace = self.hooks.workspace()
        names = [loc.name for loc in workspace.locations]
        if location is not None and location not in names:
            raise LookupError(
                f"no location named {location!r} (known: {', '.join(names) or 'none'})"
            )
        found: List[Tuple[str, Optional[str], Dict[str, str]]] = []
        waiting: List[str] = []
        for name in [location] if location is not None else names:
            snapshot = self.hooks.snapshot(name)
            if snapshot is None:
                waiting.append(name)
                continue
            for repo in snapshot.get("repositories") or []:
                if repository is not None and repo.get("name") != repository:
                    continue
                for item in repo.get("jobs") or []:
                    if item.get("name") == job:
                        found.append((name, repo.get("name"), dict(item.get("tags") or {})))
        # a location that failed to load (error, failed) has no job until it changes:
        # refused at once, as Dagster refuses a launch from a location that failed to load
        broken = {name: why for name in waiting for why in [self.hooks.not_loading(name)] if why}
        if location is not None and not found and location in broken:
            raise LookupError(f"{broken[location]}; no run can start there until it loads")
        if location is not None and not found and waiting:
            return location, repository, {}  # not loaded yet: the run waits for it
        if not found:
            where = f"location {location!r}" if location is not None else "any loaded location"
            notes = list(broken.values())
            starting = [name for name in waiting if name not in broken]
            if starting:
                notes.append(f"{', '.join(starting)} not loaded yet")
            hint = f" ({'; '.join(notes)})" if notes and location is None else ""
            raise LookupError(f"no job named {job!r} in {where}{hint}")
        locations = sorted({f[0] for f in found})
        if len(locations) > 1:
            raise LookupError(
                f"job {job!r} is in several locations ({', '.join(locations)}); name one with -l"
            )
        if len(found) > 1:
            repos = ", ".join(str(f[1]) for f in found)
            raise LookupError(
                f"job {job!r} is in several repositories ({repos}) of {locations[0]!r}"
            )
        return found[0]

    # -- recovery and the queue ------------------------------------------------------------------

    async def _recover(self) -> None:
        """Runs left in progress by a killed manager end FAILURE, and so do runs of a `wsm
        job execute` whose process is gone (execute_ended_reason). Their `ended_at` is the
        last moment the records show them alive (`_last_alive`), not now, so the downtime
        does not count in their duration."""
        runs = await self.store.list_runs(statuses=sorted(IN_PROGRESS_STATUSES), limit=None)
        manager_seen = await self.store.last_tick_time() if runs else None
        executes = False
        for run in runs:
            if run.origin.get("kind") == "execute":
                if owner_alive(run.origin, run.created_at):
                    continue  # a `wsm job execute` still running it
                executes = True
                reason = execute_ended_reason(run.origin.get("pid"))
                await self._end_orphan(run, FAILURE, reason, reason)
            else:  # the manager's own: only it records ticks, and its runs die with it
                await self._end_orphan(run, FAILURE, KILLED_REASON, KILLED_REASON, manager_seen)
        if executes:
            _remove_stale_execute_folders()

    async def _last_alive(self, run: RunRecord, *also: Optional[float]) -> float:
        """The last moment the records (and `also`: what else saw it alive) show the run
        alive: its latest status event or log line (Storage.last_seen), never after now."""
        seen = [run.created_at, run.start_time, run.started_at, run.updated_at, *also]
        seen.append(await self.store.last_seen(run.run_id))
        return min(max(t for t in seen if t is not None), self.hooks.clock())

    async def _end_orphan(
        self,
        run: RunRecord,
        status: str,
        error: str,
        message: str,
        *also_seen: Optional[float],
    ) -> RunRecord:
        """End a run in progress that no process of this manager runs (its process is
        gone) with `status`, at the last moment it was seen alive."""
        ended = await self._last_alive(run, self._seen_alive.pop(run.run_id, None), *also_seen)
        self._add_log(LogLine(run.run_id, self.hooks.clock(), "wsm", f"{status}: {message}"))
        record = await self.store.update_run(
            run.run_id, status=status, message=message, error=error, ended_at=ended
        )
        if record.status == status and record.error == error:  # not ended elsewhere first
            self._finished(record, status.lower())
        return record

    async def _monitor_loop(self) -> None:
        """Every `monitor_seconds`: end FAILURE the runs of a `wsm job execute` whose process
        is gone (killed with `kill -9`: nothing else would ever end them)."""
        failing = False
        while not self._stopping:
            await asyncio.sleep(self.monitor_seconds)
            try:
                await self._check_executes()
                failing = False
            except Exception as exc:  # a storage problem: say it once, go on
                if not failing:
                    self.hooks.message(f"runs: cannot check runs of `wsm job execute`: {exc}")
                failing = True

    async def _check_executes(self) -> None:
        runs = await self.store.list_runs(statuses=sorted(IN_PROGRESS_STATUSES), limit=None)
        executes = [
            r for r in runs if r.origin.get("kind") == "execute" and r.run_id not in self._active
        ]
        ended = False
        now = self.hooks.clock()
        for run in executes:
            if owner_alive(run.origin, run.created_at):
                self._seen_alive[run.run_id] = now
                continue
            reason = execute_ended_reason(run.origin.get("pid"))
            await self._end_orphan(run, FAILURE, reason, reason)
            ended = True
        current = {r.run_id for r in executes}
        for run_id in [k for k in self._seen_alive if k not in current]:
            del self._seen_alive[run_id]
        if ended:
            _remove_stale_execute_folders()

    async def _dequeue_loop(self) -> None:
        while not self._stopping:
            if self._queued:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            else:
                await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self._dequeue()
            except Exception as exc:  # a storage problem: say so, try again at the next pass
                self.hooks.message(f"runs: cannot read the queue: {exc}")
                self._queued = max(self._queued, 1)

    async def _dequeue(self) -> None:
        queued = [
            r
            for r in await self.store.list_runs(statuses=[QUEUED], limit=None)
            if r.run_id not in self._active
        ]
        workspace = self.hooks.workspace()
        configs = {loc.name: loc for loc in workspace.locations}
        for run in [r for r in queued if r.location not in configs]:
            queued.remove(run)
            await self._fail_queued(run, f"location {run.location!r} is not in the workspace")
        # queued while its location was starting, which then failed to load: it would wait
        # until the code changes (Dagster fails a queued run whose location cannot load)
        for run, why in [(r, self.hooks.not_loading(r.location)) for r in list(queued)]:
            if why:
                queued.remove(run)
                await self._fail_queued(run, why)
        daemon = workspace.daemon
        limits = Limits(
            daemon.max_concurrent_runs,
            {
                n: c.max_concurrent_runs
                for n, c in configs.items()
                if c.max_concurrent_runs is not None
            },
            tuple(daemon.tag_concurrency_limits),
        )
        chosen = runs_to_start(
            queued, [a.record for a in self._active.values()], limits, self.hooks.location_ready
        )
        self._queued = len(queued) - len(chosen)
        for run in chosen:
            if isinstance(configs[run.location].target, RemoteTarget):
                await self._fail_queued(
                    run, f"location {run.location!r} is remote (grpc_server): runs need local code"
                )
                continue
            active = self._active[run.run_id] = _Active(run)
            active.task = asyncio.ensure_future(self._execute(active))

    async def _fail_queued(self, run: RunRecord, reason: str) -> None:
        record = await self.store.update_run(
            run.run_id, status=FAILURE, message=reason, error=reason, ended_at=self.hooks.clock()
        )
        self._finished(record, "failure")

    # -- one run ------------------------------------------------------------------------------

    async def _execute(self, active: _Active) -> None:
        """Run it to its end and record the end; its slot is held until the record is final."""
        run = active.record
        try:
            result = await self._run(active)
        except Exception as exc:  # a bug or a storage failure: the run must still end
            what = f"wsm could not run it: {exc!r}"
            result = Outcome(FAILURE, what, error=what)
        try:
            if active.writes:
                await asyncio.gather(*active.writes, return_exceptions=True)
            await self._write_logs()
            record = await self.store.update_run(
                run.run_id,
                status=result.status,
                message=result.message,
                ended_at=self.hooks.clock(),
                **result.fields(),
            )
            self._active.pop(run.run_id, None)
            self._finished(record, record.status.lower())
            await self._maybe_retry(record)
        except Exception as exc:
            self.hooks.message(f"run {run.run_id}: cannot record its end: {exc}")
        finally:
            self._active.pop(run.run_id, None)
            self.wake()

    async def _run(self, active: _Active) -> Outcome:
        run = active.record
        # STARTING goes to the writer thread now (AsyncStorage keeps writes in call order)
        # while the run is planned; the process starts only once it is committed. A manager
        # killed in between leaves the run STARTING (FAILURE at the next start), never QUEUED
        # with its job already begun: that would run it again, its run_key too.
        starting = self.store.update_run(
            run.run_id, status=STARTING, message="starting", start_time=self.hooks.clock()
        )
        timeout = self._timeout(run)
        given = active.process
        plan: Optional[RunPlan] = None
        if given is None:
            try:
                plan = await self.hooks.plan(run.location)
            except RunPlanError as exc:
                await starting
                return Outcome(FAILURE, str(exc), error=str(exc))
        try:
            record = await starting
        except Exception as exc:  # not recorded: do not run it unseen
            what = f"the run cannot be recorded: {exc}"
            if given is not None:
                await self._discard(given)
            return Outcome(FAILURE, what, error=what)
        if record.is_final or active.cancel_reason is not None:  # it never starts
            if given is not None:
                await self._discard(given)
            if record.is_final:  # ended from elsewhere meanwhile
                return Outcome(record.status, record.error or f"the run was {record.status}")
            reason = str(active.cancel_reason)
            return Outcome(CANCELED, reason, error=reason)
        if active.record.status == QUEUED and record.status == STARTING:
            active.record = record
            self.hooks.report(record, "starting")

        def events(event: Dict[str, Any]) -> None:
            self._on_event(active, event)

        def output(stream: str, when: float, text: str) -> None:
            self._add_log(LogLine(run.run_id, when, stream, text))

        if given is not None:
            process = given
            process.attach(events, output)
            process.go()
        else:
            assert plan is not None
            boot = bootstrap_for(
                plan,
                run_id=run.run_id,
                location=run.location,
                job=run.job,
                repository=run.repository,
                run_config=run.run_config,
                tags=run.tags,
            )
            try:
                process = await RunProcess.start(
                    plan,
                    boot,
                    events,
                    output,
                    name=f"run-{run.run_id[:12]}",
                    held=self.prestart.take(run.location, plan),
                )
            except OSError as exc:
                what = f"cannot start {plan.python}: {exc.strerror or exc}"
                return Outcome(FAILURE, what, error=what)
        active.process = process
        self._write(active, self.store.update_run(run.run_id, pid=process.pid))
        if active.cancel_reason is not None:
            asyncio.ensure_future(self._stop(active))
        try:
            if timeout is None:
                code = await process.wait()
            else:
                try:
                    code = await asyncio.wait_for(asyncio.shield(process.wait()), timeout)
                except asyncio.TimeoutError:
                    await self._cancel_active(active, f"timed out after {timeout:g} s")
                    code = await process.wait()
        finally:
            await process.close()
        result = outcome(code, process.final_event, active.cancel_reason)
        self._add_log(
            LogLine(run.run_id, self.hooks.clock(), "wsm", f"{result.status}: {result.message}")
        )
        return result

    async def _discard(self, process: RunProcess) -> None:
        """A held process whose run will not start: EOF on its stdin ends it unrun."""
        process.terminate()
        await process.wait()
        await process.close()

    def _timeout(self, run: RunRecord) -> Optional[float]:
        value = self._tag_number(run, TIMEOUT_TAG)
        if value is None:
            value = self.hooks.workspace().daemon.run_timeout_seconds
        return value if value else None

    def _tag_number(self, run: RunRecord, key: str) -> Optional[float]:
        """A number tag of a run queued by other code (the daemon), which `submit` did not
        check: a bad one is said and ignored."""
        try:
            return _number_tag(run.tags, key)
        except ValueError as exc:
            self._add_log(LogLine(run.run_id, self.hooks.clock(), "wsm", f"{exc}; ignored"))
            return None

    def _on_event(self, active: _Active, event: Dict[str, Any]) -> None:
        run_id = active.record.run_id
        kind = event.get("event")
        stamp = event.get("time")
        when = float(stamp) if isinstance(stamp, (int, float)) else self.hooks.clock()
        if kind == "started" and active.cancel_reason is None:
            self._write(active, self._mark_started(active, when))
        elif kind == "output" and event.get("stream") in ("stdout", "stderr"):
            for piece in text_pieces(str(event.get("text"))):  # as the pipes' lines
                self._add_log(LogLine(run_id, when, str(event["stream"]), piece))
        elif kind == "log":
            level = event.get("level")
            self._add_log(
                LogLine(
                    run_id,
                    when,
                    "log",
                    str(event.get("message")),
                    level=str(level) if level else None,
                )
            )

    async def _mark_started(self, active: _Active, when: float) -> None:
        record = await self.store.update_run(
            active.record.run_id, status=STARTED, message="the job started", started_at=when
        )
        if record.status == STARTED:
            active.record = record
            self.hooks.report(record, "started")

    def _write(self, active: _Active, coro: Awaitable[Any]) -> None:
        """A write for this run, in order with its others; its end waits for them all."""
        active.writes.append(asyncio.ensure_future(coro))

    async def _cancel_active(self, active: _Active, reason: str) -> RunRecord:
        if active.cancel_reason is None:
            active.cancel_reason = reason
            self._add_log(
                LogLine(active.record.run_id, self.hooks.clock(), "wsm", f"canceling: {reason}")
            )
            record = await self.store.update_run(
                active.record.run_id, status=CANCELING, message=reason
            )
            if record.status == CANCELING:
                active.record = record
                self.hooks.report(record, "canceling")
            if active.process is not None:
                asyncio.ensure_future(self._stop(active))
        return active.record

    async def _stop(self, active: _Active) -> None:
        """SIGTERM the run's tree; SIGKILL the tree and its cgroup after the grace."""
        process = active.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(
                asyncio.shield(process.spawned.process.wait()), self.cancel_grace
            )
        except asyncio.TimeoutError:
            self._add_log(
                LogLine(
                    active.record.run_id,
                    self.hooks.clock(),
                    "wsm",
                    f"still running {self.cancel_grace:g}s after SIGTERM: killing its processes",
                )
            )
            await process.kill_tree()

    async def _maybe_retry(self, record: RunRecord) -> None:
        if record.status != FAILURE:
            return
        allowed = self._tag_number(record, MAX_RETRIES_TAG) or 0
        if record.attempt >= allowed or self._stopping:
            return
        attempt = record.attempt + 1
        retry = RunRecord(
            run_id=new_run_id(),
            location=record.location,
            job=record.job,
            status=QUEUED,
            repository=record.repository,
            run_config=dict(record.run_config),
            tags=dict(record.tags),
            origin={"kind": "retry", "parent_run_id": record.run_id, "attempt": attempt},
            parent_run_id=record.run_id,
            attempt=attempt,
            priority=record.priority,
            created_at=self.hooks.clock(),
        )
        stored = await self.store.add_run(
            retry, f"retry {attempt} of {int(allowed)} of run {record.run_id}"
        )
        self.hooks.report(stored, "queued")

    def _finished(self, record: RunRecord, event: str) -> None:
        self.hooks.report(record, event)
        for callback in list(self._listeners):
            try:
                callback(record)
            except Exception as exc:
                self.hooks.message(f"a run listener failed: {exc!r}")

    # -- logs -----------------------------------------------------------------------------------

    def _add_log(self, line: LogLine) -> None:
        """Keep a line (batched by the storage: AsyncStorage.log never blocks)."""
        self.store.log(line)
        self.hooks.log(line)

    async def _write_logs(self) -> None:
        try:
            await self.store.flush_logs()
        except Exception as exc:  # a full disk: the lines are lost, the runs go on
            self.hooks.message(f"runs: log lines not stored: {exc}")


def _remove_stale_execute_folders() -> None:
    """The runtime folders of `wsm job execute` processes that are gone (runs/execute_start)."""
    from workspace_manager.runs.execute_start import remove_stale_folders
    from workspace_manager.supervisor.runtime import runtime_root

    with contextlib.suppress(OSError):
        remove_stale_folders(runtime_root())
