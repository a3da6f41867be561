"""The run and tick metrics (supervisor/runmetrics.py) on a scripted manager, the /status
daemon section and `wsm status`'s daemon line."""

from __future__ import annotations

import asyncio
import time
import types
from typing import Any, Dict, FrozenSet, Optional, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from workspace_manager.cli.status import daemon_line, render
from workspace_manager.http.view import ManagerView, status_document
from workspace_manager.storage.records import RunRecord, TickRecord
from workspace_manager.supervisor import metrics as M
from workspace_manager.supervisor.manager import EventSink

Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]


def scrape(metrics: M.ManagerMetrics) -> Samples:
    body, _ = metrics.exposition()
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> Optional[float]:
    return samples.get((name, frozenset(labels.items())))


class FakeStore:
    def __init__(self, counts: Dict[str, int]) -> None:
        self.counts = counts

    async def run_counts(self) -> Dict[str, int]:
        return dict(self.counts)


class FakeManager:
    def __init__(self, store: Any = None, runs: Any = None) -> None:
        self.started_at = 1_000_000.0
        self.locations: Dict[str, Any] = {}
        self.store = store
        self.runs = runs


def finished(status: str, seconds: float, location: str = "a") -> RunRecord:
    return RunRecord(
        "r" * 32, location, "job", status=status, start_time=100.0, ended_at=100.0 + seconds
    )


def test_no_run_families_without_run_storage() -> None:
    samples = scrape(M.ManagerMetrics(FakeManager()))
    assert not [n for n, _ in samples if n.startswith(("wsm_run", "wsm_tick", "wsm_schedule"))]


def test_runs_ticks_lateness_queue_and_in_progress() -> None:
    coordinator = types.SimpleNamespace(queue_length=lambda: 7, in_progress=lambda: 3)
    store = FakeStore({"QUEUED": 7, "STARTED": 3, "SUCCESS": 40, "FAILURE": 2})
    manager = FakeManager(store, coordinator)
    metrics = M.ManagerMetrics(manager)
    asyncio.run(metrics.runs.refresh_counts(store))
    events = metrics.observe_events(EventSink())
    events.run(finished("SUCCESS", 0.3), "success")
    events.run(finished("SUCCESS", 4.0), "success")
    events.run(finished("FAILURE", 0.05, location="b"), "failure")
    events.run(RunRecord("q" * 32, "a", "job", status="STARTED", start_time=1.0), "started")
    events.run(RunRecord("c" * 32, "a", "job", status="CANCELED", ended_at=5.0), "canceled")
    now = time.time()
    for late in (0.004, 0.03, 0.03, 2.0):
        events.tick(
            TickRecord(
                "a",
                "nightly",
                "schedule",
                now,
                status="success",
                started_at=now,
                ended_at=now + late,
            )
        )
    events.tick(
        TickRecord("a", "watch", "sensor", now, status="skipped", started_at=now, ended_at=now + 9)
    )
    events.tick(TickRecord("a", "watch", "sensor", now, status="failure", started_at=now))
    s = scrape(metrics)
    assert value(s, "wsm_runs", status="SUCCESS") == 40
    assert value(s, "wsm_runs", status="CANCELED") == 0  # every status has its series
    assert value(s, "wsm_runs_in_progress") == 3
    assert value(s, "wsm_run_queue_length") == 7
    assert value(s, "wsm_run_duration_seconds_count", location="a", status="SUCCESS") == 2
    assert (
        value(s, "wsm_run_duration_seconds_bucket", location="a", status="SUCCESS", le="0.5") == 1
    )
    assert value(
        s, "wsm_run_duration_seconds_sum", location="a", status="SUCCESS"
    ) == pytest.approx(4.3)
    assert value(s, "wsm_run_duration_seconds_count", location="b", status="FAILURE") == 1
    # a run canceled while queued never ran: no duration
    assert value(s, "wsm_run_duration_seconds_count", location="a", status="CANCELED") is None
    assert value(s, "wsm_ticks_total", kind="schedule", result="success") == 4
    assert value(s, "wsm_ticks_total", kind="sensor", result="skipped") == 1
    assert value(s, "wsm_ticks_total", kind="sensor", result="failure") == 1
    assert value(s, "wsm_schedule_lateness_seconds_count") == 4  # sensors are not late
    assert value(s, "wsm_schedule_lateness_seconds_bucket", le="0.005") == 1
    assert value(s, "wsm_schedule_lateness_seconds_bucket", le="0.05") == 3
    assert value(s, "wsm_schedule_lateness_seconds_bucket", le="+Inf") == 4


def test_an_observer_that_fails_never_breaks_the_event() -> None:
    seen = []
    metrics = M.ManagerMetrics(FakeManager())
    events = metrics.observe_events(EventSink(run=lambda r, e: seen.append(e)))
    events.run(object(), "success")  # not a RunRecord: the metric gives up, the sink goes on
    assert seen == ["success"]


def test_counts_are_refreshed_in_the_background() -> None:
    store = FakeStore({"SUCCESS": 1})
    metrics = M.ManagerMetrics(FakeManager(store))

    async def go() -> Dict[str, int]:
        task = asyncio.ensure_future(metrics.runs.keep_counts(lambda: store, every=0.01))
        await asyncio.sleep(0.05)
        store.counts = {"SUCCESS": 2, "FAILURE": 1}
        for _ in range(200):
            await asyncio.sleep(0.01)
            if metrics.runs.counts.get("SUCCESS") == 2:
                break
        task.cancel()
        return metrics.runs.counts

    counts = asyncio.run(go())
    assert counts["SUCCESS"] == 2 and counts["FAILURE"] == 1 and counts["QUEUED"] == 0


def test_status_document_and_text_have_the_daemon() -> None:
    daemon = {
        "enabled": True,
        "last_loop": 1000.0,
        "runs": {"QUEUED": 2, "SUCCESS": 9, "FAILURE": 0},
        "queue_length": 2,
        "in_progress": 1,
    }
    view = ManagerView(alive=True, started_at=900.0, daemon=daemon)
    doc = status_document(view, 1001.0)
    assert doc["daemon"] == daemon
    assert daemon_line(daemon, now=1003.0) == (
        "daemon on (last loop 3s ago)  runs: 2 queued, 9 success  queue 2  in progress 1"
    )
    off = dict(daemon, enabled=False, last_loop=None, runs={})
    assert daemon_line(off).startswith("daemon off  runs: none")
    text = render(doc)
    assert text.splitlines()[-1].startswith("daemon on")
    assert "daemon" not in render(status_document(ManagerView(True, 900.0), 1001.0))
