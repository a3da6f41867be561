"""What /metrics and /status say about runs and ticks (SPEC section 7, issue 9).

- runs by status: a gauge from the storage's counts (`Storage.run_counts`), kept in a cache
  that `keep_counts` refreshes through the AsyncStorage every `COUNTS_SECONDS`, off the event
  loop, so neither a scrape nor /status ever waits on the disk;
- runs in progress and the queue's length: read from the run coordinator at scrape time;
- run duration: a histogram by location and final status, observed on each final run event;
- ticks by kind and result: a counter, one per tick event;
- schedule lateness: a histogram of a schedule tick's launch time minus its scheduled time.

The recorders are fed by the manager's EventSink (`observe_run`, `observe_tick`), on the
event loop, and can never break what they observe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Tuple

from workspace_manager.storage.records import FINAL_STATUSES, RUN_STATUSES, SCHEDULE

if TYPE_CHECKING:  # imported at the first scrape (supervisor/metrics.py)
    from prometheus_client.core import Metric

log = logging.getLogger(__name__)

#: How often the run counts are read from the storage (seconds).
COUNTS_SECONDS = 2.0
#: Seconds. A trivial job runs in ~0.1 s; batch jobs for hours.
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
#: Seconds. The target is p99 under 0.1 s; a catch-up tick after downtime is hours late.
LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
MAX_LOCATIONS = 256  # distinct location labels kept for run durations


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        import bisect

        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def copy(self) -> Tuple[Tuple[int, ...], float]:
        return tuple(self.counts), self.total


@dataclass(frozen=True)
class RunSnapshot:
    """What one scrape reports about runs; a collector safe to encode in any thread."""

    counts: Tuple[Tuple[str, int], ...]
    in_progress: Optional[int]
    queue_length: Optional[int]
    durations: Tuple[Tuple[str, str, Tuple[int, ...], float], ...]
    ticks: Tuple[Tuple[str, str, int], ...]
    lateness: Tuple[Tuple[int, ...], float]

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        from workspace_manager.supervisor.metrics import bucket_labels

        runs = GaugeMetricFamily(
            "wsm_runs",
            "Runs kept in the run database, by status (refreshed every few seconds).",
            labels=["status"],
        )
        for status, n in self.counts:
            runs.add_metric([status], n)
        yield runs
        if self.in_progress is not None:
            yield GaugeMetricFamily(
                "wsm_runs_in_progress",
                "Runs with a process: STARTING, STARTED or CANCELING.",
                value=self.in_progress,
            )
        if self.queue_length is not None:
            yield GaugeMetricFamily(
                "wsm_run_queue_length", "QUEUED runs waiting for a slot.", value=self.queue_length
            )
        duration = HistogramMetricFamily(
            "wsm_run_duration_seconds",
            "Duration of finished runs (process start to end), by location and final status.",
            labels=["location", "status"],
        )
        for location, status, counts, seconds in self.durations:
            duration.add_metric(
                [location, status], _cumulative(bucket_labels(RUN_BUCKETS), counts), seconds
            )
        yield duration
        ticks = CounterMetricFamily(
            "wsm_ticks",
            "Schedule and sensor evaluations since the manager started, by kind and result.",
            labels=["kind", "result"],
        )
        for kind, result, n in self.ticks:
            ticks.add_metric([kind, result], n)
        yield ticks
        lateness = HistogramMetricFamily(
            "wsm_schedule_lateness_seconds",
            "A schedule tick's launch (its runs queued) minus its scheduled time.",
        )
        counts, total = self.lateness
        lateness.add_metric([], _cumulative(bucket_labels(LATENESS_BUCKETS), counts), total)
        yield lateness


class RunMetrics:
    """Recorders for run and tick events, and the cache of run counts."""

    def __init__(self) -> None:
        self.counts: Dict[str, int] = {}
        self.counts_at: Optional[float] = None  # wall time of the last refresh
        self._durations: Dict[Tuple[str, str], _Histogram] = {}
        self._ticks: Dict[Tuple[str, str], int] = {}
        self._lateness = _Histogram(tuple(float(b) for b in LATENESS_BUCKETS))

    # -- recording ------------------------------------------------------------------------

    def observe_run(self, record: Any, event: str) -> None:
        """A run event (EventSink.run); a final one adds its duration."""
        try:
            if record.status not in FINAL_STATUSES:
                return
            start = record.start_time if record.start_time is not None else record.started_at
            if start is None or record.ended_at is None:
                return  # canceled while queued: it never ran
            location = str(record.location)
            key = (location, str(record.status))
            hist = self._durations.get(key)
            if hist is None:
                if len({loc for loc, _ in self._durations}) >= MAX_LOCATIONS:
                    key = ("other", key[1])
                hist = self._durations.setdefault(key, _Histogram(_bounds(RUN_BUCKETS)))
            hist.observe(max(record.ended_at - start, 0.0))
        except Exception:  # a metric must never break a run's bookkeeping
            log.exception("metrics: cannot observe a run event")

    def observe_tick(self, tick: Any) -> None:
        """A finished tick (EventSink.tick): counted; a schedule's lateness observed."""
        try:
            key = (str(tick.kind), str(tick.status))
            self._ticks[key] = self._ticks.get(key, 0) + 1
            if tick.kind == SCHEDULE:
                launched = tick.ended_at if tick.ended_at is not None else tick.started_at
                if launched:
                    self._lateness.observe(max(launched - tick.tick_time, 0.0))
        except Exception:
            log.exception("metrics: cannot observe a tick")

    # -- run counts -----------------------------------------------------------------------

    async def refresh_counts(self, store: Any) -> None:
        """Read the counts through an AsyncStorage (off the loop)."""
        counts = await store.run_counts()
        self.counts = {s: int(counts.get(s, 0)) for s in RUN_STATUSES}
        self.counts_at = time.time()

    async def keep_counts(self, store: Callable[[], Any], every: float = COUNTS_SECONDS) -> None:
        """Refresh the counts every `every` seconds while the manager runs (a task)."""
        while True:
            current = store()
            if current is not None:
                try:
                    await self.refresh_counts(current)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a busy or broken database: try again later
                    log.warning("metrics: cannot count runs: %s", exc)
            await asyncio.sleep(every)

    # -- exposition -----------------------------------------------------------------------

    def snapshot(self, coordinator: Any) -> RunSnapshot:
        """Copy what a scrape reports; on the event loop. `coordinator` may be None."""
        return RunSnapshot(
            counts=tuple((s, self.counts.get(s, 0)) for s in RUN_STATUSES),
            in_progress=coordinator.in_progress() if coordinator is not None else None,
            queue_length=coordinator.queue_length() if coordinator is not None else None,
            durations=tuple(
                (loc, status, *h.copy()) for (loc, status), h in sorted(self._durations.items())
            ),
            ticks=tuple((k, r, n) for (k, r), n in sorted(self._ticks.items())),
            lateness=self._lateness.copy(),
        )


def _bounds(buckets: Tuple[float, ...]) -> Tuple[float, ...]:
    return tuple(float(b) for b in buckets)


def _cumulative(les: Any, counts: Tuple[int, ...]) -> list:
    out = []
    running = 0
    for le, n in zip(les, counts):
        running += n
        out.append((le, running))
    return out
