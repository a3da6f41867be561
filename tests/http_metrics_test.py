"""/metrics: the collector on a scripted manager state, the route on the real web server, and
a real `wsm up` scraped with a real HTTP client while calls, errors and a kill -9 happen."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import threading
import time
import types
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Tuple

import prometheus_client
import pytest
from cli_up_test import manager_client
from e2e import WorkspaceDir, WsmUp, wait_for
from http_server_test import DEADLINE, Harness, Views
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from workspace_manager.envs.progress import BuildEvent, RecordingReporter
from workspace_manager.http.view import LocationView
from workspace_manager.protocol.errors import CallTimeout, ProtocolError, RemoteError
from workspace_manager.supervisor import metrics as M

Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]


def parse(text: str, openmetrics: bool = False) -> Samples:
    families = openmetrics_families(text) if openmetrics else text_string_to_metric_families(text)
    out: Samples = {}
    for family in families:
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> Optional[float]:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set:
    return {name for name, _ in samples}


# -- the collector, on a scripted manager -------------------------------------------------------


def fake_location(name: str, state: str = "ready", **kw: Any) -> types.SimpleNamespace:
    cpu = kw.pop("cpu", 1.25)
    fields = dict(name=name, state=state, restarts=0, last_rss=50_000_000, pid=4242)
    fields.update(kw)
    return types.SimpleNamespace(instance=types.SimpleNamespace(cpu_seconds=cpu), **fields)


class FakeManager:
    def __init__(self, *locations: types.SimpleNamespace) -> None:
        self.started_at = 1_000_000.0
        self.locations = {loc.name: loc for loc in locations}


def scrape(metrics: M.ManagerMetrics) -> Samples:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return parse(body.decode())


def test_location_state_is_one_hot_with_up_restarts_memory_and_cpu() -> None:
    manager = FakeManager(
        fake_location("a", restarts=3, last_rss=123_456_789, cpu=7.5),
        fake_location("b", "backoff", restarts=1, pid=None),
        fake_location("c", "error", pid=None),
    )
    metrics = M.ManagerMetrics(manager, clock=lambda: 1_000_042.5)
    s = scrape(metrics)
    for name, state in (("a", "ready"), ("b", "backoff"), ("c", "error")):
        row = {st: value(s, "wsm_location_state", location=name, state=st) for st in M.STATES}
        assert row == {st: (1.0 if st == state else 0.0) for st in M.STATES}
        assert value(s, "wsm_location_up", location=name) == (1.0 if state == "ready" else 0.0)
    assert value(s, "wsm_location_restarts_total", location="a") == 3
    assert value(s, "wsm_location_restarts_total", location="b") == 1
    assert value(s, "wsm_location_resident_memory_bytes", location="a") == 123_456_789
    assert value(s, "wsm_location_cpu_seconds_total", location="a") == 7.5
    # no process, no memory or CPU figure (a stale one would mislead)
    for name in ("b", "c"):
        assert value(s, "wsm_location_resident_memory_bytes", location=name) is None
        assert value(s, "wsm_location_cpu_seconds_total", location=name) is None
    assert value(s, "wsm_manager_start_time_seconds") == 1_000_000.0
    assert value(s, "wsm_manager_uptime_seconds") == 42.5
    assert value(s, "wsm_build_info", version=prometheus_version_label(s)) == 1


def prometheus_version_label(s: Samples) -> str:
    (labels,) = [dict(lbl) for name, lbl in s if name == "wsm_build_info"]
    return labels["version"]


def test_state_changes_show_at_the_next_scrape() -> None:
    loc = fake_location("a", "starting", pid=None)
    metrics = M.ManagerMetrics(FakeManager(loc))
    assert value(scrape(metrics), "wsm_location_up", location="a") == 0
    loc.state, loc.pid = "ready", 77
    assert value(scrape(metrics), "wsm_location_up", location="a") == 1


def test_rpc_calls_errors_and_duration_histogram() -> None:
    metrics = M.ManagerMetrics(FakeManager(fake_location("a")))
    for seconds in (0.0003, 0.0005, 0.004, 0.2, 100.0):
        metrics.observe_call("a", "ping", seconds, None)
    metrics.observe_call("a", "evaluate_sensor", 0.01, RemoteError("UserCodeError", "boom"))
    metrics.observe_call("a", "evaluate_sensor", 30.0, CallTimeout("late"))
    metrics.observe_call("a", "evaluate_sensor", 0.001, ConnectionError("gone"))
    metrics.observe_call("a", "evaluate_sensor", 0.001, ProtocolError("bad frame"))
    s = scrape(metrics)
    assert value(s, "wsm_rpc_calls_total", location="a", method="ping") == 5
    assert value(s, "wsm_rpc_calls_total", location="a", method="evaluate_sensor") == 4

    def bucket(le: str) -> Optional[float]:
        return value(s, "wsm_rpc_duration_seconds_bucket", location="a", method="ping", le=le)

    assert bucket("0.0005") == 2  # le means <=
    assert bucket("0.001") == 2
    assert bucket("0.005") == 3
    assert bucket("0.25") == 4
    assert bucket("30.0") == 4
    assert bucket("+Inf") == 5
    total = value(s, "wsm_rpc_duration_seconds_sum", location="a", method="ping")
    assert total == pytest.approx(100.2048)
    errors = {
        dict(lbl)["type"]: v for (name, lbl), v in s.items() if name == "wsm_rpc_errors_total"
    }
    assert errors == {"UserCodeError": 1, "Timeout": 1, "ConnectionLost": 1, "ProtocolError": 1}
    assert value(s, "wsm_rpc_errors_total", location="a", method="ping", type="Timeout") is None


def test_caller_chosen_labels_are_bounded() -> None:
    metrics = M.ManagerMetrics(FakeManager(fake_location("a")))
    for i in range(M.MAX_METHODS + 20):
        metrics.observe_call("a", f"method_{i}", 0.001, None)
    metrics.observe_call("a", 'evil"\nname{x="y"}', 0.001, RemoteError('bad"type\n', "x"))
    for i in range(M.MAX_ERROR_TYPES + 5):
        metrics.observe_call("a", "method_0", 0.001, RemoteError(f"Type{i}", "x"))
    s = scrape(metrics)
    methods = {dict(lbl)["method"] for name, lbl in s if name == "wsm_rpc_calls_total"}
    assert len(methods) == M.MAX_METHODS + 1 and M.OTHER in methods
    assert value(s, "wsm_rpc_calls_total", location="a", method=M.OTHER) == 21
    kinds = {
        dict(lbl)["type"]
        for name, lbl in s
        if name == "wsm_rpc_errors_total" and dict(lbl)["method"] == "method_0"
    }
    assert len(kinds) == M.MAX_ERROR_TYPES + 1 and M.OTHER in kinds
    assert value(s, "wsm_rpc_errors_total", location="a", method=M.OTHER, type="RemoteError") == 1


def test_rpc_series_of_a_removed_location_are_dropped() -> None:
    manager = FakeManager(fake_location("a"), fake_location("b"))
    metrics = M.ManagerMetrics(manager)
    metrics.observe_call("a", "ping", 0.001, None)
    metrics.observe_call("b", "ping", 0.001, None)
    del manager.locations["b"]
    s = scrape(metrics)
    assert value(s, "wsm_rpc_calls_total", location="a", method="ping") == 1
    assert not [lbl for name, lbl in s if dict(lbl).get("location") == "b"]


def test_env_builds_are_counted_and_every_event_still_reaches_the_console() -> None:
    metrics = M.ManagerMetrics(FakeManager())
    s = scrape(metrics)
    assert value(s, "wsm_env_builds_total", result="success") == 0
    assert value(s, "wsm_env_builds_total", result="failure") == 0
    inner = RecordingReporter()
    reporter = metrics.build_reporter(inner)
    events = [
        BuildEvent("k1", ("a",), "start"),
        BuildEvent("k1", ("a",), "step", "creating virtualenv", 0.1),
        BuildEvent("k1", ("a",), "done", "built", 3.0),
        BuildEvent("k2", ("b",), "failed", "pip install failed", 0.5),
        BuildEvent("k3", ("c",), "done", "built", 45.0),
    ]
    for event in events:
        reporter.report(event)
    assert inner.events == events
    s = scrape(metrics)
    assert value(s, "wsm_env_builds_total", result="success") == 2
    assert value(s, "wsm_env_builds_total", result="failure") == 1
    hist = "wsm_env_build_duration_seconds"
    assert value(s, hist + "_bucket", result="success", le="5.0") == 1
    assert value(s, hist + "_bucket", result="success", le="60.0") == 2
    assert value(s, hist + "_sum", result="success") == 48.0
    assert value(s, hist + "_count", result="failure") == 1


def test_builds_reported_from_threads_are_all_counted() -> None:
    metrics = M.ManagerMetrics(FakeManager())
    reporter = metrics.build_reporter()

    def build() -> None:
        for _ in range(500):
            reporter.report(BuildEvent("k", ("a",), "done", "built", 1.0))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert value(scrape(metrics), "wsm_env_builds_total", result="success") == 2000


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    metrics = M.ManagerMetrics(FakeManager(fake_location("a")))
    metrics.observe_call("a", "ping", 0.002, None)
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n")
    s = parse(text, openmetrics=True)
    assert value(s, "wsm_rpc_calls_total", location="a", method="ping") == 1
    assert value(s, "wsm_location_up", location="a") == 1
    _, plain = metrics.exposition("text/html, */*")
    assert plain.startswith("text/plain")


def test_each_manager_has_its_own_registry() -> None:
    one = M.ManagerMetrics(FakeManager(fake_location("a")))
    two = M.ManagerMetrics(FakeManager(fake_location("b")))
    one.observe_call("a", "ping", 0.001, None)
    assert value(scrape(two), "wsm_rpc_calls_total", location="a", method="ping") is None
    assert one.registry is not two.registry
    default = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "wsm_" not in default


def test_async_exposition_encodes_a_snapshot_in_a_worker_thread() -> None:
    metrics = M.ManagerMetrics(FakeManager(fake_location("a")))
    metrics.observe_call("a", "ping", 0.001, None)
    encoder_threads: List[str] = []
    real_encode = M.encode

    def spy(snapshot: M.Snapshot, accept: str = "") -> Tuple[bytes, str]:
        encoder_threads.append(threading.current_thread().name)
        return real_encode(snapshot, accept)

    async def go() -> Tuple[bytes, str]:
        M.encode = spy  # type: ignore[assignment]
        try:
            task = asyncio.ensure_future(metrics.exposition_async(""))
            await asyncio.sleep(0)  # the snapshot is taken: later calls are not in it
            metrics.observe_call("a", "ping", 0.001, None)
            return await task
        finally:
            M.encode = real_encode  # type: ignore[assignment]

    body, _ = asyncio.run(go())
    assert encoder_threads and encoder_threads[0] != threading.current_thread().name
    assert value(parse(body.decode()), "wsm_rpc_calls_total", location="a", method="ping") == 1


def test_exposition_of_fifty_busy_locations_is_small_work_on_the_loop() -> None:
    """The loop's share (the snapshot) stays far below a health probe's budget."""
    manager = FakeManager(*(fake_location(f"loc{i}") for i in range(50)))
    metrics = M.ManagerMetrics(manager)
    for i in range(50):
        for method in ("ping", "get_snapshot", "evaluate_sensor", "shutdown"):
            for k in range(10):
                metrics.observe_call(f"loc{i}", method, 0.001 * k, None)
    best = min(_timed(metrics.snapshot) for _ in range(5))
    assert best < 0.005, f"snapshot took {best * 1000:.2f} ms"
    s = scrape(metrics)
    assert len([1 for name, _ in s if name == "wsm_rpc_calls_total"]) == 200


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- the route on the real web server ------------------------------------------------------------


@pytest.fixture
def slow_metrics() -> Iterator[Tuple[Harness, threading.Event]]:
    """/metrics whose exposition is still running while other requests arrive."""
    release = threading.Event()

    async def exposition(accept: str) -> Tuple[bytes, str]:
        await asyncio.get_running_loop().run_in_executor(None, release.wait, DEADLINE)
        return b"wsm_x 1\n", f"text/plain; accept={accept or '-'}"

    harness = Harness(Views(), request_timeout=DEADLINE, context={"exposition": exposition})
    try:
        yield harness, release
    finally:
        release.set()
        harness.close()


def test_an_async_route_does_not_hold_up_other_requests(slow_metrics) -> None:
    harness, release = slow_metrics
    result: Dict[str, Any] = {}

    def scrape_it() -> None:
        result["answer"] = harness.get("/metrics", headers={"Accept": "text/plain"})

    scraper = threading.Thread(target=scrape_it)
    scraper.start()
    t0 = time.monotonic()
    assert harness.get("/livez")[0] == 200
    assert harness.get("/readyz")[0] == 200
    assert time.monotonic() - t0 < 1.0
    assert scraper.is_alive()  # the scrape is still waiting for its exposition
    release.set()
    scraper.join(DEADLINE)
    code, headers, body = result["answer"]
    assert code == 200 and body == "wsm_x 1\n"
    assert headers["Content-Type"] == "text/plain; accept=text/plain"


def test_a_failing_exposition_is_a_500_and_the_server_carries_on() -> None:
    async def broken(accept: str) -> Tuple[bytes, str]:
        raise RuntimeError("exposition failed")

    harness = Harness(Views(), request_timeout=DEADLINE, context={"exposition": broken})
    try:
        assert harness.get("/metrics")[0] == 500
        assert harness.get("/livez")[0] == 200
    finally:
        harness.close()


def test_status_is_compact_json_unless_pretty_is_asked() -> None:
    views = Views(LocationView(name="a", state="ready", pid=1))
    harness = Harness(views, request_timeout=DEADLINE)
    try:
        _, _, compact = harness.get("/status")
        _, _, pretty = harness.get("/status?pretty")
        assert compact.count("\n") == 1 and pretty.count("\n") > 10
        assert json.loads(compact)["locations"] == json.loads(pretty)["locations"]
        assert harness.get("/status?pretty=0")[2].count("\n") == 1
    finally:
        harness.close()


# -- a real `wsm up` -------------------------------------------------------------------------

REPO = """
from workspace_manager import RunRequest, job, repository, sensor

@job
def j(): ...

@sensor(job=j)
def fine():
    yield RunRequest(run_key=None, run_config={})

@sensor(job=j)
def boom():
    raise ValueError("sensor failed on purpose")

@repository
def repo():
    return [j, fine, boom]
"""


def get(up: WsmUp, path: str, accept: Optional[str] = None) -> Tuple[int, str, str]:
    assert up.port is not None
    conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


def metrics_of(up: WsmUp) -> Samples:
    code, content_type, body = get(up, "/metrics")
    assert code == 200, body
    assert content_type.startswith("text/plain; version=0.0.4")
    return parse(body)


def test_metrics_of_a_real_manager_follow_calls_errors_kills_and_builds(ws: WorkspaceDir) -> None:
    ws.file("alpha/repo.py", REPO)
    ws.file("beta/repo.py", REPO)
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "alpha/repo.py", "location_name": "alpha"}},
                {"python_file": {"relative_path": "beta/repo.py", "location_name": "beta"}},
                {
                    "python_file": {
                        "relative_path": "beta/repo.py",
                        "location_name": "gamma",
                        "environment": {"requirements": []},
                    }
                },
            ]
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        status = up.wait_all_settled(timeout=120)
        assert {n: loc["state"] for n, loc in status["locations"].items()} == dict.fromkeys(
            ("alpha", "beta", "gamma"), "ready"
        )
        s = metrics_of(up)
        for name in ("alpha", "beta", "gamma"):
            assert value(s, "wsm_location_up", location=name) == 1
            assert value(s, "wsm_location_state", location=name, state="ready") == 1
            assert value(s, "wsm_location_restarts_total", location=name) == 0
        assert value(s, "wsm_env_builds_total", result="success") == 1
        assert value(s, "wsm_env_build_duration_seconds_count", result="success") == 1
        assert 0 < value(s, "wsm_env_build_duration_seconds_sum", result="success") < 120
        assert abs(value(s, "wsm_manager_start_time_seconds") - time.time()) < 300
        # RSS and CPU come from the watchdog's samples: wait for the first ones
        s = wait_for(
            lambda: (
                lambda m: (
                    m
                    if value(m, "wsm_location_cpu_seconds_total", location="alpha") is not None
                    else None
                )
            )(metrics_of(up)),
            20,
            "a CPU sample of alpha",
        )
        # PSS: a loader forked by its fork server shares the server's pages (~4-5 MB in all)
        assert value(s, "wsm_location_resident_memory_bytes", location="alpha") > 2 * 2**20
        # a forked location may have used less than a clock tick (10 ms) of CPU: 0 is a sample
        assert 0 <= value(s, "wsm_location_cpu_seconds_total", location="alpha") < 60

        calls = "wsm_rpc_calls_total"
        before = value(s, calls, location="alpha", method="evaluate_sensor") or 0
        with manager_client(ws) as client:
            params = {"location": "alpha", "method": "evaluate_sensor"}
            client.call("call", dict(params, params={"sensor": "fine"}))
            with pytest.raises(RemoteError) as err:
                client.call("call", dict(params, params={"sensor": "boom"}))
        s = metrics_of(up)
        assert value(s, calls, location="alpha", method="evaluate_sensor") == before + 2
        assert value(s, calls, location="beta", method="evaluate_sensor") is None
        assert (
            value(
                s,
                "wsm_rpc_errors_total",
                location="alpha",
                method="evaluate_sensor",
                type=err.value.type,
            )
            == 1
        )
        assert (
            value(s, "wsm_rpc_duration_seconds_count", location="alpha", method="evaluate_sensor")
            == before + 2
        )
        # a local location's heartbeats are a counter in shared memory, not calls
        # (supervisor/heartbeats.py): no ping is sent to it
        time.sleep(2.5)  # more than a period of 2 s
        assert value(metrics_of(up), calls, location="beta", method="ping") is None

        # OpenMetrics for a scraper that asks for it
        code, content_type, body = get(up, "/metrics", "application/openmetrics-text")
        assert code == 200 and content_type.startswith("application/openmetrics-text")
        assert value(parse(body, True), "wsm_location_up", location="gamma") == 1

        # a kill -9 is a restart
        old_pid = up.location("beta")["pid"]
        os.kill(old_pid, signal.SIGKILL)
        # the killed process is reaped a few loop turns before its location leaves `ready`:
        # meanwhile it reads ready with pid None, which is not "back"
        wait_for(
            lambda: (lambda loc: loc["state"] == "ready" and loc["pid"] not in (None, old_pid))(
                up.location("beta")
            ),
            30,
            "beta to come back",
        )
        s = metrics_of(up)
        assert value(s, "wsm_location_restarts_total", location="beta") == 1
        assert value(s, "wsm_location_restarts_total", location="alpha") == 0
        assert value(s, "wsm_location_up", location="beta") == 1


def test_a_hung_location_does_not_slow_metrics(ws: WorkspaceDir) -> None:
    ws.file("alpha/repo.py", REPO)
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "alpha/repo.py", "location_name": "alpha"}},
                {"python_file": {"relative_path": "alpha/repo.py", "location_name": "hung"}},
            ]
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_all_settled()
        pid = up.location("hung")["pid"]
        up.track()
        os.kill(pid, signal.SIGSTOP)
        try:
            # a call to the stopped location is in flight the whole time
            caller = threading.Thread(target=_call_quietly, args=(ws, "hung"), daemon=True)
            caller.start()
            worst = 0.0
            for _ in range(20):
                t0 = time.monotonic()
                code, _, body = get(up, "/metrics")
                worst = max(worst, time.monotonic() - t0)
                assert code == 200
            assert "wsm_location_up" in body
            assert worst < 1.0, f"/metrics took {worst:.3f}s with a hung location"
        finally:
            os.kill(pid, signal.SIGCONT)


def _call_quietly(ws: WorkspaceDir, location: str) -> None:
    try:
        with manager_client(ws) as client:
            client.call(
                "call",
                {"location": location, "method": "evaluate_sensor", "params": {"sensor": "fine"}},
            )
    except Exception:
        pass
