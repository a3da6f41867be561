"""The life of one running schedule, sensor or run status sensor: one asyncio task each.

Every evaluation is a call into the instigator's location (the loader runs user code in
worker threads, so a slow one delays nothing else here) and ONE `record_tick`: the tick,
the runs it requests (the storage drops run_keys used before) and the new state (cursor,
last run key, last tick time), kept together or not at all. Then the run queue is woken.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Protocol, Tuple

from workspace_manager.daemon.clock import Clock
from workspace_manager.daemon.instigators import Instigator, runs_from_requests
from workspace_manager.daemon.ticks import due_ticks, next_tick
from workspace_manager.protocol.errors import CallTimeout, RemoteError
from workspace_manager.runs.prestart import WARM_LEAD
from workspace_manager.storage.records import (
    TICK_FAILURE,
    TICK_SKIPPED,
    TICK_SUCCESS,
    InstigatorState,
    RunRecord,
    TickRecord,
)
from workspace_manager.supervisor.location import NotReady

#: How long to wait before asking a location again when it was not serving (it is
#: restarting; its task is cancelled if it goes away for good).
NOT_SERVING_RETRY = 1.0
#: After an unexpected error (the storage refused a write): wait, then go on.
TROUBLE_RETRY = 5.0
TROUBLE_RETRY_MAX = 300.0
#: Finished runs given to a run status sensor per call.
RUN_STATUS_BATCH = 100


class LocationGone(Exception):
    """The location stopped serving during the call; the tick is tried again."""


class Host(Protocol):
    """What a loop needs from the daemon (service.Daemon)."""

    clock: Clock
    store: Any  # storage.writer.AsyncStorage

    def state(self, inst: Instigator) -> InstigatorState: ...
    def max_catchup_runs(self) -> int: ...
    async def call(self, inst: Instigator, method: str, params: Dict[str, Any]) -> Any: ...
    async def commit(
        self, tick: TickRecord, runs: List[RunRecord], state: InstigatorState
    ) -> Tuple[TickRecord, List[RunRecord]]: ...
    async def keep_state(self, state: InstigatorState) -> None: ...
    def finished_event(self) -> asyncio.Event: ...
    def message(self, text: str) -> None: ...
    def warm(self, inst: Instigator, tick: float) -> None: ...


async def guarded(host: Host, inst: Instigator, loop: Callable[[], Awaitable[None]]) -> None:
    """Run `loop`; an unexpected error (a full disk refusing a write, a time zone this
    interpreter does not know) is said and the loop starts again after a pause, from the
    state kept in the storage. The pause doubles while the error stays (at most 5 min)."""
    pause = TROUBLE_RETRY
    while True:
        began = time.monotonic()
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if time.monotonic() - began > TROUBLE_RETRY_MAX:
                pause = TROUBLE_RETRY  # it went well for a while: a new trouble
            host.message(
                f"{inst.kind} {inst.location}:{inst.name}: {exc!r}; trying again in {pause:g} s"
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, TROUBLE_RETRY_MAX)


# -- schedules ---------------------------------------------------------------------------------


async def schedule_loop(host: Host, inst: Instigator) -> None:
    """Fire each tick of the schedule as it comes; after downtime, the latest
    `max_catchup_runs` missed ones (ticks.due_ticks). A schedule never ticked starts from
    now: it does not fire for the past."""
    state = host.state(inst)
    cron, tz = str(inst.cron_schedule), inst.execution_timezone
    if state.last_tick_time is None:
        state = dataclasses.replace(state, last_tick_time=host.clock.time())
        await host.keep_state(state)
    while True:
        now = host.clock.time()
        for when in _due(cron, tz, state.last_tick_time, now, host.max_catchup_runs()):
            state = await _schedule_tick(host, inst, state, when)
        coming = next_tick(cron, tz, max(now, state.last_tick_time or now))
        if coming is None:
            await asyncio.Event().wait()  # never fires again (e.g. `0 0 30 2 *`)
        else:
            # the run this tick may request gets a process started ahead (runs/prestart.py)
            await host.clock.sleep_until(coming - WARM_LEAD)
            if host.clock.time() < coming:
                host.warm(inst, coming)
            await host.clock.sleep_until(coming)


def _due(
    cron: str, tz: Optional[str], last: Optional[float], now: float, catchup: int
) -> List[float]:
    """`ticks.due_ticks`, cheaply in the usual case, which is on the tick's latency path:
    the loop slept until the one tick that came since the last (two forward steps, ~0.1
    ms, instead of due_ticks' backward walk from 3 h ahead, ~2 ms for `* * * * *`)."""
    if last is not None and catchup >= 1:
        first = next_tick(cron, tz, last)
        if first is None or first > now:
            return []
        then = next_tick(cron, tz, first)
        if then is None or then > now:
            return [first]
    return due_ticks(cron, tz, last, now, catchup)


async def _schedule_tick(
    host: Host, inst: Instigator, state: InstigatorState, when: float
) -> InstigatorState:
    tick = _new_tick(host, inst, when)
    params = {"schedule": inst.name, "repository": inst.repository, "scheduled_time": when}
    runs: List[RunRecord] = []
    result = await _evaluate(host, inst, "evaluate_schedule", params, tick)
    if result is not None:
        runs = _requests(host, inst, tick, result, {"scheduled_time": when})
    new_state = dataclasses.replace(host.state(inst), last_tick_time=when)
    await host.commit(tick, runs, new_state)
    return new_state


# -- sensors -----------------------------------------------------------------------------------


async def sensor_loop(host: Host, inst: Instigator) -> None:
    """Evaluate the sensor every `minimum_interval_seconds` (measured from the start of
    one evaluation to the next; one that takes longer is followed at once), with its
    cursor and last run key. A failure is a failed tick, tried again at the next interval."""
    while True:
        state = host.state(inst)
        if state.last_tick_time is not None:
            due = state.last_tick_time + inst.minimum_interval_seconds
            if due > host.clock.time():
                await host.clock.sleep_until(due)
        start = host.clock.time()
        tick = _new_tick(host, inst, start)
        params = {
            "sensor": inst.name,
            "repository": inst.repository,
            "cursor": state.cursor,
            "last_run_key": state.last_run_key,
        }
        runs: List[RunRecord] = []
        new_state = dataclasses.replace(state, last_tick_time=start)
        result = await _evaluate(host, inst, "evaluate_sensor", params, tick)
        if result is not None:
            runs = _requests(host, inst, tick, result, {})
            if tick.status != TICK_FAILURE:
                cursor = result.get("cursor")
                keys = [r.run_key for r in runs if r.run_key is not None]
                new_state = dataclasses.replace(
                    new_state,
                    cursor=None if cursor is None else str(cursor),
                    last_run_key=keys[-1] if keys else state.last_run_key,
                )
                tick.cursor = new_state.cursor
        await host.commit(tick, runs, new_state)


async def run_status_loop(host: Host, inst: Instigator) -> None:
    """Give the sensor each run that reached a final status, in the order they did
    (storage end_seq), each once: the cursor (the last end_seq given) is kept in the same
    `record_tick` as the runs the sensor requests, so a restart neither repeats nor loses
    one. A new sensor starts with the runs that finish after it first runs. Woken by the
    run coordinator when a run finishes; polls every interval as well."""
    state = host.state(inst)
    if state.cursor is None:
        state = dataclasses.replace(
            state, cursor=str(await host.store.max_end_seq()), last_tick_time=host.clock.time()
        )
        await host.keep_state(state)
    woken = host.finished_event()
    while True:
        state = host.state(inst)
        cursor = int(state.cursor or 0)
        woken.clear()
        finished: List[RunRecord] = await host.store.finished_runs_after(cursor, RUN_STATUS_BATCH)
        if not finished:
            await _first_of(
                woken.wait(),
                host.clock.sleep_until(host.clock.time() + inst.minimum_interval_seconds),
            )
            continue
        last_seq = str(max(r.end_seq or 0 for r in finished))
        wanted = [r for r in finished if _may_deliver(inst, r)]
        if not wanted:  # nothing this sensor watches: move on without a tick
            await host.keep_state(dataclasses.replace(state, cursor=last_seq))
            continue
        start = host.clock.time()
        tick = _new_tick(host, inst, start)
        params = {
            "sensor": inst.name,
            "repository": inst.repository,
            "runs": [r.as_dict() for r in wanted],
            "location": inst.location,  # the workspace's name for it (a remote may differ)
        }
        result = await _evaluate(host, inst, "evaluate_run_status_sensor", params, tick)
        runs: List[RunRecord] = []
        new_state = dataclasses.replace(state, last_tick_time=start)
        if result is not None:
            runs = _requests(host, inst, tick, result, {})
            delivered = [x for x in result.get("results") or [] if x.get("delivered")]
            errors = [x for x in result.get("results") or [] if x.get("error")]
            if errors and tick.status != TICK_FAILURE:
                tick.status = TICK_FAILURE
                tick.error = "; ".join(
                    f"run {x['run_id']}: {_error_text(x['error'])}" for x in errors
                )
            if not delivered and tick.status == TICK_SKIPPED and not tick.skip_reason:
                tick.skip_reason = "no run it watches finished"
            elif tick.status == TICK_SKIPPED and not tick.skip_reason:
                # it handled runs and asked for none (a pager): say which it was given
                tick.skip_reason = "handled " + _runs_text(delivered, wanted)
            new_state = dataclasses.replace(new_state, cursor=last_seq)
            tick.cursor = last_seq
        await host.commit(tick, runs, new_state)
        if result is None:  # the call failed: tried again after the interval
            await host.clock.sleep_until(host.clock.time() + inst.minimum_interval_seconds)


def _runs_text(delivered: List[Dict[str, Any]], runs: List[RunRecord]) -> str:
    """`run 0f3c12ab (FAILURE of job etl)`, the first 3 of the runs a sensor was given."""
    status = {r.run_id: r for r in runs}
    parts = []
    for item in delivered[:3]:
        run = status.get(str(item.get("run_id")))
        what = f" ({run.status} of job {run.job})" if run is not None else ""
        parts.append(f"run {str(item.get('run_id'))[:8]}{what}")
    more = len(delivered) - 3
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _may_deliver(inst: Instigator, run: RunRecord) -> bool:
    """A cheap filter before the call; the SDK decides for good (sensor.skips)."""
    if inst.run_status is not None and run.status != inst.run_status:
        return False
    return inst.watches_other_locations or run.location == inst.location


# -- shared ------------------------------------------------------------------------------------


def _new_tick(host: Host, inst: Instigator, when: float) -> TickRecord:
    return TickRecord(
        location=inst.location,
        name=inst.name,
        kind=inst.kind,
        tick_time=when,
        started_at=host.clock.time(),
    )


async def _evaluate(
    host: Host, inst: Instigator, method: str, params: Dict[str, Any], tick: TickRecord
) -> Optional[Mapping[str, Any]]:
    """The location's answer, or None with `tick` marked failed (its error set). Waits while
    the location is not serving (it is cancelled with its location if that goes away)."""
    while True:
        try:
            result = await host.call(inst, method, params)
        except LocationGone:
            await asyncio.sleep(NOT_SERVING_RETRY)
            continue
        except CallTimeout as exc:
            _fail(tick, f"timed out: {exc}")
            return None
        except RemoteError as exc:
            # a user-code or definition error's message names its own type already
            plain = exc.type in ("UserCodeError", "DefinitionError")
            _fail(tick, exc.message if plain else f"{exc.type}: {exc.message}", exc.traceback)
            return None
        if not isinstance(result, Mapping):
            _fail(tick, f"{method} answered {type(result).__name__}, not a map")
            return None
        return result


def _requests(
    host: Host,
    inst: Instigator,
    tick: TickRecord,
    result: Mapping[str, Any],
    origin: Dict[str, Any],
) -> List[RunRecord]:
    """The runs a successful evaluation requests; the tick's result says what happened."""
    requests = result.get("run_requests") or []
    try:
        runs = runs_from_requests(inst, list(requests), origin, host.clock.time())
    except ValueError as exc:
        _fail(tick, str(exc))
        return []
    if runs:
        tick.status = TICK_SUCCESS
    else:
        tick.status = TICK_SKIPPED
        tick.skip_reason = result.get("skip_reason")
    return runs


def _fail(tick: TickRecord, error: str, traceback: Optional[str] = None) -> None:
    tick.status = TICK_FAILURE
    tick.error = error if not traceback else f"{error}\n{traceback.rstrip()}"


def _error_text(error: Any) -> str:
    if isinstance(error, Mapping):
        return f"{error.get('type')}: {error.get('message')}"
    return str(error)


async def _first_of(*aws: Awaitable[Any]) -> None:
    """Wait until the first of `aws` is done; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


__all__ = [
    "Host",
    "LocationGone",
    "NotReady",
    "guarded",
    "run_status_loop",
    "schedule_loop",
    "sensor_loop",
]
