"""The work a `wsm up` manager does with its locations' definitions (SPEC section 7): its
run records (storage/), the run coordinator (runs/) and the daemon (daemon/), started,
stopped and asked through one object, so the manager only keeps locations and says when.

Order matters and is kept here: the records open before health and control answer (they
may be asked about runs); the coordinator starts once the locations are added (it recovers
the runs a killed manager left, then launches the queue); the daemon starts last and stops
first (no tick queues a run while the runs drain); the records close last.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from workspace_manager.protocol.errors import RemoteError
from workspace_manager.runs.coordinator import RunCoordinator, RunHooks, RunPlanError
from workspace_manager.runs.process import RunPlan, plan_from_launch
from workspace_manager.supervisor.plan import LaunchPlan
from workspace_manager.supervisor.state import State, Transition

if TYPE_CHECKING:
    from workspace_manager.daemon.service import Daemon
    from workspace_manager.supervisor.location import Location
    from workspace_manager.supervisor.manager import Manager


class Workload:
    """Run records, run coordinator and daemon of one manager (docs/daemon.md)."""

    def __init__(self, manager: Manager, *, daemon: bool = True) -> None:
        self.manager = manager
        self.with_daemon = daemon
        self.store: Any = None  # storage.writer.AsyncStorage, once open
        self.runs: Optional[RunCoordinator] = None
        self.daemon: Optional[Daemon] = None
        self.off_reason = "this manager runs no jobs"  # why `runs` is None
        self._tasks: list = []

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Open `<state>/<key>/runs.db` off the loop (it may migrate) and make the
        coordinator. A database that cannot be used (a full disk, a newer wsm's schema)
        turns runs off with one line; the locations still serve (SPEC section 6)."""
        from workspace_manager.storage.base import StorageError
        from workspace_manager.storage.paths import open_storage
        from workspace_manager.storage.retention import keep_pruning, retention_from
        from workspace_manager.storage.writer import AsyncStorage

        manager = self.manager
        loop = asyncio.get_running_loop()
        try:
            storage = await loop.run_in_executor(None, lambda: open_storage(manager.key))
        except (StorageError, OSError) as exc:
            self.off_reason = f"the run records cannot be opened: {exc}"
            manager.events.message(f"runs are off: {self.off_reason}")
            return
        self.store = AsyncStorage(storage)
        self.store.on_logs = manager.hub.publish_logs  # committed lines, with their seq
        hooks = RunHooks(
            workspace=lambda: manager.workspace,
            location_ready=self._location_ready,
            snapshot=lambda name: (
                manager.locations[name].snapshot if self._location_ready(name) else None
            ),
            plan=self.run_plan,
            report=manager.events.run,
            message=manager.events.message,
            not_loading=self._not_loading,
        )
        self.runs = RunCoordinator(self.store, hooks)
        self._tasks = [
            asyncio.ensure_future(manager.metrics.runs.keep_counts(lambda: self.store)),
            asyncio.ensure_future(
                keep_pruning(
                    self.store,
                    lambda: retention_from(manager.workspace.daemon),
                    on_pruned=lambda counts: manager.events.message(
                        "retention: deleted "
                        + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
                    ),
                )
            ),
        ]

    async def start(self) -> None:
        """Recover and launch the queue, then (unless `--no-daemon`) start the daemon."""
        if self.runs is None:
            return
        await self.runs.start()
        if self.with_daemon:
            from workspace_manager.daemon.service import Daemon

            manager = self.manager
            self.daemon = Daemon(
                store=self.store,
                locations=lambda: manager.locations,
                workspace=lambda: manager.workspace,
                events=manager.events,
                runs=self.runs,
            )
            await self.daemon.start()

    async def stop(self, drain_seconds: float) -> None:
        """Stop ticking, then drain the runs in progress up to `drain_seconds` and cancel
        the rest ("the manager shut down")."""
        if self.daemon is not None:
            await self.daemon.stop()
        if self.runs is not None:
            await self.runs.shutdown(drain_seconds)
            queued = await self._queued()
            if queued:
                self.manager.events.message(
                    f"{queued} queued run{' stays' if queued == 1 else 's stay'} queued: "
                    "the next `wsm up` starts them (`wsm run cancel ID` drops one)"
                )

    async def _queued(self) -> int:
        """Runs still QUEUED in the database (a count read at shutdown, not the last pass's)."""
        try:
            return int((await self.store.run_counts()).get("QUEUED", 0))
        except Exception:  # the database is failing: nothing more to say about it
            return 0

    def hurry(self) -> None:
        """A second stop signal: cancel what still runs now."""
        if self.runs is not None:
            self.runs.hurry()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.store is not None:
            await self.store.close()

    # -- what the manager tells it ------------------------------------------------------------

    def on_transition(self, loc: Location, t: Transition) -> None:
        """A location changed state: its queued runs may start; its schedules and sensors
        follow its new snapshot, or stop."""
        if t.new is State.READY and self.runs is not None:
            self.runs.wake()
        if self.daemon is not None:
            self.daemon.poke()

    def _location_ready(self, name: str) -> bool:
        loc = self.manager.locations.get(name)
        return loc is not None and loc.state is State.READY

    def _not_loading(self, name: str) -> Optional[str]:
        """The line "location 'x' is error: <its error's first line>" for a location that
        will not load its code until it or its code changes (error, failed); None while it
        may still get ready (stopped: not started yet; building, starting, backoff) or is."""
        loc = self.manager.locations.get(name)
        if loc is None or loc.state not in (State.ERROR, State.FAILED):
            return None
        error = next(iter(str(loc.error or "").strip().splitlines()), "")
        return f"location {name!r} is {loc.state.value}" + (f": {error}" if error else "")

    async def run_plan(self, name: str) -> RunPlan:
        """Where a run of location `name` starts: its serving loader's interpreter, working
        directory, environment and code (runs/process.plan_from_launch). RunPlanError when
        it has none (gone, remote, not ready)."""
        manager = self.manager
        loc = manager.locations.get(name)
        if loc is None:
            raise RunPlanError(f"location {name!r} is not in the workspace")
        if loc.config.is_remote:
            raise RunPlanError(f"location {name!r} is remote (grpc_server): runs need local code")
        inst = loc.instance
        if loc.state is not State.READY or inst is None or not isinstance(inst.plan, LaunchPlan):
            raise RunPlanError(f"location {name!r} is {loc.state.value}")
        assert manager.sdk_dir is not None
        return plan_from_launch(inst.plan, manager.sdk_dir, manager.cgroups)

    # -- what others ask ----------------------------------------------------------------------

    def status(self) -> Optional[Dict[str, Any]]:
        """The `daemon` section of /status: None unless this manager keeps runs."""
        if self.store is None:
            return None
        daemon, runs = self.daemon, self.runs
        return {
            "enabled": daemon is not None,
            "last_loop": (daemon.last_loop or None) if daemon is not None else None,
            "runs": dict(self.manager.metrics.runs.counts),
            "queue_length": runs.queue_length() if runs is not None else None,
            "in_progress": runs.in_progress() if runs is not None else None,
        }

    def handlers(self) -> Dict[str, Callable[[dict], Any]]:
        """The control socket's commands for runs, schedules and sensors."""
        return {
            "launch_run": self._h_launch_run,
            "cancel_run": self._h_cancel_run,
            "instigators": self._h_instigators,
            "set_instigator_status": self._h_set_instigator_status,
        }

    def _the_daemon(self) -> Daemon:
        if self.daemon is None:
            why = self.off_reason if self.with_daemon else "wsm up --no-daemon"
            raise RemoteError("NotAvailable", f"this manager runs no daemon ({why})")
        return self.daemon

    def _coordinator(self) -> RunCoordinator:
        if self.runs is None:
            raise RemoteError("NotAvailable", self.off_reason)
        return self.runs

    async def _h_instigators(self, params: dict) -> list:
        """{kind: "schedule" | "sensor" | null} -> every one, docs/daemon.md."""
        return self._the_daemon().instigators(params.get("kind"))

    async def _h_set_instigator_status(self, params: dict) -> dict:
        """{kind, name (NAME or LOCATION:NAME), status: RUNNING | STOPPED} -> it, changed."""
        daemon = self._the_daemon()
        kind, name, status = params.get("kind"), params.get("name"), params.get("status")
        if not all(isinstance(x, str) for x in (kind, name, status)):
            raise ValueError("kind, name and status must be strings")
        try:
            return await daemon.set_status(str(kind), str(name), str(status))
        except LookupError as exc:
            raise RemoteError("NotFound", _lookup_text(exc)) from None

    async def _h_launch_run(self, params: dict) -> dict:
        """{location (optional), job, run_config, tags, origin} -> the QUEUED run."""
        runs = self._coordinator()
        job, location = params.get("job"), params.get("location")
        config, tags = params.get("run_config") or {}, params.get("tags") or {}
        origin = params.get("origin") or {}
        if not isinstance(job, str) or not (location is None or isinstance(location, str)):
            raise ValueError("job (and location) must be strings")
        if not all(isinstance(x, dict) for x in (config, tags, origin)):
            raise ValueError("run_config, tags and origin must be maps")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise ValueError("tags must map strings to strings")
        origin = {**origin, "kind": "manual"}
        try:
            record = await runs.submit(location, job, run_config=config, tags=tags, origin=origin)
        except LookupError as exc:
            raise RemoteError("NotFound", _lookup_text(exc)) from None
        return record.as_dict()

    async def _h_cancel_run(self, params: dict) -> dict:
        """{run_id (or a unique prefix)} -> the run, CANCELING or already final."""
        runs = self._coordinator()
        run_id = params.get("run_id")
        if not isinstance(run_id, str):
            raise ValueError("run_id must be a string")
        try:
            record = await runs.cancel(run_id, str(params.get("reason") or "canceled by user"))
        except LookupError as exc:
            raise RemoteError("NotFound", _lookup_text(exc)) from None
        return record.as_dict()


def _lookup_text(exc: LookupError) -> str:
    """A LookupError's message (str() of a KeyError would quote it)."""
    return str(exc.args[0]) if exc.args else str(exc)
