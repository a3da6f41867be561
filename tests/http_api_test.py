"""The JSON API (http/api.py) over real sockets: the real web server (web/) with the API, the
storage the CLI reads (SQLite when present), and small fakes for the run coordinator and the
daemon (their own tests cover them)."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import subprocess
import threading
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

import pytest

from workspace_manager.http.api import Api, ApiRequest, ApiSources, is_loopback
from workspace_manager.http.view import ManagerView
from workspace_manager.storage.records import CANCELED, QUEUED, LogLine, RunRecord, TickRecord
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.web.app import build_app
from workspace_manager.web.context import WebContext
from workspace_manager.web.server import WebServer
from workspace_manager.web.session import COOKIE, csrf_token, new_secret

DEADLINE = 10.0


class FakeCoordinator:
    """RunCoordinator's submit and cancel, on the real storage."""

    def __init__(self, storage: Any, jobs: Dict[str, List[str]]) -> None:
        self.storage = storage
        self.jobs = jobs
        self.submitted: List[dict] = []

    async def submit(self, location, job, *, run_config, tags, origin, repository=None):
        if job not in self.jobs.get(location, []):
            raise LookupError(f"no job {job!r} in location {location!r}")
        self.submitted.append({"origin": origin, "run_config": run_config, "tags": tags})
        run = RunRecord(
            uuid.uuid4().hex, location, job, run_config=run_config, tags=tags, origin=origin
        )
        return self.storage.add_run(run)

    async def cancel(self, run_id: str, reason: str = "canceled by user") -> RunRecord:
        return self.storage.update_run(run_id, status=CANCELED, message=reason)


class FakeDaemon:
    def __init__(self) -> None:
        self.items = [
            {
                "location": "a",
                "name": "nightly",
                "kind": "schedule",
                "status": "STOPPED",
                "cron_schedule": "0 2 * * *",
                "last_tick": None,
            },
            {
                "location": "a",
                "name": "watch",
                "kind": "sensor",
                "status": "RUNNING",
                "minimum_interval_seconds": 30,
                "last_tick": None,
            },
        ]

    def instigators(self, kind: Optional[str] = None) -> List[dict]:
        return [i for i in self.items if kind is None or i["kind"] == kind]

    async def set_status(self, kind: str, name: str, status: str) -> dict:
        for item in self.items:
            if item["kind"] == kind and name in (
                item["name"],
                f"{item['location']}:{item['name']}",
            ):
                item["status"] = status
                return item
        raise LookupError(f"no {kind} named {name!r}")


class Served:
    """The web server with the API, on an event loop in a background thread."""

    def __init__(
        self, tmp_path, host: str = "127.0.0.1", token: Optional[str] = None, daemon: bool = True
    ) -> None:
        self.storage = SqliteStorage(tmp_path / "runs.db", create=True)
        self.coordinator = FakeCoordinator(self.storage, {"a": ["hello", "slow"]})
        self.daemon = FakeDaemon() if daemon else None
        self.reloaded: List[List[str]] = []

        async def reload(names: List[str]) -> dict:
            self.reloaded.append(names)
            return {"restarted": names}

        from workspace_manager.storage.writer import AsyncStorage

        self.async_storage = AsyncStorage(self.storage)
        sources = ApiSources(
            storage=lambda: self.async_storage,
            runs=lambda: self.coordinator,
            daemon=lambda: self.daemon,
            locations=lambda: [{"name": "a", "state": "ready", "repositories": []}],
            reload=reload,
            token=token,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.context = WebContext(
            view=lambda: ManagerView(True, time.time()),
            api=Api(sources),
            api_token=token,
            secret=new_secret(),
        )
        self.server = WebServer(host, 0, build_app(self.context))
        self.host, self.port = self.run(self.server.start())[:2]

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(DEADLINE)

    def close(self) -> None:
        self.run(self.server.close())
        self.run(self.async_storage.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEADLINE)
        self.loop.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Optional[dict] = None,
        raw: Optional[bytes] = None,
    ):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=DEADLINE)
        try:
            hdrs = dict(headers or {})
            data = raw
            if body is not None:
                data = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read().decode()
            return resp.status, resp.headers, json.loads(text) if text else None
        finally:
            conn.close()


@pytest.fixture
def api(tmp_path) -> Iterator[Served]:
    served = Served(tmp_path)
    yield served
    served.close()


def add_runs(storage: Any, n: int, **kw) -> List[RunRecord]:
    base = time.time() - 1000
    return [
        storage.add_run(
            RunRecord(
                uuid.uuid4().hex,
                kw.get("location", "a"),
                kw.get("job", "hello"),
                created_at=base + i,
            )
        )
        for i in range(n)
    ]


def test_launch_read_logs_and_cancel_round_trip(api: Served):
    status, headers, run = api.request(
        "POST",
        "/api/runs",
        {"location": "a", "job": "hello", "run_config": {"x": 1}, "tags": {"team": "data"}},
    )
    assert status == 201, run
    assert run["status"] == QUEUED and run["run_config"] == {"x": 1}
    assert headers["Location"] == f"/api/runs/{run['run_id']}"
    assert run["origin"]["kind"] == "manual" and run["origin"]["via"] == "api"
    assert run["origin"]["peer"] == "127.0.0.1"

    status, _, page = api.request("GET", "/api/runs")
    assert status == 200 and [r["run_id"] for r in page["items"]] == [run["run_id"]]
    assert page["next"] is None

    status, _, one = api.request("GET", f"/api/runs/{run['run_id'][:8]}")  # a prefix
    assert status == 200 and one["run_id"] == run["run_id"]
    assert [e["status"] for e in one["events"]] == [QUEUED]

    api.storage.append_logs(
        [LogLine(run["run_id"], time.time(), "stdout", f"line {i}") for i in range(5)]
    )
    status, _, logs = api.request("GET", f"/api/runs/{run['run_id']}/logs?limit=3")
    assert [ln["text"] for ln in logs["items"]] == ["line 0", "line 1", "line 2"]
    assert logs["next"] == logs["items"][-1]["seq"]  # not final: poll on from here
    status, _, logs = api.request("GET", f"/api/runs/{run['run_id']}/logs?after={logs['next']}")
    assert [ln["text"] for ln in logs["items"]] == ["line 3", "line 4"]
    assert logs["next"] is not None  # still QUEUED: more may come

    status, _, canceled = api.request("POST", f"/api/runs/{run['run_id']}/cancel", {})
    assert status == 200 and canceled["status"] == CANCELED
    status, _, logs = api.request("GET", f"/api/runs/{run['run_id']}/logs?after=5")
    assert logs == {"items": [], "next": None, "run_id": run["run_id"], "status": CANCELED}
    status, _, again = api.request("POST", f"/api/runs/{run['run_id']}/cancel", {})
    assert status == 409 and again["error"]["type"] == "Conflict"


def test_run_list_pages_newest_first_and_filters(api: Served):
    runs = add_runs(api.storage, 120)
    add_runs(api.storage, 3, job="slow")
    seen: List[str] = []
    path = "/api/runs?job=hello&limit=50"
    while True:
        status, _, page = api.request("GET", path)
        assert status == 200
        seen += [r["run_id"] for r in page["items"]]
        if page["next"] is None:
            break
        path = f"/api/runs?job=hello&limit=50&before={page['next']}"
    assert seen == [r.run_id for r in reversed(runs)]
    # a page past 100 items is built and encoded in a worker thread: the same answer
    status, _, page = api.request("GET", "/api/runs?job=hello&limit=1000")
    assert [r["run_id"] for r in page["items"]] == seen and page["next"] is None
    api.storage.update_run(runs[0].run_id, status="FAILURE", error="boom", traceback="tb")
    status, _, page = api.request("GET", "/api/runs?status=failure,canceled")
    assert [r["run_id"] for r in page["items"]] == [runs[0].run_id]
    assert "traceback" not in page["items"][0] and page["items"][0]["has_traceback"]


@pytest.mark.parametrize(
    "method, path, body, status, kind",
    [
        ("GET", "/api/runs/doesnotexist", None, 404, "NotFound"),
        ("GET", "/api/runs?status=DONE", None, 400, "InvalidRequest"),
        ("GET", "/api/runs?limit=0", None, 400, "InvalidRequest"),
        ("GET", "/api/runs?limit=many", None, 400, "InvalidRequest"),
        ("GET", "/api/runs?before=garbage!", None, 400, "InvalidRequest"),
        ("GET", "/api/nothing", None, 404, "NotFound"),
        ("DELETE", "/api/runs", None, 405, "MethodNotAllowed"),
        ("GET", "/api/runs/x/cancel", None, 405, "MethodNotAllowed"),
        ("POST", "/api/runs", {"location": "a"}, 400, "InvalidRequest"),
        ("POST", "/api/runs", {"location": "a", "job": "nope"}, 404, "NotFound"),
        (
            "POST",
            "/api/runs",
            {"location": "a", "job": "hello", "run_config": [1]},
            400,
            "InvalidRequest",
        ),
        (
            "POST",
            "/api/runs",
            {"location": "a", "job": "hello", "tags": {"k": 1}},
            400,
            "InvalidRequest",
        ),
        ("POST", "/api/schedules/nope/start", {}, 404, "NotFound"),
        ("POST", "/api/locations/nope/reload", {}, 404, "NotFound"),
        # a key the endpoint does not take is refused, never ignored
        ("POST", "/api/runs", {"location": "a", "job": "hello", "extra": 1}, 400, "InvalidRequest"),
        ("POST", "/api/schedules/nightly/start", {"extra": 1}, 400, "InvalidRequest"),
        ("POST", "/api/locations/a/reload", {"extra": 1}, 400, "InvalidRequest"),
        # ticks of a schedule or sensor nobody defines nor keeps state for: as the CLI says
        ("GET", "/api/schedules/nope/ticks", None, 404, "NotFound"),
        ("GET", "/api/sensors/a:nope/ticks", None, 404, "NotFound"),
    ],
)
def test_errors_are_json_with_their_status(api: Served, method, path, body, status, kind):
    got, headers, answer = api.request(method, path, body)
    assert got == status, answer
    assert headers["Content-Type"] == "application/json"
    assert answer["error"]["type"] == kind and answer["error"]["message"]
    if status == 405:
        assert "Allow" in headers


def test_writes_must_be_json_and_same_origin(api: Served):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, answer = api.request("POST", "/api/runs", raw=b"location=a&job=hello", headers=form)
    assert status == 415 and answer["error"]["type"] == "UnsupportedMediaType"
    status, _, answer = api.request(
        "POST", "/api/runs", raw=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and "not valid JSON" in answer["error"]["message"]
    evil = {"Origin": "http://evil.example"}
    status, _, answer = api.request("POST", "/api/runs", {"location": "a", "job": "hello"}, evil)
    assert status == 403
    same = {"Origin": f"http://127.0.0.1:{api.port}"}
    status, _, answer = api.request("POST", "/api/runs", {"location": "a", "job": "hello"}, same)
    assert status == 403 and "token" in answer["error"]["message"]  # a browser's: no token
    session = "s" * 32
    page = {**same, "Cookie": f"{COOKIE}={session}"}
    wrong = {**page, "X-WSM-CSRF": csrf_token(new_secret(), session)}
    status, _, _ = api.request("POST", "/api/runs", {"location": "a", "job": "hello"}, wrong)
    assert status == 403
    cross = {**page, "X-WSM-CSRF": csrf_token(api.context.secret, session)}
    cross["Sec-Fetch-Site"] = "cross-site"
    status, _, _ = api.request("POST", "/api/runs", {"location": "a", "job": "hello"}, cross)
    assert status == 403
    right = {**page, "X-WSM-CSRF": csrf_token(api.context.secret, session)}
    right["Sec-Fetch-Site"] = "same-origin"
    status, _, _ = api.request("POST", "/api/runs", {"location": "a", "job": "hello"}, right)
    assert status == 201
    status, _, _ = api.request("POST", "/api/runs", {"location": "a", "job": "hello"})
    assert status == 201  # a program (no browser marks) from loopback
    assert len(api.coordinator.submitted) == 2  # none of the refused ones got through


def test_a_body_over_the_limit_is_413(api: Served):
    big = {"location": "a", "job": "hello", "run_config": {"x": "y" * 70000}}
    status = _raw_status(api, json.dumps(big).encode())
    assert status == 413
    assert api.coordinator.submitted == []


def _raw_status(api: Served, body: bytes):
    with socket.create_connection((api.host, api.port), timeout=DEADLINE) as sock:
        sock.sendall(
            b"POST /api/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, answer = data.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower()  # the API's shape, also for a refusal
    assert json.loads(answer)["error"]["type"] == "PayloadTooLarge"
    return int(data.split(b" ")[1])


def test_expect_100_continue_gets_its_interim_answer(api: Served):
    body = json.dumps({"location": "a", "job": "hello", "run_config": {"p": "q" * 2000}}).encode()
    with socket.create_connection((api.host, api.port), timeout=DEADLINE) as sock:
        sock.sendall(
            b"POST /api/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        first = sock.recv(100)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        rest = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    assert b"HTTP/1.1 201 " in first + rest


def test_schedules_sensors_and_locations(api: Served):
    status, _, page = api.request("GET", "/api/schedules")
    assert status == 200 and [i["name"] for i in page["items"]] == ["nightly"]
    assert page["next"] is None and page["daemon"] is True
    status, _, item = api.request("POST", "/api/schedules/a:nightly/start", {})
    assert status == 200 and item["status"] == "RUNNING"
    status, _, item = api.request("POST", "/api/sensors/watch/stop", {})
    assert status == 200 and item["status"] == "STOPPED"
    api.storage.record_tick(
        TickRecord("a", "watch", "sensor", time.time(), status="skipped", skip_reason="nothing new")
    )
    status, _, page = api.request("GET", "/api/sensors/a:watch/ticks")
    assert [t["skip_reason"] for t in page["items"]] == ["nothing new"]
    status, _, page = api.request("GET", "/api/locations")
    assert [loc["name"] for loc in page["items"]] == ["a"]
    status, _, result = api.request("POST", "/api/locations/a/reload", {})
    assert status == 200 and api.reloaded == [["a"]]


def test_daemon_off(tmp_path):
    served = Served(tmp_path, daemon=False)
    try:
        status, _, page = served.request("GET", "/api/sensors")
        assert status == 200 and page == {"items": [], "next": None, "daemon": False}
        status, _, answer = served.request("POST", "/api/sensors/watch/start", {})
        assert status == 409 and answer["error"]["type"] == "DaemonOff"
    finally:
        served.close()


@pytest.mark.parametrize(
    "peer, loopback",
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.2", False),
        ("::ffff:192.0.2.2", False),
        ("fd00::2", False),
        (None, False),
        ("garbage", False),
    ],
)
def test_is_loopback(peer, loopback):
    assert is_loopback(peer) is loopback


def test_peer_check_with_and_without_a_token():
    api = Api(ApiSources(storage=lambda: None, token=None))
    write = dict(
        method="POST", path="runs", body=b"{}", headers=(("content-type", "application/json"),)
    )
    answer = asyncio.run(api.handle(ApiRequest(peer="192.0.2.9", **write)))  # type: ignore[arg-type]
    assert answer.status == 403
    api.sources.token = "s3cret"
    answer = asyncio.run(api.handle(ApiRequest(peer="192.0.2.9", **write)))  # type: ignore[arg-type]
    assert answer.status == 401
    authorized = dict(write, headers=write["headers"] + (("authorization", "Bearer s3cret"),))
    answer = asyncio.run(api.handle(ApiRequest(peer="192.0.2.9", **authorized)))  # type: ignore[arg-type]
    assert answer.status == 400  # past the check: the body lacks location and job


def _own_address() -> Optional[str]:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for word in out.split():
        if "." in word and not word.startswith("127."):
            return word
    return None


def test_a_write_from_a_non_loopback_peer_needs_the_token(tmp_path):
    host = _own_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    served = Served(tmp_path, host=host)
    try:
        job = {"location": "a", "job": "hello"}
        status, _, answer = served.request("POST", "/api/runs", job)
        assert status == 403, answer
        assert "--api-token-env" in answer["error"]["message"]
        assert served.request("GET", "/api/runs")[0] == 200  # reads stay open
    finally:
        served.close()
    served = Served(tmp_path, host=host, token="tok-123")
    try:
        assert served.request("POST", "/api/runs", job)[0] == 401
        wrong = {"Authorization": "Bearer tok-124"}
        assert served.request("POST", "/api/runs", job, wrong)[0] == 401
        right = {"Authorization": "Bearer tok-123"}
        status, _, run = served.request("POST", "/api/runs", job, right)
        assert status == 201 and run["origin"]["peer"] == host
    finally:
        served.close()


def test_head_answers_like_get_without_a_body(api: Served):
    add_runs(api.storage, 3)
    conn = http.client.HTTPConnection(api.host, api.port, timeout=DEADLINE)
    try:
        conn.request("GET", "/api/runs")
        get = conn.getresponse()
        body = get.read()
        conn.request("HEAD", "/api/runs")
        head = conn.getresponse()
        assert head.read() == b"" and head.status == 200
        assert head.getheader("Content-Length") == str(len(body))
    finally:
        conn.close()


def test_probes_never_wait_for_a_slow_storage(tmp_path):
    """A storage read that takes seconds holds its own request only: /livez and /readyz
    answer at once meanwhile."""
    served = Served(tmp_path)
    release = threading.Event()

    class Slow:
        def __getattr__(self, name: str) -> Any:
            async def call(*args: Any, **kwargs: Any) -> Any:
                await asyncio.get_running_loop().run_in_executor(None, release.wait, DEADLINE)
                return await getattr(served.async_storage, name)(*args, **kwargs)

            return call

    served.context.api = Api(ApiSources(storage=lambda: Slow()))
    try:
        answer: Dict[str, Any] = {}
        reader = threading.Thread(
            target=lambda: answer.update(page=served.request("GET", "/api/runs"))
        )
        reader.start()
        time.sleep(0.2)  # the API request is waiting on the storage now
        for path in ("/livez", "/readyz", "/status"):
            started = time.monotonic()
            conn = http.client.HTTPConnection(served.host, served.port, timeout=DEADLINE)
            conn.request("GET", path)
            assert conn.getresponse().status == 200
            conn.close()
            assert time.monotonic() - started < DEADLINE / 2
        assert reader.is_alive()  # still waiting: the probes did not wait for it
        release.set()
        reader.join(DEADLINE)
        assert answer["page"][0] == 200
    finally:
        release.set()
        served.close()


def test_a_failing_part_is_a_json_500_and_the_api_goes_on(api: Served, caplog):
    def broken(kind=None):
        raise RuntimeError("a bug in the daemon")

    api.daemon.instigators = broken  # type: ignore[union-attr,method-assign]
    with caplog.at_level(logging.INFO):
        status, _, answer = api.request("GET", "/api/schedules")
    assert status == 500 and answer["error"]["type"] == "InternalError"
    assert api.request("GET", "/api/runs")[0] == 200
    _one_line_logged(caplog, "RuntimeError: a bug in the daemon")


def test_an_answer_that_cannot_be_encoded_is_a_json_500_with_one_line(api: Served, caplog):
    """A bug in an answer's shape shows when it is encoded, after the handler: still the
    API's JSON 500, one line in the log, no traceback on the console."""
    api.daemon.items = [{"kind": "schedule", ("not", "a", "key"): 1}]  # type: ignore
    with caplog.at_level(logging.INFO):
        status, headers, answer = api.request("GET", "/api/schedules")
    assert status == 500 and headers["Content-Type"] == "application/json"
    assert answer["error"]["type"] == "InternalError"
    _one_line_logged(caplog, "TypeError")
    assert api.request("GET", "/api/runs")[0] == 200


def _one_line_logged(caplog, words: str) -> None:
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(shown) == 1, [r.getMessage() for r in shown]
    assert words in shown[0].getMessage() and "\n" not in shown[0].getMessage()
    assert shown[0].exc_info is None and shown[0].levelno == logging.ERROR


def test_a_stored_nan_is_strict_json_and_an_ambiguous_prefix_is_409(api: Served):
    nan = RunRecord(
        "abcd" + "0" * 28,
        "a",
        "hello",
        run_config={"n": float("nan")},
        created_at=time.time() + 100,  # the newest: on the page of ?limit=1
    )
    api.storage.add_run(nan)
    api.storage.add_run(RunRecord("abcd" + "1" * 28, "a", "hello"))
    for path in ("/api/runs", "/api/runs?limit=1", f"/api/runs/{nan.run_id}"):
        conn = http.client.HTTPConnection(api.host, api.port, timeout=DEADLINE)
        conn.request("GET", path)
        text = conn.getresponse().read().decode()
        conn.close()
        assert "NaN" not in text.replace('"NaN"', ""), text
        assert '"n": "NaN"' in text, text
    for method, path in (
        ("GET", "/api/runs/abcd"),
        ("GET", "/api/runs/abcd/logs"),
        ("POST", "/api/runs/abcd/cancel"),
    ):
        status, _, answer = api.request(method, path, {} if method == "POST" else None)
        assert status == 409 and answer["error"]["type"] == "Ambiguous", answer
        assert "names several runs" in answer["error"]["message"]
