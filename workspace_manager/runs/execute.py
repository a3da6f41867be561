"""`wsm job execute`: run one job now, in the foreground, in its location's environment,
recorded like any run (origin "execute"), without a manager.

The location is planned as the manager plans it (supervisor/plan.launch_plan: interpreter,
working directory, env_vars, its env's `bin/` on PATH, wsm's secrets removed), its
environment built or reused through envs.EnvironmentService, and the run goes through the
same RunCoordinator code as a queued run (runs/coordinator.run_now), so its events, logs,
outcome and record are the same.

The run's process starts first, held (runs/process.RunProcess.start `hold`): it imports the
location's code and finds the job while this process imports the coordinator and opens the
database. A job that is not there is refused in one line with no run recorded; otherwise the
run is recorded and the job starts on `go`, once STARTING is committed, as in the manager.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import signal
import socket
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Tuple

from workspace_manager.envs.resolve import InterpreterError, plain_interpreter
from workspace_manager.runs.execute_start import (
    ExecuteError,
    ExecuteStart,
    find_location,
    start_execute,
)
from workspace_manager.runs.plan import RunPlan
from workspace_manager.runs.process import RunProcess
from workspace_manager.workspace.model import LocationConfig, Workspace

if TYPE_CHECKING:
    from workspace_manager.envs.service import EnvironmentService
    from workspace_manager.storage.records import LogLine, RunRecord


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


async def interpreter_for(
    config: LocationConfig, envs: Optional[Callable[[], EnvironmentService]] = None
) -> str:
    """The location's interpreter: its executable_path, wsm's own, or its built (or
    reused) virtualenv's (through `envs()`, made only then; default: a quiet
    EnvironmentService). ExecuteError with the reason."""
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
    start: Optional[ExecuteStart] = None,
) -> RunRecord:
    """Run `job` of `location` now; `on_line` sees every line of its output and log as it
    comes. `envs` makes the EnvironmentService when the location has an environment.
    `start`: the run already started (execute_start.start_execute, before the event loop);
    it is closed here. Returns the final record. ExecuteError (nothing recorded) when the
    location or its interpreter is not there, or the location's code has no such job.
    Ctrl-C (SIGINT) or SIGTERM cancels the run (its tree gets SIGTERM, SIGKILL after the
    grace); a second one kills it at once."""
    if start is None:
        config = find_location(workspace, location)
        python = await interpreter_for(config, envs)
        start = start_execute(workspace, config, python, job, run_config, tags)
    try:
        process = await RunProcess.start(start.plan, None, None, None, held=start.held, hold=True)
        try:
            return await _run(workspace, store, process, start, on_line)
        finally:
            if process.returncode is None:  # refused, or this task was canceled
                process.terminate()
                await process.wait()
            await process.close()
    finally:
        start.close()


async def _run(
    workspace: Workspace,
    store: object,
    process: RunProcess,
    start: ExecuteStart,
    on_line: Callable[[LogLine], None],
) -> RunRecord:
    # imported while the run's process starts on the other core
    from workspace_manager.runs.coordinator import RunCoordinator, RunHooks, RunPlanError
    from workspace_manager.runs.queue import priority_of
    from workspace_manager.storage.records import QUEUED, RunRecord

    async def no_plan(name: str) -> RunPlan:
        raise RunPlanError("the run's process was started with its plan")

    coordinator = RunCoordinator(
        store,
        RunHooks(
            workspace=lambda: workspace,
            location_ready=lambda name: True,
            snapshot=lambda name: None,
            plan=no_plan,
            log=on_line,
        ),
    )
    job, tags = start.job, start.tags
    record = RunRecord(
        run_id=start.run_id,
        location=start.config.name,
        job=job,
        status=QUEUED,
        run_config=start.run_config,
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
    started: Optional[asyncio.Future] = None

    def interrupted() -> None:
        nonlocal interrupts
        interrupts += 1
        if started is None:  # not recorded yet: nothing to cancel but the process
            process.terminate()
        elif interrupts == 1:
            asyncio.ensure_future(coordinator.cancel(record.run_id, "interrupted (Ctrl-C)"))
        else:
            asyncio.ensure_future(coordinator.kill_now(record.run_id))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)
    try:
        first = await process.first_event
        if first is None or interrupts:
            code = await process.wait()
            if interrupts:
                raise ExecuteError("interrupted (Ctrl-C) before the job started")
            said: List[str] = []
            process.attach(lambda event: None, lambda stream, when, text: said.append(text))
            last = next((text.strip() for text in reversed(said) if text.strip()), "")
            raise ExecuteError(
                f"the run's process exited ({_exit_text(code)}) before it loaded its code"
                + (f": {last}" if last else "")
            )
        if first.get("event") == "failure" and _not_found(first):
            raise ExecuteError(str(first["error"].get("message") or f"no job named {job!r}"))
        started = asyncio.ensure_future(
            coordinator.run_now(record, "executed by `wsm job execute`", process)
        )
        return await started
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _not_found(event: Dict[str, Any]) -> bool:
    error = event.get("error")
    return isinstance(error, dict) and error.get("type") == "NotFound"


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container)
        return str(os.getuid())
