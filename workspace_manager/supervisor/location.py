"""One location's life: start, load, serve, watch, restart with backoff, stop.

Each location runs as its own asyncio task, so nothing one location does (a slow load, a
hang, a crash loop) delays another location's calls, health answers or restarts.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Tuple, Union

from workspace_manager.cancelling import cancel_and_wait
from workspace_manager.protocol.messages import EXIT_LOAD_ERROR
from workspace_manager.supervisor import looplag
from workspace_manager.supervisor.heartbeats import HeartbeatWatch, on_grid
from workspace_manager.supervisor.instance import (
    ExitedDuringStartup,
    Instance,
    LaunchPlan,
    LoadFailed,
)
from workspace_manager.supervisor.policy import ExitInfo, RestartHistory, next_step
from workspace_manager.supervisor.remote import RemoteInstance, RemotePlan
from workspace_manager.supervisor.state import State, Transition
from workspace_manager.workspace.model import LocationConfig, RemoteTarget

#: Heartbeats a location may miss in a row before it is considered hung.
MISSED_HEARTBEATS = 3  # heartbeats.MISSED for the local ones
#: What usually makes a load exit 0.
EXIT_0_HINT = " (does the code call sys.exit() or os._exit() when imported?)"
#: Memory samples in a row above the limit before a location is restarted.
MEMORY_STRIKES = 2
#: Seconds between memory samples of a location without `memory_limit_mb`, which only
#: /status and /metrics show (after a heartbeat that answered). A sample reads the
#: kernel's page-table walk of each process (smaps_rollup: ~0.2-0.5 ms of CPU): with every
#: 2 s heartbeat, that was most of an idle manager's CPU at 100 locations.
STATUS_MEMORY_SECONDS = 10.0
#: Most instances sampled by one job off the loop (`_sample_memory`): one job for 100
#: locations (~80 us a sample). Jobs in parallel only pass the interpreter lock to and fro:
#: 4 of 32 woke the worker threads ~25 times a second in all at 100 idle locations.
MEMORY_BATCH = 256


def make_instance(plan: Any, on_output: Callable[[str, bytes], None]) -> Any:
    """A process for a local location, a connection for a remote one: one state machine."""
    if isinstance(plan, RemotePlan):
        return RemoteInstance(plan)
    return Instance(plan, on_output)


class _Settled(Exception):
    """The instance ended in `error`: no restart until the code or config changes."""


class _Exited(Exception):
    def __init__(self, info: ExitInfo) -> None:
        super().__init__(info.reason)
        self.info = info


class NotReady(Exception):
    """A call was made to a location that is not ready."""


@dataclass
class LocationHooks:
    """What a location needs from its manager; plain callables keep it testable."""

    # a LaunchPlan (local) or RemotePlan; may build an env; raises LoadFailed
    plan: Callable[[LocationConfig], Awaitable[Union[LaunchPlan, RemotePlan]]]
    on_transition: Callable[[Location, Transition], None]
    on_output: Callable[[Location, str, bytes], None]
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = random.Random()
    # Reads the heartbeat counters of local instances that have one (supervisor/heartbeats.py);
    # None: every location is pinged.
    heartbeats: Optional[HeartbeatWatch] = None


class Location:
    def __init__(self, config: LocationConfig, hooks: LocationHooks) -> None:
        self.config = config
        self.hooks = hooks
        self.state: State = State.STOPPED
        self.transitions: Deque[Transition] = collections.deque(maxlen=100)
        self.instance: Optional[Instance] = None
        self.restarts = 0
        self.error: Optional[str] = None
        self.traceback: Optional[str] = None
        self.ready_since: Optional[float] = None  # monotonic
        self.down_since: Optional[float] = None  # monotonic: first failure since last ready
        self.last_rss: Optional[int] = None
        self._memory_sampled = 0.0  # hooks.clock() of the last sample of `last_rss`
        self.environment: Optional[str] = None
        # The last reload whose successor failed to load while this location kept serving:
        # {"at": unix time, "error": one line, "traceback": str or None}; None once a
        # successor is ready or the location leaves `ready`.
        self.reload_error: Optional[dict] = None
        self.history = RestartHistory()
        self._task: Optional[asyncio.Task] = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._reload = asyncio.Event()
        self._pending_config: Optional[LocationConfig] = None
        self._reload_waiters: list = []
        self._dying: Optional[Tuple[Any, float]] = None
        self._grace = 3.0

    # -- public ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.ensure_future(self._run())

    def mark_building(self, reason: str) -> None:
        """Called by the planner when an env build starts; a serving location stays ready."""
        if self.state is not State.READY:
            self._set(State.BUILDING, reason)

    async def restart(self, config: Optional[LocationConfig] = None) -> Optional[str]:
        """Apply a reload: a ready location is replaced without a gap in service; any other
        starts afresh (an `error` location is retried, a `backoff` one restarts now).

        Returns None, or why the successor of a ready location failed to load: then the
        predecessor keeps serving (SPEC section 3) and `reload_error` says so."""
        if self.state is State.READY and self._task is not None and not self._task.done():
            self._pending_config = config
            done = asyncio.get_running_loop().create_future()
            self._reload_waiters.append(done)
            self._reload.set()
            # the successor is ready and serving, failed, or the location left `ready`
            return await done  # type: ignore[no-any-return]
        await self._halt(grace=0)
        if config is not None:
            self.config = config
        self.history = RestartHistory()
        self.start()
        return None

    async def _halt(self, grace: float) -> None:
        """Cancel the location's task and stop its instance (its whole process tree)."""
        if self._task is not None:
            # again and again: a start may swallow the first cancel (cancelling.py)
            await cancel_and_wait([self._task])
        if self.instance is not None:
            await self.instance.stop(grace)
            self.instance = None

    async def stop(self, grace: float = 3.0) -> None:
        self._stopping = True
        self._wake.set()
        self._reloaded()
        await self._halt(grace)
        self._set(State.STOPPED, "shut down")

    async def call(
        self, method: str, params: Optional[dict] = None, timeout: Optional[float] = None
    ) -> Any:
        inst = self.instance
        if self.state is not State.READY or inst is None or inst.connection is None:
            raise NotReady(f"location {self.name!r} is {self.state.value}")
        return await inst.connection.call(
            method, params, timeout or self.config.supervision.call_timeout_seconds
        )

    @property
    def settled(self) -> bool:
        """Ready, or ended somewhere it will not leave on its own (for `wsm list`)."""
        if self.state in (State.READY, State.ERROR, State.FAILED):
            return True
        return self.state is State.STOPPED and (self._task is None or self._task.done())

    @property
    def pid(self) -> Optional[int]:
        return self.instance.pid if self.instance and self.instance.returncode is None else None

    @property
    def python_version(self) -> Optional[str]:
        if self.instance and self.instance.snapshot:
            return self.instance.snapshot.get("python_version")
        return None

    @property
    def snapshot(self) -> Optional[dict]:
        return self.instance.snapshot if self.instance else None

    def down_for(self) -> Optional[float]:
        """Seconds since the location last stopped serving (or first failed to start), while
        it is not ready; None when ready or shut down."""
        if self.down_since is None or self.state in (State.READY, State.STOPPED):
            return None
        return self.hooks.clock() - self.down_since

    def uptime(self) -> Optional[float]:
        if self.state is State.READY and self.ready_since is not None:
            return self.hooks.clock() - self.ready_since
        return None

    # -- the state machine ----------------------------------------------------------------

    def _set(self, new: State, reason: str = "", force: bool = False) -> None:
        old = self.state if self.transitions else None
        if old is new and not force and new is not State.BACKOFF:
            return
        if new is not State.READY:
            self.reload_error = None  # it was about a predecessor that no longer serves
        self.state = new
        t = Transition(time.time(), old, new, reason)
        self.transitions.append(t)
        self.hooks.on_transition(self, t)

    async def _run(self) -> None:
        while not self._stopping:
            self.error = self.traceback = None
            try:
                inst = await self._start_instance()
            except _Settled:
                return
            except _Exited as exc:
                exit_info = exc.info
            else:
                self.instance = inst
                rss = await _sample_memory(inst)
                if self._stopping:  # loaded as the stop came: never shown ready
                    return
                self._became_ready(inst, "", rss)
                served = await self._serve(inst)
                if served is None:
                    return
                exit_info = served
            if self._stopping:
                return
            if not await self._after_exit(exit_info):
                return

    async def _after_exit(self, exit_info: ExitInfo) -> bool:
        """Apply the restart policy; True when the loop should start the location again."""
        sup = self.config.supervision
        now = self.hooks.clock()
        if self.down_since is None:
            self.down_since = now
        # A remote server is restarted by its own orchestrator and comes back: never give
        # up on it, whereas a local crash loop is ours to stop.
        remote = isinstance(self.config.target, RemoteTarget)
        action, delay = next_step(
            self.history, exit_info, sup, now, self.hooks.rng, keep_trying=remote
        )
        self.error = exit_info.reason
        # A location that stays down says why in its error too (status tables show that).
        if action == "stop":
            if exit_info.clean:
                self._set(State.STOPPED, exit_info.reason)
            else:
                self.error = f"{exit_info.reason}; restart is {sup.restart}"
                self._set(State.FAILED, self.error)
            await self._bury()
            return False
        if action == "fail":
            self.error = (
                f"{exit_info.reason}; restarted "
                f"{_plural(sup.max_restarts, 'time', 'times')} within {sup.window_seconds:g}s"
            )
            self._set(State.FAILED, self.error)
            await self._bury()
            return False
        if remote and self.history.since_ready >= sup.max_restarts:
            self.error = f"{exit_info.reason}; down since {_clock_time(self.down_for())}"
        self._set(State.BACKOFF, f"{self.error}; restarting in {delay:.2f}s")
        await self._bury()
        await self._sleep(delay)
        self.history.record_restart(self.hooks.clock(), sup.window_seconds)
        self.restarts += 1
        return True

    async def _bury(self) -> None:
        """Stop the instance that just exited or was given up on (its whole process tree)."""
        dying, self._dying = self._dying, None
        if dying is not None:
            await dying[0].stop(grace=dying[1])

    def _fail_load(self, exc: LoadFailed) -> None:
        if self.down_since is None:
            self.down_since = self.hooks.clock()
        self.error, self.traceback = exc.message, exc.traceback
        self._set(State.ERROR, exc.message)

    async def _sleep(self, delay: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except asyncio.TimeoutError:
            pass

    async def _start_instance(self) -> Instance:
        """Plan and start one instance up to ready. Raises _Settled (now in `error`) or
        _Exited (died while starting; the restart policy decides)."""
        try:
            return await self._launch(announce=True)
        except LoadFailed as exc:
            self._fail_load(exc)
            raise _Settled() from None

    async def _launch(self, announce: bool) -> Instance:
        """Plan and start one instance up to ready, changing no state but `starting` (when
        ``announce``). Raises LoadFailed (the code or its environment is broken) or _Exited."""
        sup = self.config.supervision
        plan = await self.hooks.plan(self.config)
        last_words: List[bytes] = []  # its latest stderr line: why a crash while loading

        def on_output(stream: str, line: bytes) -> None:
            if stream == "stderr" and line.strip():
                last_words[:] = [line]
            self.hooks.on_output(self, stream, line)

        inst = make_instance(plan, on_output)
        if announce:
            self.instance = inst
            self._set(State.STARTING, "restart" if self.restarts else "start")
        try:
            await inst.start(sup.startup_timeout_seconds)
        except LoadFailed:
            await inst.stop(grace=0)
            raise
        except ExitedDuringStartup as exc:
            await inst.stop(grace=0)
            if exc.returncode == EXIT_LOAD_ERROR:
                raise LoadFailed(str(exc)) from None
            if exc.returncode == 0:
                # Importing the code ended the process without an error (sys.exit(0) in a
                # thread, os._exit(0)): it would do the same on every start.
                raise LoadFailed(f"{exc}{EXIT_0_HINT}") from None
            reason = str(exc) + _last_words(last_words)
            raise _Exited(ExitInfo(exc.returncode, reason, clean=exc.returncode == 0)) from None
        except asyncio.CancelledError:
            await inst.stop(grace=0)
            raise
        except Exception as exc:  # spawn failed, connection refused, handshake refused...
            await inst.stop(grace=0)
            raise _Exited(ExitInfo(inst.returncode, f"could not start: {exc}")) from None
        return inst

    def _became_ready(self, inst: Instance, prefix: str, rss: Optional[int]) -> None:
        """`rss`: a sample of the just-loaded instance (`_sample_memory`, taken off the loop
        before: at 1,000 locations, one smaps_rollup read each on the loop added up)."""
        self.ready_since = self.hooks.clock()
        self.down_since = None
        self.history.record_ready(self.ready_since)
        repos = (inst.snapshot or {}).get("repositories") or []
        took = self.ready_since - inst.started_at
        # The memory of this instance, not of the one it replaces (a process killed for its
        # memory showed that until the next sample).
        self.last_rss = rss
        self._memory_sampled = self.hooks.clock()
        self._set(State.READY, prefix + _describe_snapshot(repos, took), force=bool(prefix))

    async def _serve(self, inst: Instance) -> Optional[ExitInfo]:
        """Watch the serving instance; on a reload, start its successor first, then swap."""
        while True:
            exit_info = await self._watch(inst)
            if exit_info is not None:
                return exit_info
            # A reload of a ready location: the old instance serves until the new one is ready,
            # and goes on serving, with its own config, when the new one fails to load.
            serving = (self.config, self.environment)
            self.config = self._pending_config or self.config
            self._pending_config = None
            try:
                new = await self._launch(announce=False)
            except (LoadFailed, _Exited) as failed:
                self.config, self.environment = serving
                self._successor_failed(failed)
                continue
            rss = await _sample_memory(new)
            old, inst = inst, new
            self.instance = inst
            self.reload_error = None
            self._became_ready(inst, "reloaded: ", rss)
            self._reloaded()
            await old.stop(self._grace)

    def _successor_failed(self, failed: Exception) -> None:
        """Record a reload whose new process did not load; its waiters learn why."""
        if isinstance(failed, LoadFailed):
            message, tb = failed.message, failed.traceback
        else:
            message, tb = str(failed), None
        self.reload_error = {"at": time.time(), "error": message, "traceback": tb}
        self._reloaded(message)

    def _reloaded(self, error: Optional[str] = None) -> None:
        waiters, self._reload_waiters = self._reload_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(error)

    async def _watch(self, inst: Instance) -> Optional[ExitInfo]:
        """Serve until the process exits, hangs or outgrows its memory limit (ExitInfo), or
        a reload is requested (None)."""
        sup = self.config.supervision
        exit_task = asyncio.ensure_future(inst.wait_exit())
        watchdog = asyncio.ensure_future(self._watchdog(inst))
        reload_task = asyncio.ensure_future(self._reload.wait())
        try:
            done, _ = await asyncio.wait(
                {exit_task, watchdog, reload_task}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            watchdog.cancel()
            reload_task.cancel()
        if reload_task in done and exit_task not in done:
            self._reload.clear()
            exit_task.cancel()
            return None
        self.ready_since = None
        # The instance is stopped only after the state has left `ready` (_after_exit): a
        # location is never shown ready while its process is being killed.
        if exit_task in done:
            returncode = exit_task.result()
            self._dying = (inst, 0.0)  # exited: only leftovers in its group to clean up
            return ExitInfo(returncode, inst.describe_exit(returncode), clean=returncode == 0)
        exit_task.cancel()
        self._dying = (inst, min(1.0, sup.heartbeat_seconds))
        return ExitInfo(None, watchdog.result())

    async def _watchdog(self, inst: Instance) -> str:
        """Heartbeats, and memory; the reason the instance must be killed. A local instance
        with a page of the heartbeat file is watched by the manager's one timer per period
        (supervisor/heartbeats.py), any other is pinged."""
        sup = self.config.supervision
        watch = self.hooks.heartbeats
        conn = inst.connection
        tasks: List[asyncio.Future] = []
        if watch is not None and getattr(inst, "beat_slot", None) is not None:
            tasks.append(
                watch.watch(
                    inst.beat_count, lambda: conn is None or conn.closed, sup.heartbeat_seconds
                )
            )
            if not sup.memory_limit_mb:  # RSS only for /status: on a timer of its own
                tasks.append(asyncio.ensure_future(self._status_memory(inst)))
        else:  # RSS only for /status: sampled with each heartbeat, no timer of its own
            sample = not sup.memory_limit_mb
            tasks.append(asyncio.ensure_future(self._heartbeats(inst, sample_memory=sample)))
        if sup.memory_limit_mb:
            tasks.append(asyncio.ensure_future(self._memory(inst)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
        return done.pop().result()  # type: ignore[no-any-return]

    async def _status_memory(self, inst: Instance) -> str:
        """Sample memory for /status every STATUS_MEMORY_SECONDS, on a grid of that period in
        the loop's own time: every location's timer has the same deadline, so all fire in
        one turn of the loop, and one job off the loop takes their samples
        (`_sample_memory`). Never returns."""
        loop = asyncio.get_running_loop()
        last = loop.time()  # the sample taken as it got ready
        while True:
            # the next point of the grid at least half a period after the last sample: a
            # wake-up a little after its point must not skip the next one
            soonest = max(loop.time(), last + STATUS_MEMORY_SECONDS / 2)
            due = on_grid(soonest, STATUS_MEMORY_SECONDS)
            woke = loop.create_future()
            timer = loop.call_at(due, _wake, woke)
            try:
                await woke
            finally:
                timer.cancel()
            last = loop.time()
            self._memory_sampled = self.hooks.clock()
            self.last_rss = await _sample_memory(inst)

    async def _heartbeats(self, inst: Instance, sample_memory: bool) -> str:
        """A ping every `heartbeat_seconds`, each allowed that long to answer. Pings keep their
        period while they time out, so a hung location is found after about 3 periods. A ping's
        deadline is extended by however late the manager's own loop ran meanwhile: a stall of
        ours is not a missed heartbeat of theirs."""
        interval = self.config.supervision.heartbeat_seconds
        clock = self.hooks.clock
        missed = 0
        next_ping = on_grid(clock() + interval, interval)
        while True:
            await asyncio.sleep(max(0.0, next_ping - clock()))
            next_ping += interval
            try:
                assert inst.connection is not None
                # a bare future, no task or timer per ping: one timer bounds it
                await looplag.wait_allowing_for_lag(inst.connection.request("ping"), interval)
            except Exception:  # timeout, connection lost, refused: all count as missed
                missed += 1
                if missed >= MISSED_HEARTBEATS:
                    return f"missed {missed} heartbeats ({interval:g}s each)"
            else:
                missed = 0
                if sample_memory and clock() - self._memory_sampled >= STATUS_MEMORY_SECONDS:
                    self._memory_sampled = clock()
                    self.last_rss = await _sample_memory(inst)
            if next_ping < clock():  # never a burst of pings to catch up
                next_ping = on_grid(clock(), interval)

    async def _memory(self, inst: Instance) -> str:
        """Sample RSS (with descendants) at least every second; a location above its limit
        for `MEMORY_STRIKES` samples in a row must go."""
        sup = self.config.supervision
        assert sup.memory_limit_mb
        limit = sup.memory_limit_mb * 1024 * 1024
        interval = min(sup.heartbeat_seconds, 1.0)
        strikes = 0
        while True:
            await asyncio.sleep(interval)
            self.last_rss = await _sample_memory(inst)
            if self.last_rss is None:
                continue
            strikes = strikes + 1 if self.last_rss > limit else 0
            if strikes >= MEMORY_STRIKES:
                return (
                    f"memory {self.last_rss / 2**20:.0f} MB above the limit of "
                    f"{sup.memory_limit_mb:g} MB"
                )


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


#: Instances whose sample was asked for in this turn of the loop, by loop.
_asked: Dict[asyncio.AbstractEventLoop, List[Tuple[Any, asyncio.Future]]] = {}


async def _sample_memory(inst: Any) -> Optional[int]:
    """`rss_bytes` off the loop: reading a process's smaps_rollup walks its page tables
    (~20 ms for 1 GiB), which must not delay other locations' calls or health answers.
    The samples asked for in one turn of the loop (every location's on the same grid, or
    many locations getting ready at once) go off in jobs of up to MEMORY_BATCH: a job each
    woke a worker thread and passed the interpreter lock back and forth every time."""
    loop = asyncio.get_running_loop()
    asked = _asked.get(loop)
    if asked is None:
        asked = _asked[loop] = []
        loop.call_soon(_send_off, loop)
    answer = loop.create_future()
    asked.append((inst, answer))
    return await answer  # type: ignore[no-any-return]


def _send_off(loop: asyncio.AbstractEventLoop) -> None:
    asked = _asked.pop(loop, [])
    for i in range(0, len(asked), MEMORY_BATCH):
        batch = asked[i : i + MEMORY_BATCH]
        job = loop.run_in_executor(None, _sample_all, [inst for inst, _ in batch])
        job.add_done_callback(functools.partial(_deliver, batch))


def _sample_all(instances: List[Any]) -> List[Tuple[Optional[int], Optional[BaseException]]]:
    results: List[Tuple[Optional[int], Optional[BaseException]]] = []
    for inst in instances:
        try:
            results.append((inst.rss_bytes(), None))
        except Exception as exc:  # that location's sample fails, the others' do not
            results.append((None, exc))
    return results


def _deliver(batch: List[Tuple[Any, asyncio.Future]], done: asyncio.Future) -> None:
    if done.cancelled():
        results: List[Tuple[Optional[int], Optional[BaseException]]] = [
            (None, asyncio.CancelledError())
        ] * len(batch)
    elif done.exception() is not None:
        results = [(None, done.exception())] * len(batch)
    else:
        results = done.result()
    for (_, answer), (rss, error) in zip(batch, results):
        if answer.done():  # its location stopped waiting
            continue
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(rss)


def _describe_snapshot(repos: list, seconds: float) -> str:
    counts = {"job": 0, "schedule": 0, "sensor": 0}
    for repo in repos:
        for kind in counts:
            counts[kind] += len(repo.get(kind + "s") or [])
    parts = [_plural(len(repos), "repository", "repositories")]
    parts += [_plural(n, kind, kind + "s") for kind, n in counts.items()]
    return f"{', '.join(parts)} in {seconds * 1000:.0f} ms"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _clock_time(down_for: Optional[float]) -> str:
    """The wall-clock time (UTC, to the second) a location went down `down_for` seconds ago."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(time.time() - (down_for or 0.0)))


def _last_words(lines: List[bytes], limit: int = 200) -> str:
    """`: <the last line it printed on stderr>`, so the cause of a crash while loading (a
    SyntaxError in an interpreter too old for the SDK, a missing shared library) is in the
    location's error and not only in its log."""
    if not lines:
        return ""
    text = " ".join(lines[-1].decode("utf-8", "replace").split())
    return ": " + (text if len(text) <= limit else text[: limit - 1] + "…")
