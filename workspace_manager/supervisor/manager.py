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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.progress import BuildReporter
from workspace_manager.envs.resolve import InterpreterError, plain_interpreter
from workspace_manager.envs.service import EnvironmentService, write_in_use
from workspace_manager.http.view import LocationView, ManagerView
from workspace_manager.loader.launch import make_sdk_dir
from workspace_manager.protocol.errors import CallTimeout, RemoteError
from workspace_manager.supervisor import orphans, runtime
from workspace_manager.supervisor.cgroup import CgroupRoot
from workspace_manager.supervisor.codewatch import code_fingerprint
from workspace_manager.supervisor.control import ControlServer
from workspace_manager.supervisor.instance import LaunchPlan, LoadFailed
from workspace_manager.supervisor.location import Location, LocationHooks, NotReady
from workspace_manager.supervisor.logs import LocationLog, log_path
from workspace_manager.supervisor.metrics import ManagerMetrics
from workspace_manager.supervisor.plan import launch_plan
from workspace_manager.supervisor.remote import RemotePlan, remote_plan
from workspace_manager.supervisor.state import State, Transition
from workspace_manager.version import __version__
from workspace_manager.workspace.model import LocationConfig, RemoteTarget, Workspace


@dataclass
class EventSink:
    """Where the manager reports what happens; the CLI prints, tests may record."""

    transition: Callable[[str, Transition], None] = lambda name, t: None
    output: Callable[[str, str, bytes], None] = lambda name, stream, line: None
    message: Callable[[str], None] = lambda text: None


#: How often locations in `error` are checked for edited code.
CODEWATCH_SECONDS = 2.0
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
        self.envs = EnvironmentService(reporter=self.metrics.build_reporter(build_reporter))
        self.adjust_plan = adjust_plan  # `wsm serve`: its own listen address, token and TLS
        self._env_keys: Dict[str, str] = {}
        self._error_code: Dict[str, Any] = {}  # code fingerprint of each location in `error`
        self._codewatch_task: Optional[asyncio.Task] = None
        self.started_at = time.time()
        self.locations: Dict[str, Location] = {}
        self.dir: Optional[Path] = None
        self._sdk_dir: Optional[str] = None
        self._socket_counter = 0
        self._logs: Dict[str, LocationLog] = {}
        self._stop = asyncio.Event()
        self._alive = True
        self._control: Optional[ControlServer] = None
        self._health: Any = None
        self._heartbeat_task: Optional[asyncio.Task] = None
        self._lock: Optional[runtime.ManagerLock] = None
        self._cgroups: Optional[CgroupRoot] = None
        self._orphans_task: Optional[asyncio.Task] = None
        self.loop_heartbeat = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, serve_control: bool = True) -> int:
        """Start everything, serve until SIGINT/SIGTERM/`wsm down`, stop everything.

        The process that runs this is the manager's own (`wsm up`, `wsm serve`): it becomes
        the child subreaper of its locations (supervisor/orphans.py), which `start` alone,
        as tests embed it, does not."""
        if orphans.become_subreaper():
            self._orphans_task = asyncio.ensure_future(self._collect_orphans())
        try:
            await self.start(serve_control)
            self._install_signal_handlers()
            await self._stop.wait()
        finally:
            await self.shutdown()
        return 0

    async def start(self, serve_control: bool = True) -> None:
        root = runtime.ensure_private_dir(runtime.runtime_root())
        directory = runtime.ensure_private_dir(root / self.key)
        lock = runtime.ManagerLock(directory)
        if not lock.acquire():
            raise ManagerRunning(runtime.ManagerRecord.read(directory))
        self._lock = lock
        self.dir = directory
        self._sdk_dir = make_sdk_dir(str(self.dir))
        self._cgroups = CgroupRoot.create()  # None: no cgroup here, the process tree must do
        self._heartbeat_task = asyncio.ensure_future(self._loop_heartbeat())
        self._codewatch_task = asyncio.ensure_future(self._retry_changed_code())
        if self.health_listen is not None:
            from workspace_manager.http.metrics import metrics_route
            from workspace_manager.http.server import HealthServer

            self._health = HealthServer(*self.health_listen, self.view)
            self._health.routes["/metrics"] = metrics_route(self.metrics.exposition_async)
            self.health_address = await self._health.start()
            self.events.message(f"health endpoint on http://{self.health_text()}")
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
        for config in self.workspace.locations:
            self._add_location(config)

    def _add_location(self, config: LocationConfig) -> Location:
        hooks = LocationHooks(
            plan=self._plan, on_transition=self._on_transition, on_output=self._on_output
        )
        loc = Location(config, hooks)
        self.locations[config.name] = loc
        loc.start()
        return loc

    def request_stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        """Stop every location at once (shutdown call, grace, SIGTERM, SIGKILL), clean up."""
        self.envs.close(cancel_builds=True)
        await asyncio.gather(
            *(loc.stop(self.stop_grace) for loc in self.locations.values()),
            return_exceptions=True,
        )
        self._alive = False
        if self._control is not None:
            await self._control.close()
        if self._health is not None:
            await self._health.close()
        for task in (self._heartbeat_task, self._codewatch_task, self._orphans_task):
            if task is not None:
                task.cancel()
        orphans.collect()
        for log in self._logs.values():
            log.close()
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
                    f"killed {len(killed)} process(es) left by a location that exited: "
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

        try:
            workspace = self.reread()
        except WorkspaceError as exc:
            raise RemoteError("InvalidWorkspace", "\n".join(str(p) for p in exc.problems)) from None
        new = {loc.name: loc for loc in workspace.locations}
        unknown = [n for n in unknown if n not in new]
        if unknown:
            raise RemoteError("NotFound", f"no location named {', '.join(map(repr, unknown))}")
        self.workspace = workspace
        result: Dict[str, list] = {"started": [], "stopped": [], "restarted": [], "unchanged": []}
        for name in [n for n in self.locations if n not in new]:
            loc = self.locations.pop(name)
            await loc.stop(self.stop_grace)
            result["stopped"].append(name)
        restarts = []
        for name, config in new.items():
            current = self.locations.get(name)
            if current is None:
                self._add_location(config)
                result["started"].append(name)
            elif (
                config != current.config
                or name in names
                or current.state in (State.ERROR, State.FAILED)
            ):
                restarts.append(current.restart(config))
                result["restarted"].append(name)
            else:
                result["unchanged"].append(name)
        await asyncio.gather(*restarts)
        self.events.message(
            "reload: " + "; ".join(f"{k} {', '.join(v)}" for k, v in result.items() if v)
        )
        return result

    # -- per location ---------------------------------------------------------------------

    async def _plan(self, config: LocationConfig) -> Union[LaunchPlan, RemotePlan]:
        """The interpreter (reusing or building the location's env), then the launch plan."""
        assert self.dir is not None and self._sdk_dir is not None
        loc = self.locations[config.name]
        if isinstance(config.target, RemoteTarget):
            remote = remote_plan(config.target)
            loc.environment = f"remote {remote.address}"
            return remote
        interpreter, key = await self._interpreter(config, loc)
        loc.environment = interpreter  # an env's own bin/python shows its key in the path
        if key:
            self.envs.mark_used(key, self.identity, config.name)
            self._env_keys[config.name] = key
            write_in_use(self.dir, set(self._env_keys.values()))
        self._socket_counter += 1
        plan = launch_plan(
            config, interpreter, self._sdk_dir, self.dir / f"{self._socket_counter}.sock"
        )
        plan = dataclasses.replace(plan, cgroups=self._cgroups)
        return self.adjust_plan(plan) if self.adjust_plan else plan

    async def _interpreter(self, config: LocationConfig, loc: Location) -> Tuple[str, str]:
        """(interpreter path, env key or ""); raises LoadFailed, shown as the location's error."""
        if config.environment is None:
            try:
                return plain_interpreter(config), ""
            except InterpreterError as exc:
                raise LoadFailed(str(exc)) from None
        # hashing requirement files and local trees runs off the loop: health answers and
        # other locations never wait for it
        loop = asyncio.get_running_loop()
        cached, key = await loop.run_in_executor(None, self.envs.lookup, config)
        if cached is not None:  # warm start: no build, no subprocess
            return cached, key
        loc.mark_building("building its environment")
        try:
            resolved = await self.envs.ensure(config)
        except EnvBuildError as exc:
            raise LoadFailed(str(exc), exc.details()) from None
        return resolved.python, resolved.key

    async def _retry_changed_code(self) -> None:
        """A location in `error` is retried once its code changes (no reload needed)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CODEWATCH_SECONDS)
            for loc in list(self.locations.values()):
                seen = self._error_code.get(loc.name)
                if loc.state is not State.ERROR or seen is None:
                    continue
                now = await loop.run_in_executor(None, code_fingerprint, loc.config)
                if now != seen and loc.state is State.ERROR:
                    self._error_code.pop(loc.name, None)
                    self.events.message(f"{loc.name}: its code changed, loading it again")
                    asyncio.ensure_future(loc.restart())

    def _on_transition(self, loc: Location, t: Transition) -> None:
        if t.new is State.ERROR:
            self._error_code[loc.name] = code_fingerprint(loc.config)
        if t.new is State.READY:
            self.metrics.watch_connection(loc)  # time its calls from now on
        self.events.transition(loc.name, t)
        self._log(loc.name).write(
            f"--- wsm: {t.old.value if t.old else '-'} -> {t.new.value}"
            f"{': ' + t.reason if t.reason else ''}\n".encode()
        )

    def _on_output(self, loc: Location, stream: str, line: bytes) -> None:
        self._log(loc.name).write(line + b"\n")
        self.events.output(loc.name, stream, line)

    def _log(self, name: str) -> LocationLog:
        log = self._logs.get(name)
        if log is None:
            log = self._logs[name] = LocationLog(log_path(self.key, name))
        return log

    # -- views ----------------------------------------------------------------------------

    def view(self) -> ManagerView:
        alive = self._alive and time.monotonic() - self.loop_heartbeat < 10.0
        return ManagerView(
            alive=alive,
            started_at=self.started_at,
            locations=tuple(self._location_view(loc) for loc in self.locations.values()),
        )

    def _location_view(self, loc: Location) -> LocationView:
        return LocationView(
            name=loc.name,
            state=loc.state.value,
            pid=loc.pid,
            restarts=loc.restarts,
            python=loc.python_version,
            environment=loc.environment,
            uptime_seconds=loc.uptime(),
            rss_bytes=loc.last_rss if loc.state is State.READY else None,
            error=loc.error if loc.state is not State.READY else None,
            traceback=loc.traceback if loc.state is not State.READY else None,
            transitions=tuple(t.to_dict() for t in list(loc.transitions)[-10:]),
        )

    def status(self) -> dict:
        view = self.view()
        out: Dict[str, Any] = {
            "status": view.overall_status(),
            "pid": os.getpid(),
            "workspace": self.identity,
            "uptime_seconds": time.time() - self.started_at,
            "health": self.health_text(),
            "locations": {},
        }
        for lv in view.locations:
            entry = dataclasses.asdict(lv)
            entry["transitions"] = list(lv.transitions)
            entry["log"] = str(log_path(self.key, lv.name))
            out["locations"][lv.name] = entry
        return out

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


class ManagerRunning(Exception):
    def __init__(self, record: Optional[runtime.ManagerRecord]) -> None:
        pid = f" (pid {record.pid})" if record is not None else ""
        super().__init__(
            f"a manager for this workspace is already running{pid}; "
            "use `wsm status` or `wsm down`"
        )
        self.record = record


def _fmt_host(host: str) -> str:
    """A bound host for a URL; every interface ("", 0.0.0.0, ::) is reachable as localhost."""
    if host in ("", "0.0.0.0", "::"):
        return "localhost"
    return f"[{host}]" if ":" in host else host
