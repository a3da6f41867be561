"""The manager: every location of a workspace, their shared runtime directory, the control
socket and the health endpoint, on one asyncio loop.

Its main loop says what it does: start every location at once, serve until asked to stop,
stop every location at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.inuse import write_in_use
from workspace_manager.envs.progress import BuildReporter
from workspace_manager.envs.resolve import InterpreterError, plain_interpreter
from workspace_manager.envs.service import EnvironmentService
from workspace_manager.http.view import (
    LocationView,
    ManagerView,
    ReadinessViews,
    status_document,
)
from workspace_manager.loader.launch import make_sdk_dir
from workspace_manager.protocol.errors import CallTimeout, RemoteError
from workspace_manager.supervisor import (
    fdlimit,
    forkserver,
    heartbeats,
    looplag,
    orphans,
    runtime,
    statedirs,
)
from workspace_manager.supervisor.cgroup import CgroupRoot
from workspace_manager.supervisor.codewatch import code_fingerprint
from workspace_manager.supervisor.control import ControlServer
from workspace_manager.supervisor.instance import LoadFailed
from workspace_manager.supervisor.location import Location, LocationHooks, NotReady
from workspace_manager.supervisor.logs import LocationLog, log_path, state_root
from workspace_manager.supervisor.metrics import ManagerMetrics
from workspace_manager.supervisor.plan import LaunchPlan, launch_plan
from workspace_manager.supervisor.remote import RemotePlan, remote_plan
from workspace_manager.supervisor.secret_vars import without_secrets, wsm_secret_vars
from workspace_manager.supervisor.state import State, Transition
from workspace_manager.version import __version__
from workspace_manager.web.events import EventHub

if TYPE_CHECKING:
    from workspace_manager.daemon.service import Daemon
    from workspace_manager.runs.coordinator import RunCoordinator
    from workspace_manager.supervisor.workload import Workload
from workspace_manager.workspace.model import LocationConfig, RemoteTarget, Workspace


@dataclass
class EventSink:
    """Where the manager reports what happens; the CLI prints, tests may record."""

    transition: Callable[[str, Transition], None] = lambda name, t: None
    output: Callable[[str, str, bytes], None] = lambda name, stream, line: None
    message: Callable[[str], None] = lambda text: None
    # (RunRecord, event: its new status in lower case, e.g. "queued", "success"); docs/daemon.md
    run: Callable[[Any, str], None] = lambda record, event: None
    tick: Callable[[Any], None] = lambda tick: None  # a TickRecord, once it has its result
    # a schedule or sensor started or stopped: {"kind", "location", "name", "status", "next_tick"}
    instigator: Callable[[dict], None] = lambda doc: None


#: How often locations in `error` or `failed` are checked for edited code.
CODEWATCH_SECONDS = 2.0
#: How long a reload waits for its new and restarted locations to load, to report them;
#: under the CLI's 600 s wait for the answer.
RELOAD_WAIT_SECONDS = 540.0
#: States a location does not leave on its own: retried when their code changes.
_GAVE_UP = (State.ERROR, State.FAILED)
#: How often leftovers of dead loaders (reparented to the manager) are killed.
ORPHANS_SECONDS = 1.0


class Manager:
    def __init__(
        self,
        workspace: Workspace,
        identity: str,
        *,
        events: Optional[EventSink] = None,
        health: Optional[Tuple[str, int]] = None,
        stop_grace: float = 5.0,
        reread: Optional[Callable[[], Workspace]] = None,
        build_reporter: Optional[BuildReporter] = None,
        adjust_plan: Optional[Callable[[LaunchPlan], LaunchPlan]] = None,
        secret_vars: Tuple[str, ...] = (),
        runs: bool = False,
        api_token: Optional[str] = None,
        daemon: bool = True,
        frozen_envs: bool = False,
        build_identity: Optional[str] = None,
    ) -> None:
        self.workspace = workspace
        self.identity = identity
        self.key = runtime.manager_key(identity)
        self.events = events or EventSink()
        self.health_listen = health
        self.health_address: Optional[Tuple[str, int]] = None
        self.stop_grace = stop_grace
        self.reread = reread
        self.metrics = ManagerMetrics(self)  # read at scrape time: GET /metrics
        self.events = self.metrics.observe_events(self.events)  # runs and ticks counted too
        self.hub = EventHub()  # the web page's live events (web/events.py, GET /api/events)
        self.events = self.hub.observe_events(self.events, self)
        self.api_token = api_token  # `--api-token-env`: writes to the JSON API from afar
        self.envs = EnvironmentService(
            reporter=self.metrics.build_reporter(build_reporter),
            frozen=frozen_envs,  # `--frozen-envs`: never build, never write the cache
            # what a missing env's `wsm env build` command names (`wsm serve`'s own identity
            # also holds its listen address)
            identity=build_identity or identity,
        )
        self.adjust_plan = adjust_plan  # `wsm serve`: its own listen address, token and TLS
        self.secret_vars = secret_vars  # more variables kept from locations (`--token-env`)
        self._env_keys: Dict[str, str] = {}
        # Code fingerprints (codewatch): taken as each process is planned, kept once it is
        # ready or in `error`. A reload restarts the locations whose code moved since, and a
        # location in `error` is retried when its code moves.
        self._planned_code: Dict[str, Any] = {}
        self._code: Dict[str, Any] = {}
        self._codewatch_task: Optional[asyncio.Task] = None
        self.started_at = time.time()
        self.locations: Dict[str, Location] = {}
        self.dir: Optional[Path] = None
        self._sdk_dir: Optional[str] = None
        self._socket_counter = 0
        self._logs: Dict[str, LocationLog] = {}
        self._log_texts: Dict[str, str] = {}  # location -> its log path, for views
        # location -> (its latest Transition, its latest transitions as dicts), for views
        self._transition_views: Dict[str, Tuple[Optional[Transition], tuple]] = {}
        self._readiness = ReadinessViews(self.locations.values)  # what /readyz reads
        self._stop = asyncio.Event()
        self._alive = True
        self._control: Optional[ControlServer] = None
        self._health: Any = None  # web/server.py's WebServer, once the web stack serves
        self.web: Any = None  # the web side's WebContext, once it serves
        self._heartbeat_task: Optional[asyncio.Task] = None
        self.loop_lag: Optional[looplag.LoopLag] = None
        self._lock: Optional[runtime.ManagerLock] = None
        self._cgroups: Optional[CgroupRoot] = None
        self._forks: Optional[forkserver.ForkServers] = None  # supervisor/forkserver.py
        self._orphans_task: Optional[asyncio.Task] = None
        self._heartbeat_file: Optional[heartbeats.HeartbeatFile] = None
        self._heartbeat_watch = heartbeats.HeartbeatWatch()
        self.loop_heartbeat = time.monotonic()
        # `wsm up`: run records, run coordinator and daemon (supervisor/workload.py); `wsm
        # serve` and a one-shot load keep none. Made in `start`, once the first locations
        # are on their way: its modules (the run coordinator, run plans) take ~10 ms.
        self.workload: Optional[Workload] = None
        self._keeps_runs = runs
        self._with_daemon = daemon

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, serve_control: bool = True) -> int:
        """Start everything, serve until SIGINT/SIGTERM/`wsm down`, stop everything.

        The process that runs this is the manager's own (`wsm up`, `wsm serve`): it becomes
        the child subreaper of its locations (supervisor/orphans.py), which `start` alone,
        as tests embed it, does not."""
        if orphans.become_subreaper():
            self._orphans_task = asyncio.ensure_future(self._collect_orphans())
        fdlimit.raise_to_hard()  # ~6 descriptors a location; the web guard's budget reads it
        try:
            # before start: its later steps (recovering runs, the daemon) follow the health
            # line, and a SIGTERM meanwhile must be a clean stop, not the default death
            self._install_signal_handlers()
            await self.start(serve_control)
            await self._stop.wait()
        finally:
            await self.shutdown()
        return 0

    async def start(self, serve_control: bool = True) -> None:
        """Take the runtime directory, bind the health address, start every location, then
        set up the rest (run records, the web stack, the control socket, the daemon).

        The first locations (one per core) start before the rest of the manager: each loads
        its code in a process of its own (tens of milliseconds at least) while the manager
        imports and opens what it serves with. The others start after: 100 loading
        processes would each get as much CPU as the manager, whose own set-up (the web
        stack, the records) then took seconds. Clients of the health address queue in its
        backlog until the web stack serves it, right after the records are open."""
        root = runtime.ensure_private_dir(runtime.runtime_root())
        directory = runtime.ensure_private_dir(root / self.key)
        lock = runtime.ManagerLock(directory)
        if not lock.acquire():
            raise ManagerRunning(runtime.ManagerRecord.read(directory))
        self._lock = lock
        self.dir = directory
        statedirs.claim(self.key, self.identity)
        self._sdk_dir = make_sdk_dir(str(self.dir))
        self._cgroups = CgroupRoot.create()  # None: no cgroup here, the process tree must do
        try:  # local locations count in pages of it instead of answering pings
            self._heartbeat_file = heartbeats.HeartbeatFile(str(directory / "heartbeats"))
        except OSError as exc:
            self.events.message(f"no heartbeat file ({exc}): locations are pinged")
        if forkserver.enabled():
            self._forks = forkserver.ForkServers(self._sdk_dir, self.events.message)
        listeners = await self._bind_health()  # a taken port fails before anything starts
        configs = list(self.workspace.locations)
        early = max(1, os.cpu_count() or 1)
        first = [self._add_location(config) for config in configs[:early]]
        await _launched(first)
        if self._keeps_runs:  # before health and control answer: they may ask
            from workspace_manager.supervisor.workload import Workload

            self.workload = Workload(self, daemon=self._with_daemon)
            await self.workload.open()
        self._heartbeat_task = asyncio.ensure_future(self._loop_heartbeat())
        self.loop_lag = looplag.LoopLag().start()  # heartbeat deadlines allow for our stalls
        self._codewatch_task = asyncio.ensure_future(self._retry_changed_code())
        if listeners is not None:
            await self._serve_health(listeners)
        # psutil samples a location's memory as it becomes ready: imported now, while the
        # first locations load, not then
        asyncio.get_running_loop().run_in_executor(None, _import_ahead)
        secret = secrets.token_hex(16)
        if serve_control:
            self._control = ControlServer(self.dir / "manager.sock", secret, self._handlers())
            await self._control.start()
            runtime.ManagerRecord(
                pid=os.getpid(),
                key=self.key,
                identity=self.identity,
                control=f"unix:{self.dir / 'manager.sock'}",
                secret=secret,
                started_at=self.started_at,
                version=__version__,
                health=self.health_text(),
            ).write(self.dir)
        for config in configs[early:]:
            self._add_location(config)
        if self.workload is not None:
            await self.workload.start()

    async def _bind_health(self) -> Optional[List[socket.socket]]:
        """The health address's listening sockets (web/bind.py: no web stack imported yet),
        or None without `--health`. Raises HealthListenError (one line)."""
        if self.health_listen is None:
            return None
        from workspace_manager.web.bind import bind_listeners

        host, port = self.health_listen
        try:
            return await bind_listeners(host, port)
        except OSError as exc:  # port in use, address not ours: say which, in one line
            raise HealthListenError(f"--health {host}:{port}: {exc.strerror or exc}") from None

    async def _serve_health(self, listeners: List[socket.socket]) -> None:
        """Import the web stack and serve on the bound `listeners` (`/livez`, the API...).

        Called once the first locations are on their way: their interpreters start beside
        the ~60 ms this import takes of the manager's thread, and clients wait in the bound
        address's backlog meanwhile."""
        from workspace_manager.http.api import Api, manager_sources
        from workspace_manager.web.app import build_app
        from workspace_manager.web.context import WebContext
        from workspace_manager.web.server import WebServer
        from workspace_manager.web.session import new_secret

        assert self.health_listen is not None
        self.web = WebContext(
            view=self.view,
            alive=self.alive,
            readiness=self.readiness,
            api=Api(manager_sources(self, self.api_token)),
            hub=self.hub,
            exposition=self.metrics.exposition_async,
            api_token=self.api_token,
            secret=new_secret(),
        )
        self._health = WebServer(*self.health_listen, build_app(self.web))
        try:
            self.health_address = await self._health.start(listeners)
        except OSError as exc:
            host, port = self.health_listen
            raise HealthListenError(f"--health {host}:{port}: {exc.strerror or exc}") from None
        address = self.health_text()
        self.events.message(
            f"health endpoint on http://{address} (the web page: http://{address}/)"
        )

    @property
    def store(self) -> Any:
        """The run records (storage.writer.AsyncStorage), or None."""
        return self.workload.store if self.workload is not None else None

    @property
    def runs(self) -> Optional[RunCoordinator]:
        return self.workload.runs if self.workload is not None else None

    @property
    def daemon(self) -> Optional[Daemon]:
        return self.workload.daemon if self.workload is not None else None

    @property
    def sdk_dir(self) -> Optional[str]:
        """The folder holding the SDK's symlink that loaders and runs import."""
        return self._sdk_dir

    @property
    def cgroups(self) -> Optional[CgroupRoot]:
        return self._cgroups

    def _forget_env(self, name: str) -> None:
        """`name` runs on no env of the cache any more (removed by a reload, or reloaded
        without `environment`): so `wsm env list` and `prune` stop counting it as running."""
        if self._env_keys.pop(name, None) is None or self.dir is None:
            return
        try:
            write_in_use(self.dir, self._env_keys)
        except OSError as exc:
            self.events.message(f"{name}: cannot record that its env is no longer used: {exc}")

    def _add_location(self, config: LocationConfig) -> Location:
        hooks = LocationHooks(
            plan=self._plan,
            on_transition=self._on_transition,
            on_output=self._on_output,
            heartbeats=self._heartbeat_watch if self._heartbeat_file is not None else None,
        )
        loc = Location(config, hooks)
        self.locations[config.name] = loc
        loc.start()
        return loc

    def request_stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        """Drain then cancel the runs in progress; stop every location at once (shutdown
        call, grace, SIGTERM, SIGKILL), clean up."""
        self.envs.close(cancel_builds=True)
        if self.workload is not None:
            drain = self.workspace.daemon.run_drain_seconds if self.stop_grace else 0.0
            await self.workload.stop(drain)
        await asyncio.gather(
            *(loc.stop(self.stop_grace) for loc in self.locations.values()),
            return_exceptions=True,
        )
        self._alive = False
        if self._forks is not None:
            await self._forks.close()
        if self._control is not None:
            await self._control.close()
        self.hub.close()  # every event stream ends: the server's close waits on none
        if self._health is not None:
            await self._health.close()
        for task in (
            self._heartbeat_task,
            self._codewatch_task,
            self._orphans_task,
        ):
            if task is not None:
                task.cancel()
        if self.loop_lag is not None:
            self.loop_lag.stop()
        self._heartbeat_watch.close()
        if self._heartbeat_file is not None:
            self._heartbeat_file.close()
        orphans.collect()
        for log in self._logs.values():
            log.close()
        if self.workload is not None:
            await self.workload.close()
        if self._cgroups is not None:
            self._cgroups.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock is not None:
            self._lock.release()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)

    def _on_hangup(self) -> None:
        self.events.message("received SIGHUP, reloading the workspace")
        task = asyncio.ensure_future(self.reload([]))
        task.add_done_callback(self._report_reload)

    def _report_reload(self, task: asyncio.Future) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.events.message(f"reload refused: {exc}")

    def _on_stop_signal(self, sig: int) -> None:
        if self._stop.is_set():
            self.events.message("second signal: killing locations now")
            self.stop_grace = 0.0
            if self.workload is not None:
                self.workload.hurry()
            return
        self.events.message(f"received {signal.Signals(sig).name}, shutting down")
        self._stop.set()

    async def _loop_heartbeat(self) -> None:
        """Proof for /livez that the event loop turns; a wedged loop stops updating it."""
        while True:
            self.loop_heartbeat = time.monotonic()
            await asyncio.sleep(1.0)

    async def _collect_orphans(self) -> None:
        """Kill what dead loaders left to us (supervisor/orphans.py), every second."""
        while True:
            await asyncio.sleep(ORPHANS_SECONDS)
            killed = orphans.collect()
            if killed:
                self.events.message(
                    f"killed {len(killed)} process(es) left by a location or run that exited: "
                    + ", ".join(map(str, killed))
                )

    async def wait_settled(self, timeout: Optional[float] = None) -> bool:
        """Wait until every location is ready, error, failed or stopped (for `wsm list`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not all(loc.settled for loc in self.locations.values()):
            if deadline is not None and time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def reload(self, names: list) -> dict:
        """Re-read the workspace; start new locations, stop removed ones, restart changed,
        named or not-serving ones; leave the others untouched."""
        unknown = [n for n in names if n not in self.locations]
        if self.reread is None:
            raise RemoteError("InvalidParams", "this manager cannot re-read its workspace")
        from workspace_manager.workspace.errors import WorkspaceError

        try:  # off the loop: validation may ask an interpreter its version (seconds, cold)
            workspace = await asyncio.get_running_loop().run_in_executor(None, self.reread)
        except WorkspaceError as exc:
            raise RemoteError("InvalidWorkspace", "\n".join(str(p) for p in exc.problems)) from None
        new = {loc.name: loc for loc in workspace.locations}
        unknown = [n for n in unknown if n not in new]
        if unknown:
            raise RemoteError("NotFound", f"no location named {', '.join(map(repr, unknown))}")
        self.workspace = workspace
        result: Dict[str, Any] = {"started": [], "stopped": [], "restarted": [], "unchanged": []}
        for name in [n for n in self.locations if n not in new]:
            loc = self.locations.pop(name)
            await loc.stop(self.stop_grace)
            self._code.pop(name, None)
            self._planned_code.pop(name, None)
            self._forget_env(name)
            result["stopped"].append(name)
        moved = await self._code_moved([n for n in new if n in self.locations])
        restarts = {}
        fresh: Dict[str, Optional[Transition]] = {}  # started afresh: name -> last transition
        for name, config in new.items():
            current = self.locations.get(name)
            if current is None:
                self._add_location(config)
                fresh[name] = None
                result["started"].append(name)
            elif (
                config != current.config
                or name in names
                or name in moved
                or current.state in (State.ERROR, State.FAILED)
            ):
                if current.state is not State.READY:
                    fresh[name] = current.transitions[-1] if current.transitions else None
                restarts[name] = current.restart(config)
                result["restarted"].append(name)
            else:
                result["unchanged"].append(name)
        outcomes = await asyncio.gather(*restarts.values())
        # a successor that failed to load: its predecessor is still serving (SPEC section 3)
        result["failed"] = {n: why for n, why in zip(restarts, outcomes) if why is not None}
        for name in result["failed"]:
            self._log_reload_failure(self.locations[name])
        # the others have no predecessor: say whether they loaded (their console lines and
        # logs say the rest); one still building or starting at the deadline is not waited for
        deadline = time.monotonic() + RELOAD_WAIT_SECONDS
        broken = await asyncio.gather(
            *(self._first_outcome(self.locations[n], since, deadline) for n, since in fresh.items())
        )
        result["broken"] = {n: why for n, why in zip(fresh, broken) if why is not None}
        self.events.message(
            "reload: " + "; ".join(f"{k} {', '.join(v)}" for k, v in result.items() if v)
        )
        return result

    async def _first_outcome(
        self, loc: Location, since: Optional[Transition], deadline: float
    ) -> Optional[str]:
        """Wait for the first state `loc` reaches after `since` beyond building and starting:
        None when ready (or still on its way at `deadline`), else why it is not."""
        while time.monotonic() < deadline:
            after = list(loc.transitions)
            for i in range(len(after) - 1, -1, -1) if since is not None else ():
                if after[i] is since:
                    after = after[i + 1 :]
                    break
            for t in after:
                if t.new is State.READY:
                    return None
                if t.new in (State.ERROR, State.BACKOFF, State.FAILED):
                    return t.reason or t.new.value
            if loc.state is State.STOPPED and after:
                return None  # removed or shut down meanwhile
            await asyncio.sleep(0.05)
        return None

    async def _code_moved(self, names: list) -> set:
        """The locations whose code changed since their serving process was planned (the
        trees are walked off the loop, side by side)."""
        loop = asyncio.get_running_loop()
        known = [n for n in names if self._code.get(n) is not None]
        now = await asyncio.gather(
            *(loop.run_in_executor(None, code_fingerprint, self.locations[n].config) for n in known)
        )
        return {n for n, fp in zip(known, now) if fp != self._code.get(n)}

    def _log_reload_failure(self, loc: Location) -> None:
        failed = loc.reload_error or {}
        self.events.message(
            f"{loc.name}: reload failed, still serving its previous process: "
            f"{one_line(failed.get('error'))} (see `wsm logs {loc.name}`)"
        )
        text = (
            f"--- wsm: reload failed, still serving the previous process: {failed.get('error')}\n"
        )
        if failed.get("traceback"):
            text += str(failed["traceback"]).rstrip("\n") + "\n"
        self._log(loc.name).write(text.encode())

    # -- per location ---------------------------------------------------------------------

    async def _plan(self, config: LocationConfig) -> Union[LaunchPlan, RemotePlan]:
        """The interpreter (reusing or building the location's env), then the launch plan."""
        assert self.dir is not None and self._sdk_dir is not None
        loc = self.locations[config.name]
        if isinstance(config.target, RemoteTarget):
            remote = remote_plan(config.target, config.supervision.max_frame_bytes)
            loc.environment = f"remote {remote.address}"
            return remote
        # before the process starts: an edit made while it loads counts as a change; its
        # log is opened in the same trip off the loop (its first line comes next)
        loop = asyncio.get_running_loop()
        log = self._log(config.name)

        def prepare() -> Any:
            log.prepare()
            return code_fingerprint(config)

        self._planned_code[config.name] = await loop.run_in_executor(None, prepare)
        hidden = wsm_secret_vars(self.workspace, self.secret_vars)
        self.envs.hidden_env = hidden  # a build runs its requirements' setup code
        interpreter, key = await self._interpreter(config, loc)
        loc.environment = interpreter  # an env's own bin/python shows its key in the path
        if key:
            self._env_keys[config.name] = key
            try:  # records for `wsm env list/prune`: a full disk must not stop the location
                self.envs.mark_used(key, self.identity, config.name)
                write_in_use(self.dir, self._env_keys)
            except OSError as exc:
                self.events.message(f"{config.name}: cannot record its env's use: {exc}")
        elif config.name in self._env_keys:  # reloaded without an environment
            self._forget_env(config.name)
        self._socket_counter += 1
        plan = launch_plan(
            config, interpreter, self._sdk_dir, self.dir / f"{self._socket_counter}.sock"
        )
        plan = dataclasses.replace(
            plan,
            env=without_secrets(plan.env, config, hidden),
            cgroups=self._cgroups,
            forks=self._forks,
            heartbeats=self._heartbeat_file,
            heartbeat_seconds=config.supervision.heartbeat_seconds,
        )
        return self.adjust_plan(plan) if self.adjust_plan else plan

    async def _interpreter(self, config: LocationConfig, loc: Location) -> Tuple[str, str]:
        """(interpreter path, env key or ""); raises LoadFailed, shown as the location's error."""
        loop = asyncio.get_running_loop()
        if config.environment is None:
            try:
                path = plain_interpreter(config)
            except InterpreterError as exc:
                raise LoadFailed(str(exc)) from None
            if config.executable_path is not None:
                # Not a Python, or too old for the loader: say so now, instead of a crash
                # loop whose cause is only in the log. Cached by the file's identity.
                try:
                    await loop.run_in_executor(None, self.envs.interpreters.check, path)
                except EnvBuildError as exc:
                    raise LoadFailed(f"executable_path: {exc}") from None
            return path, ""
        # hashing requirement files and local trees runs off the loop: health answers and
        # other locations never wait for it
        loop = asyncio.get_running_loop()
        try:
            cached, key = await loop.run_in_executor(None, self.envs.lookup, config)
            if cached is not None:  # warm start: no build, no subprocess
                return cached, key
            loc.mark_building("building its environment")
            resolved = await self.envs.ensure(config)
        except EnvBuildError as exc:
            raise LoadFailed(str(exc), exc.details()) from None
        except OSError as exc:  # the cache folder is full, read-only, ...
            raise LoadFailed(f"its environment could not be written: {exc}") from None
        return resolved.python, resolved.key

    async def _retry_changed_code(self) -> None:
        """A location in `error` or `failed` is retried once its code changes (no reload
        needed): a fix is the one thing that makes either worth another try."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CODEWATCH_SECONDS)
            for loc in list(self.locations.values()):
                seen = self._code.get(loc.name)
                if loc.state not in _GAVE_UP or seen is None:
                    continue
                now = await loop.run_in_executor(None, code_fingerprint, loc.config)
                if now != seen and loc.state in _GAVE_UP:
                    self._code.pop(loc.name, None)
                    self.events.message(f"{loc.name}: its code changed, loading it again")
                    asyncio.ensure_future(loc.restart())

    def _on_transition(self, loc: Location, t: Transition) -> None:
        if (t.new is State.READY or t.new in _GAVE_UP) and loc.name in self._planned_code:
            self._code[loc.name] = self._planned_code[loc.name]
        if t.new is State.READY:
            self.metrics.watch_connection(loc)  # time its calls from now on
        if self.workload is not None:
            self.workload.on_transition(loc, t)
        self.events.transition(loc.name, t)
        text = (
            f"--- wsm: {t.old.value if t.old else '-'} -> {t.new.value}"
            f"{': ' + t.reason if t.reason else ''}\n"
        )
        if t.new is State.ERROR and loc.traceback:  # the console shows one line, the log all
            text += loc.traceback.rstrip("\n") + "\n"
        self._log(loc.name).write(text.encode())

    def _on_output(self, loc: Location, stream: str, line: bytes) -> None:
        self._log(loc.name).write(line + b"\n")
        self.events.output(loc.name, stream, line)

    def _log(self, name: str) -> LocationLog:
        log = self._logs.get(name)
        if log is None:
            log = self._logs[name] = LocationLog(
                log_path(self.key, name),
                on_trouble=lambda text: self._log_trouble(name, text),
                root=state_root(),
            )
        return log

    def _log_trouble(self, name: str, text: str) -> None:
        self.events.message(f"{name}: {text}")

    def log_lines_dropped(self) -> Dict[str, int]:
        """Lines of each location's output lost to failed log writes (a full disk)."""
        return {name: log.dropped for name, log in self._logs.items()}

    # -- views ----------------------------------------------------------------------------

    def alive(self) -> bool:
        """Whether the supervision loop is alive: running, and its heartbeat fresh (`/livez`)."""
        return self._alive and time.monotonic() - self.loop_heartbeat < 10.0

    def view(self) -> ManagerView:
        return ManagerView(
            alive=self.alive(),
            started_at=self.started_at,
            locations=tuple(self._location_view(loc) for loc in self.locations.values()),
            pid=os.getpid(),
            target=runtime.identity_target(self.identity),
            health=self.health_text(),
            daemon=self.workload.status() if self.workload is not None else None,
        )

    def readiness(self) -> ManagerView:
        """The view `/readyz` answers from: each location's name, state, error and
        down_seconds only, kept until the location changes (http/view.ReadinessViews)."""
        return ManagerView(
            alive=self.alive(), started_at=self.started_at, locations=self._readiness.locations()
        )

    def _location_view(self, loc: Location) -> LocationView:
        """One location's view. /readyz and /status build one per location per request: the
        parts that change only with a transition (the log path, the latest transitions as
        dicts) are made once, not at every request (at 1,000 locations they were most of
        a ~50 ms answer)."""
        log = self._log_texts.get(loc.name)
        if log is None:
            log = self._log_texts[loc.name] = str(log_path(self.key, loc.name))
        last = loc.transitions[-1] if loc.transitions else None
        cached = self._transition_views.get(loc.name)
        if cached is None or cached[0] is not last:
            dicts = tuple(t.to_dict() for t in list(loc.transitions)[-10:])
            cached = self._transition_views[loc.name] = (last, dicts)
        return LocationView(
            name=loc.name,
            state=loc.state.value,
            pid=loc.pid,
            restarts=loc.restarts,
            python=loc.python_version,
            environment=loc.environment,
            uptime_seconds=loc.uptime(),
            down_seconds=loc.down_for(),
            rss_bytes=loc.last_rss if loc.state is State.READY else None,
            error=loc.error if loc.state is not State.READY else None,
            traceback=loc.traceback if loc.state is not State.READY else None,
            transitions=cached[1],
            reload_error=loc.reload_error if loc.state is State.READY else None,
            log=log,
        )

    def status(self) -> dict:
        """The status document, the same as `GET /status` answers."""
        return status_document(self.view(), time.time())

    def health_text(self) -> Optional[str]:
        """HOST:PORT of the health endpoint as a client would reach it, or None."""
        if self.health_address is None:
            return None
        return f"{_fmt_host(self.health_address[0])}:{self.health_address[1]}"

    # -- control socket -------------------------------------------------------------------

    def _handlers(self) -> dict:
        return {
            "ping": self._h_ping,
            "status": self._h_status,
            "shutdown": self._h_shutdown,
            "call": self._h_call,
            "snapshot": self._h_snapshot,
            "reload": self._h_reload,
            **(self.workload.handlers() if self.workload is not None else {}),
        }

    async def _h_reload(self, params: dict) -> dict:
        names = params.get("locations") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("locations must be a list of names")
        return await self.reload(names)

    async def _h_ping(self, params: dict) -> dict:
        return {"pid": os.getpid()}

    async def _h_status(self, params: dict) -> dict:
        return self.status()

    async def _h_shutdown(self, params: dict) -> dict:
        asyncio.get_running_loop().call_soon(self._stop.set)
        return {}

    def _get(self, name: Any) -> Location:
        if not isinstance(name, str) or name not in self.locations:
            raise RemoteError("NotFound", f"no location named {name!r}")
        return self.locations[name]

    async def _h_snapshot(self, params: dict) -> Any:
        loc = self._get(params.get("location"))
        if loc.snapshot is None:
            raise RemoteError("NotReady", f"location {loc.name!r} is {loc.state.value}")
        return loc.snapshot

    async def _h_call(self, params: dict) -> Any:
        """Forward a call to a location: what an orchestrator built on wsm would do."""
        loc = self._get(params.get("location"))
        method = params.get("method")
        if not isinstance(method, str):
            raise ValueError("method must be a string")
        try:
            return await loc.call(method, params.get("params") or {}, params.get("timeout"))
        except NotReady as exc:
            raise RemoteError("NotReady", str(exc)) from None
        except CallTimeout as exc:
            raise RemoteError("Timeout", str(exc)) from None
        except ConnectionError as exc:
            raise RemoteError("ConnectionLost", str(exc)) from None


#: How long `start` lets its first locations' plans run before its own set-up.
LAUNCH_WAIT_SECONDS = 0.5


async def _launched(locations: List[Location], limit: float = LAUNCH_WAIT_SECONDS) -> None:
    """Wait until each of `locations` is planned and spawned (or its fork asked for), or
    it is building its environment, remote, or settled; at most `limit` seconds.

    Its plan runs off the loop and its spawn in a spawn thread, but each step needs a
    turn of the loop to begin: the manager's own set-up that follows (importing the web
    stack, opening the run records: ~100 ms of one thread) would hold those back, and the
    location's interpreter (or its fork server's) would start only after it instead of
    beside it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while any(_planning(loc) for loc in locations) and loop.time() < deadline:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0)  # a location announced `starting` begins its spawn or fork next


def _planning(loc: Location) -> bool:
    """Not yet on its way: being planned, or being spawned (a spawn takes a few ms; a
    fork server may take tens of ms to start, and the manager does not wait for that)."""
    if isinstance(loc.config.target, RemoteTarget):
        return False
    if not loc.transitions:
        return True
    plan = getattr(loc.instance, "plan", None)
    spawned = getattr(plan, "forks", True) is None
    return spawned and loc.state is State.STARTING and loc.pid is None


def _import_ahead() -> None:
    """In a worker, while the first locations load: psutil (memory samples as each becomes
    ready) and C msgpack."""
    import psutil  # noqa: F401

    from workspace_manager.protocol import codec

    codec.preload()  # a long-lived process: C msgpack now, not in the middle of a call


class HealthListenError(OSError):
    """The health address cannot be listened on (in use, not this host's); one line."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "cannot listen on the health address"


class ManagerRunning(Exception):
    def __init__(self, record: Optional[runtime.ManagerRecord]) -> None:
        pid = f" (pid {record.pid})" if record is not None else ""
        super().__init__(
            f"a manager for this workspace is already running{pid}; use `wsm status` or `wsm down`"
        )
        self.record = record


def one_line(text: Any, limit: int = 300) -> str:
    """A message on one line (whitespace collapsed, cut at `limit`): the console's form."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _fmt_host(host: str) -> str:
    """A bound host for a URL; every interface ("", 0.0.0.0, ::) is reachable as localhost."""
    if host in ("", "0.0.0.0", "::"):
        return "localhost"
    return f"[{host}]" if ":" in host else host
