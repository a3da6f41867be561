"""`wsm job execute`: run one job now, in the foreground, in its location's environment,
recorded like any run (origin "execute"), without a manager.

The location is planned as the manager plans it (supervisor/plan.launch_plan: interpreter,
working directory, env_vars, its env's `bin/` on PATH, wsm's secrets removed), its
environment built or reused through envs.EnvironmentService, and the run goes through the
same RunCoordinator code as a queued run (runs/coordinator.run_now), so its events, logs,
outcome and record are the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import os
import secrets
import shutil
import signal
import socket
import uuid
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Tuple

from workspace_manager.envs.resolve import InterpreterError, plain_interpreter
from workspace_manager.loader.launch import make_sdk_dir
from workspace_manager.runs.coordinator import RunCoordinator, RunHooks, RunPlanError
from workspace_manager.runs.process import RunPlan, plan_from_launch
from workspace_manager.runs.queue import priority_of
from workspace_manager.storage.records import QUEUED, LogLine, RunRecord
from workspace_manager.supervisor import runtime
from workspace_manager.supervisor.cgroup import CgroupRoot
from workspace_manager.supervisor.plan import launch_plan
from workspace_manager.supervisor.secret_vars import without_secrets, wsm_secret_vars
from workspace_manager.workspace.model import LocationConfig, RemoteTarget, Workspace

if TYPE_CHECKING:
    from workspace_manager.envs.service import EnvironmentService


class OpeningStorage:
    """An AsyncStorage that opens in a worker thread while the run starts: importing the
    SQL layer and opening the database cost more than the run's own interpreter start, and
    the run's process can use the other core meanwhile. Calls and `log` lines made before
    it is open are kept in one list and replayed in that order once it is (AsyncStorage
    then keeps the order, as for calls made on it directly). Every call made before or
    after raises what opening raised (StorageError)."""

    def __init__(self, opener: Callable[[], Any]) -> None:
        loop = asyncio.get_running_loop()
        self._store: Any = None
        self._failed: Optional[BaseException] = None
        self._pending: List[Tuple[str, tuple, dict, Optional[asyncio.Future]]] = []
        opening = loop.run_in_executor(None, opener)
        opening.add_done_callback(self._opened)

    def _opened(self, opening: asyncio.Future) -> None:
        from workspace_manager.storage.writer import AsyncStorage

        if opening.exception() is not None:
            self._failed = opening.exception()
        else:
            self._store = AsyncStorage(opening.result())
        for name, args, kwargs, future in self._pending:
            if future is None:
                if self._store is not None:
                    self._store.log(*args)
                continue
            self._forward(name, args, kwargs, future)
        self._pending = []

    def _forward(self, name: str, args: tuple, kwargs: dict, future: asyncio.Future) -> None:
        if self._failed is not None:
            future.set_exception(self._failed)
            return
        inner = asyncio.ensure_future(getattr(self._store, name)(*args, **kwargs))

        def done(inner: asyncio.Future) -> None:
            if future.done():
                return
            if inner.exception() is not None:
                future.set_exception(inner.exception())  # type: ignore[arg-type]
            else:
                future.set_result(inner.result())

        inner.add_done_callback(done)

    def log(self, line: LogLine) -> None:
        if self._store is not None:
            self._store.log(line)
        elif self._failed is None:
            self._pending.append(("log", (line,), {}, None))

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        def call(*args: Any, **kwargs: Any) -> Awaitable[Any]:
            future = asyncio.get_running_loop().create_future()
            if self._store is None and self._failed is None:
                self._pending.append((name, args, kwargs, future))
            else:
                self._forward(name, args, kwargs, future)
            return future

        return call

    async def close(self) -> None:
        while self._store is None and self._failed is None:
            await asyncio.sleep(0.01)
        if self._store is not None:
            await self._store.close()


class ExecuteError(Exception):
    """The job cannot be executed (no such location, a remote one, its env fails): one line."""


async def interpreter_for(
    config: LocationConfig, envs: Optional[Callable[[], EnvironmentService]] = None
) -> str:
    """The location's interpreter: its executable_path, wsm's own, or its built (or
    reused) virtualenv's (through `envs()`, made only then; default: a quiet
    EnvironmentService). ExecuteError with the reason."""
    if isinstance(config.target, RemoteTarget):
        raise ExecuteError(
            f"location {config.name!r} is remote (grpc_server): its code is not here"
        )
    if config.environment is None:
        try:
            return plain_interpreter(config)
        except InterpreterError as exc:
            raise ExecuteError(str(exc)) from None
    # imported here: the environment cache (filelock, installers: ~30 ms) is for locations
    # that have an environment
    from workspace_manager.envs.errors import EnvBuildError
    from workspace_manager.envs.service import EnvironmentService

    service = envs() if envs is not None else EnvironmentService()
    loop = asyncio.get_running_loop()
    try:
        cached, _key = await loop.run_in_executor(None, service.lookup, config)
        if cached is not None:
            return cached
        return (await service.ensure(config)).python
    except EnvBuildError as exc:
        raise ExecuteError(f"location {config.name!r}: {exc}") from None
    finally:
        service.close()


async def execute(
    workspace: Workspace,
    store: object,  # storage.writer.AsyncStorage
    location: str,
    job: str,
    *,
    run_config: Optional[dict] = None,
    tags: Optional[Dict[str, str]] = None,
    on_line: Callable[[LogLine], None] = lambda line: None,
    envs: Optional[Callable[[], EnvironmentService]] = None,
) -> RunRecord:
    """Run `job` of `location` now; `on_line` sees every line of its output and log as it
    comes. `envs` makes the EnvironmentService when the location has an environment.
    Returns the final record. Ctrl-C (SIGINT) or SIGTERM cancels the run (its tree gets
    SIGTERM, SIGKILL after the grace); a second one kills it at once."""
    config = next((loc for loc in workspace.locations if loc.name == location), None)
    if config is None:
        names = ", ".join(loc.name for loc in workspace.locations)
        raise ExecuteError(f"no location named {location!r} (known: {names})")
    python = await interpreter_for(config, envs)
    root = runtime.ensure_private_dir(runtime.runtime_root())
    folder = root / f"execute-{os.getpid()}-{secrets.token_hex(3)}"
    folder.mkdir(mode=0o700)
    cgroups = CgroupRoot.create()
    try:
        sdk_dir = make_sdk_dir(str(folder))
        launch = launch_plan(config, python, sdk_dir, folder / "unused.sock")
        env = without_secrets(launch.env, config, wsm_secret_vars(workspace))
        plan = plan_from_launch(dataclasses.replace(launch, env=env), sdk_dir, cgroups)
        return await _run(workspace, store, plan, config, job, run_config, tags, on_line)
    finally:
        if cgroups is not None:
            cgroups.close()
        shutil.rmtree(folder, ignore_errors=True)


async def _run(
    workspace: Workspace,
    store: object,
    plan: RunPlan,
    config: LocationConfig,
    job: str,
    run_config: Optional[dict],
    tags: Optional[Dict[str, str]],
    on_line: Callable[[LogLine], None],
) -> RunRecord:
    async def the_plan(name: str) -> RunPlan:
        if name != config.name:
            raise RunPlanError(f"location {name!r} is not the one executed")
        return plan

    coordinator = RunCoordinator(
        store,
        RunHooks(
            workspace=lambda: workspace,
            location_ready=lambda name: True,
            snapshot=lambda name: None,
            plan=the_plan,
            log=on_line,
        ),
    )
    tags = dict(tags or {})
    record = RunRecord(
        run_id=uuid.uuid4().hex,
        location=config.name,
        job=job,
        status=QUEUED,
        run_config=dict(run_config or {}),
        tags=tags,
        origin={
            "kind": "execute",
            "user": _user(),
            "host": socket.gethostname(),
            "pid": os.getpid(),  # a manager starting meanwhile leaves a live one alone
        },
        priority=priority_of(tags),
        created_at=coordinator.hooks.clock(),
    )
    loop = asyncio.get_running_loop()
    interrupts = 0

    def interrupted() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            asyncio.ensure_future(coordinator.cancel(record.run_id, "interrupted (Ctrl-C)"))
        else:
            asyncio.ensure_future(coordinator.kill_now(record.run_id))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)
    try:
        return await coordinator.run_now(record, "executed by `wsm job execute`")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container)
        return str(os.getuid())
