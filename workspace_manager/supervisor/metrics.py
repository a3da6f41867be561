"""Prometheus metrics of one manager, read from its own state at scrape time.

Nothing here talks to a location: a scrape reads what the manager already knows (states,
restart counts, the watchdog's last RSS and CPU samples) plus what the hooks below recorded
as it happened (RPC calls by method, env builds). So a hung location never slows /metrics,
and each manager has its own `CollectorRegistry` (no global state).

A scrape takes a `Snapshot` on the event loop (plain copies, well under a millisecond for
50 locations) and hands it to prometheus_client's encoder in a worker thread
(`exposition_async`): encoding thousands of samples costs tens of milliseconds of pure
Python, which must not stall the loop that answers /livez and runs the supervision.

Hooks, all cheap and none able to break what they observe:
- `connection_observer(location)`: an `AsyncConnection.observer` recording each completed
  call's method, duration and error type (`watch_connection(location)` attaches it);
- `build_reporter(inner)`: wraps the env build reporter, counting builds and their duration;
- `observe_events(sink)`: wraps the manager's EventSink so run and tick events also feed
  the run metrics (supervisor/runmetrics.py), reported once the manager keeps runs.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import functools
import re
import threading
import time
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
)

from workspace_manager.envs.progress import BuildEvent, BuildReporter, NullReporter
from workspace_manager.protocol.errors import CallTimeout, ProtocolError, RemoteError
from workspace_manager.supervisor.runmetrics import RunMetrics, RunSnapshot
from workspace_manager.version import __version__

if TYPE_CHECKING:  # prometheus_client (~30 ms) is imported at the first scrape, not at start
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry

#: Every state a location can be in (SPEC section 4), one series each in wsm_location_state.
STATES = ("building", "starting", "ready", "error", "backoff", "failed", "stopped")
#: Seconds. A ping on a Unix socket takes ~100 us, a sensor up to the call timeout (30 s).
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BUILD_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
#: Method names and error types come from callers and locations: cap each location's
#: distinct label values so that no client can grow the exposition without bound.
MAX_METHODS = 64
MAX_ERROR_TYPES = 32
OTHER = "other"

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")

CallObserver = Callable[[str, float, Optional[BaseException]], None]


class LocationLike(Protocol):
    """What a scrape reads of a location (supervisor.location.Location has all of it)."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> Any: ...  # State enum (a str subclass with .value) or a state name

    @property
    def restarts(self) -> int: ...

    @property
    def last_rss(self) -> Optional[int]: ...

    @property
    def instance(self) -> Any: ...  # `cpu_seconds` when the watchdog sampled it

    @property
    def pid(self) -> Optional[int]: ...


class MetricsSource(Protocol):
    @property
    def started_at(self) -> float: ...  # wall clock

    @property
    def locations(self) -> Mapping[str, LocationLike]: ...


class Histogram:
    """Fixed buckets, plain counts: observing is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.total += value

    def copy(self) -> Tuple[Tuple[int, ...], float]:
        return tuple(self.counts), self.total


class _MethodStats:
    __slots__ = ("duration", "errors")

    def __init__(self) -> None:
        self.duration = Histogram(RPC_BUCKETS)
        self.errors: Dict[str, int] = {}


@dataclass(frozen=True)
class _LocationRow:
    name: str
    state: str
    restarts: int
    rss: Optional[int]  # None unless ready with a live process
    cpu: Optional[float]
    log_dropped: int = 0  # its output lines lost to failed log writes


@dataclass(frozen=True)
class _RpcRow:
    location: str
    method: str
    counts: Tuple[int, ...]  # per bucket, not cumulative
    seconds: float
    errors: Tuple[Tuple[str, int], ...]


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape reports, copied from the manager; a prometheus_client Collector
    (it has `collect()`), safe to encode in any thread."""

    now: float
    started_at: float
    locations: Tuple[_LocationRow, ...]
    rpc: Tuple[_RpcRow, ...]
    builds: Tuple[Tuple[str, Tuple[int, ...], float], ...]  # (result, counts, seconds)
    runs: Optional[RunSnapshot] = None  # None: the manager keeps no runs (`wsm list`, tests)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        info = GaugeMetricFamily("wsm_build_info", "wsm's version; always 1.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "wsm_manager_start_time_seconds",
            "When the manager started, in seconds since the Unix epoch.",
            value=self.started_at,
        )
        yield GaugeMetricFamily(
            "wsm_manager_uptime_seconds",
            "Seconds since the manager started.",
            value=max(self.now - self.started_at, 0.0),
        )
        yield from self._location_families()
        yield from self._rpc_families()
        yield from self._build_families()
        if self.runs is not None:
            yield from self.runs.collect()

    def _location_families(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = GaugeMetricFamily(
            "wsm_location_state",
            "1 for the state each location is in, 0 for the others.",
            labels=["location", "state"],
        )
        up = GaugeMetricFamily(
            "wsm_location_up", "1 when the location is ready, else 0.", labels=["location"]
        )
        restarts = CounterMetricFamily(
            "wsm_location_restarts",
            "Restarts of the location by the manager's restart policy.",
            labels=["location"],
        )
        rss = GaugeMetricFamily(
            "wsm_location_resident_memory_bytes",
            "Memory of a ready location's processes (last sample): the sum of their PSS, "
            "so pages they share count once.",
            labels=["location"],
        )
        cpu = CounterMetricFamily(
            "wsm_location_cpu_seconds",
            "User and system CPU time of a ready location's process and its descendants "
            "(last sample; starts again from 0 when the process is restarted).",
            labels=["location"],
        )
        dropped = CounterMetricFamily(
            "wsm_log_lines_dropped",
            "Lines of a location's output that could not be written to its log (a full disk).",
            labels=["location"],
        )
        for loc in self.locations:
            dropped.add_metric([loc.name], loc.log_dropped)
            for s in STATES:
                state.add_metric([loc.name, s], 1 if s == loc.state else 0)
            up.add_metric([loc.name], 1 if loc.state == "ready" else 0)
            restarts.add_metric([loc.name], loc.restarts)
            if loc.rss is not None:
                rss.add_metric([loc.name], loc.rss)
            if loc.cpu is not None:
                cpu.add_metric([loc.name], loc.cpu)
        yield from (state, up, restarts, rss, cpu, dropped)

    def _rpc_families(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        labels = ["location", "method"]
        calls = CounterMetricFamily(
            "wsm_rpc_calls", "Calls to a location that completed, by method.", labels=labels
        )
        errors = CounterMetricFamily(
            "wsm_rpc_errors",
            "Calls to a location that failed, by method and error type.",
            labels=[*labels, "type"],
        )
        duration = HistogramMetricFamily(
            "wsm_rpc_duration_seconds",
            "Duration of calls to a location, by method, as the manager saw them.",
            labels=labels,
        )
        for row in self.rpc:
            buckets = _cumulative(bucket_labels(RPC_BUCKETS), row.counts)
            calls.add_metric([row.location, row.method], buckets[-1][1])
            duration.add_metric([row.location, row.method], buckets, row.seconds)
            for kind, n in row.errors:
                errors.add_metric([row.location, row.method, kind], n)
        yield from (calls, errors, duration)

    def _build_families(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        total = CounterMetricFamily(
            "wsm_env_builds",
            "Environment builds this manager finished, by result (success or failure).",
            labels=["result"],
        )
        duration = HistogramMetricFamily(
            "wsm_env_build_duration_seconds",
            "Duration of environment builds, by result.",
            labels=["result"],
        )
        seen = {result for result, _, _ in self.builds}
        for result in ("success", "failure"):  # both series exist from the start
            if result not in seen:
                total.add_metric([result], 0)
        for result, counts, seconds in self.builds:
            buckets = _cumulative(bucket_labels(BUILD_BUCKETS), counts)
            total.add_metric([result], buckets[-1][1])
            duration.add_metric([result], buckets, seconds)
        yield from (total, duration)


class ManagerMetrics:
    """Recorders for what happens, and the registry that reads the manager at scrape time."""

    def __init__(self, source: MetricsSource, clock: Callable[[], float] = time.time) -> None:
        self._source = source
        self._clock = clock
        self._rpc: Dict[str, Dict[str, _MethodStats]] = {}
        self._builds: Dict[str, Histogram] = {}
        self._builds_lock = threading.Lock()  # builds report from worker threads
        self.runs = RunMetrics()
        self._registry: Optional[CollectorRegistry] = None

    @property
    def registry(self) -> CollectorRegistry:
        """This manager's own registry (no global state), made at the first scrape."""
        if self._registry is None:
            from prometheus_client.registry import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(_Live(self))
        return self._registry

    def observe_events(self, sink: Any) -> Any:
        """`sink` (a manager EventSink) with its run and tick events also counted here."""
        inner_run, inner_tick = sink.run, sink.tick

        def run(record: Any, event: str) -> None:
            self.runs.observe_run(record, event)
            inner_run(record, event)

        def tick(tick: Any) -> None:
            self.runs.observe_tick(tick)
            inner_tick(tick)

        return dataclasses.replace(sink, run=run, tick=tick)

    # -- recording (on the event loop, except builds) ---------------------------------------

    def observe_call(
        self, location: str, method: str, seconds: float, error: Optional[BaseException]
    ) -> None:
        """One completed call to `location` (a success when `error` is None)."""
        methods = self._rpc.setdefault(location, {})
        stats = methods.get(method)
        if stats is None:
            if len(methods) >= MAX_METHODS or not _LABEL_VALUE.match(method):
                method = OTHER
            stats = methods.setdefault(method, _MethodStats())
        stats.duration.observe(max(seconds, 0.0))
        if error is not None:
            kind = error_type(error)
            if kind not in stats.errors and len(stats.errors) >= MAX_ERROR_TYPES:
                kind = OTHER
            stats.errors[kind] = stats.errors.get(kind, 0) + 1

    def connection_observer(self, location: str) -> CallObserver:
        """An `AsyncConnection.observer` that records calls under `location`."""

        def observe(method: str, seconds: float, error: Optional[BaseException]) -> None:
            self.observe_call(location, method, seconds, error)

        return observe

    def watch_connection(self, location: Any) -> None:
        """Attach the observer to a location's current connection (call when it is ready)."""
        connection = getattr(getattr(location, "instance", None), "connection", None)
        if connection is not None and getattr(connection, "observer", None) is None:
            connection.observer = self.connection_observer(location.name)

    def observe_build(self, result: str, seconds: float) -> None:
        with self._builds_lock:
            hist = self._builds.get(result)
            if hist is None:
                hist = self._builds[result] = Histogram(BUILD_BUCKETS)
            hist.observe(max(seconds, 0.0))

    def build_reporter(self, inner: Optional[BuildReporter] = None) -> BuildReporter:
        """`inner` (the console's progress) plus counting each finished build."""
        return _BuildCounter(self, inner or NullReporter())

    # -- exposition -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Copy what a scrape reports; call on the event loop that owns the manager."""
        rows = []
        counter = getattr(self._source, "log_lines_dropped", None)
        dropped: Dict[str, int] = counter() if counter is not None else {}
        for loc in list(self._source.locations.values()):
            state = str(getattr(loc.state, "value", loc.state))
            live = state == "ready" and loc.pid is not None
            cpu = getattr(loc.instance, "cpu_seconds", None) if live else None
            rows.append(
                _LocationRow(
                    loc.name,
                    state,
                    loc.restarts,
                    loc.last_rss if live else None,
                    cpu,
                    dropped.get(loc.name, 0),
                )
            )
        rpc = []
        for row in rows:  # only the locations the manager has now
            for method, stats in list(self._rpc.get(row.name, {}).items()):
                counts, seconds = stats.duration.copy()
                errors = tuple(stats.errors.items())
                rpc.append(_RpcRow(row.name, method, counts, seconds, errors))
        with self._builds_lock:
            builds = tuple((r, *h.copy()) for r, h in sorted(self._builds.items()))
        runs = None
        if getattr(self._source, "store", None) is not None:
            runs = self.runs.snapshot(getattr(self._source, "runs", None))
        return Snapshot(
            self._clock(), self._source.started_at, tuple(rows), tuple(rpc), builds, runs
        )

    def exposition(self, accept: str = "") -> Tuple[bytes, str]:
        """Body and content type for an `Accept` header (OpenMetrics when it asks for it,
        else the Prometheus text format), from the registry, in the calling thread."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    async def exposition_async(self, accept: str = "") -> Tuple[bytes, str]:
        """The same, with the snapshot taken here and the encoding done in a worker thread."""
        snap = self.snapshot()
        return await asyncio.get_running_loop().run_in_executor(None, encode, snap, accept)


def encode(snapshot: Snapshot, accept: str = "") -> Tuple[bytes, str]:
    """The exposition of `snapshot`, for a worker thread: between metric families it lets
    go of the GIL, so the event loop waits for at most one family's formatting rather than
    for Python's whole switch interval (5 ms)."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept)
    return encoder(_Yielding(snapshot)), content_type  # type: ignore[arg-type]


def error_type(error: BaseException) -> str:
    """The `type` label of a failed call: the protocol's error type, or what went wrong."""
    if isinstance(error, RemoteError):
        kind = error.type
        return kind if isinstance(kind, str) and _LABEL_VALUE.match(kind) else "RemoteError"
    if isinstance(error, CallTimeout):
        return "Timeout"
    if isinstance(error, ProtocolError):
        return "ProtocolError"
    if isinstance(error, (ConnectionError, OSError, EOFError)):
        return "ConnectionLost"
    return type(error).__name__


@functools.cache
def bucket_labels(bounds: Tuple[float, ...]) -> List[str]:
    """The `le` labels of a histogram's buckets, as prometheus_client writes them."""
    from prometheus_client.utils import floatToGoString

    return [floatToGoString(float(b)) for b in bounds] + ["+Inf"]


def _cumulative(les: Sequence[str], counts: Sequence[int]) -> List[Tuple[str, float]]:
    out: List[Tuple[str, float]] = []
    running = 0
    for le, n in zip(les, counts):
        running += n
        out.append((le, running))
    return out


class _Live:
    """The registry's collector: a fresh snapshot of the manager on each collect()."""

    def __init__(self, metrics: ManagerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.snapshot().collect()


class _Yielding:
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        for family in self._snapshot.collect():
            time.sleep(0)  # a waiting event loop takes the GIL here
            yield family


class _BuildCounter:
    def __init__(self, metrics: ManagerMetrics, inner: BuildReporter) -> None:
        self._metrics = metrics
        self._inner = inner

    def report(self, event: BuildEvent) -> None:
        if event.kind in ("done", "failed"):
            result = "success" if event.kind == "done" else "failure"
            self._metrics.observe_build(result, event.elapsed)
        self._inner.report(event)
