"""The health endpoint over real sockets: the real web server (web/server.py, uvicorn behind
its guard, serving web/app.py) on its own event loop in a background thread, queried with
http.client and raw sockets."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import statistics
import threading
import time
from typing import Callable, Iterator, List, Optional

import pytest

from workspace_manager.http.view import LocationView, ManagerView
from workspace_manager.web.app import build_app
from workspace_manager.web.context import WebContext
from workspace_manager.web.server import WebServer

DEADLINE = 10.0  # seconds: an upper bound for anything that should take milliseconds


class Harness:
    """A WebServer running on an event loop in a background thread; `context` fields
    (exposition, api, hub, ...) go to its WebContext, the rest to the WebServer."""

    def __init__(
        self,
        view: Callable[[], ManagerView],
        host: str = "127.0.0.1",
        context: Optional[dict] = None,
        **kwargs,
    ):
        self.loop = asyncio.new_event_loop()
        self.loop_errors: List[dict] = []  # what asyncio would log as "Exception in callback"
        self.loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.context = WebContext(view=view, **(context or {}))
        self.server = WebServer(host, 0, build_app(self.context), **kwargs)
        self.host, self.port = self.run(self.server.start())

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(DEADLINE)

    def close(self) -> None:
        try:
            self.run(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(DEADLINE)
            assert not self.thread.is_alive()
            self.loop.close()
        assert self.loop_errors == []

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)

    def get(self, path: str, method: str = "GET", headers: Optional[dict] = None):
        conn = self.connect()
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read().decode()
        finally:
            conn.close()

    def raw(self, data: bytes = b"") -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
        if data:
            sock.sendall(data)
        return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or DEADLINE passes)."""
    chunks: List[bytes] = []
    sock.settimeout(DEADLINE)
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def loc(name: str, state: str = "ready", **kw) -> LocationView:
    return LocationView(name=name, state=state, **kw)


class Views:
    """A mutable snapshot holder, as the manager would keep one."""

    def __init__(self, *locations: LocationView, alive: bool = True) -> None:
        self.current = ManagerView(alive=alive, started_at=time.time() - 42.0, locations=locations)
        self.calls = 0

    def set(self, *locations: LocationView, alive: bool = True) -> None:
        self.current = ManagerView(alive, self.current.started_at, tuple(locations))

    def __call__(self) -> ManagerView:
        self.calls += 1
        return self.current


@pytest.fixture
def views() -> Views:
    return Views()


@pytest.fixture
def harness(views: Views) -> Iterator[Harness]:
    h = Harness(views, request_timeout=DEADLINE)
    yield h
    h.close()


# -- /livez, /healthz ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/livez", "/healthz"])
def test_livez_ok_while_alive_whatever_the_locations(harness: Harness, views: Views, path: str):
    views.set(loc("a", "failed", error="boom"), loc("b", "error", error="bad import"))
    status, headers, body = harness.get(path)
    assert (status, body) == (200, "ok")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/livez", "/healthz"])
def test_livez_fails_when_the_loop_is_not_alive(harness: Harness, views: Views, path: str):
    views.set(loc("a"), alive=False)
    status, _, body = harness.get(path)
    name = path.strip("/")
    assert status == 503
    assert body == (
        "[-]supervisor failed: the manager's supervision loop is not running\n"
        f"{name} check failed\n"
    )


def test_livez_verbose(harness: Harness):
    assert harness.get("/livez?verbose")[::2] == (200, "[+]supervisor ok\nlivez check passed\n")
    assert harness.get("/healthz?verbose")[::2] == (200, "[+]supervisor ok\nhealthz check passed\n")


# -- /readyz ------------------------------------------------------------------------------------


def test_readyz_all_ready(harness: Harness, views: Views):
    views.set(loc("a"), loc("b"))
    assert harness.get("/readyz")[::2] == (200, "ok")


def test_readyz_with_no_locations_is_ready(harness: Harness):
    assert harness.get("/readyz")[::2] == (200, "ok")
    assert harness.get("/readyz?verbose")[::2] == (200, "readyz check passed\n")


def test_readyz_names_the_locations_that_are_not_ready(harness: Harness, views: Views):
    views.set(
        loc("team_a"),
        loc("team_b", "starting"),
        loc("team_c", "error", error="ImportError: No module named 'pandas'"),
        loc("team_d", "backoff", error="exited with code 1\nsecond line"),
    )
    expected = (
        "[+]team_a ok\n"
        "[-]team_b starting\n"
        "[-]team_c error: ImportError: No module named 'pandas'\n"
        "[-]team_d backoff: exited with code 1 second line\n"
        "readyz check failed\n"
    )
    for path in ("/readyz", "/readyz?verbose", "/readyz?verbose=1"):
        status, headers, body = harness.get(path)
        assert (status, body) == (503, expected), path
        assert headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("query", ["?verbose", "?verbose=1", "?verbose=true", "?x=1&verbose"])
def test_readyz_verbose_when_passing(harness: Harness, views: Views, query: str):
    views.set(loc("a"), loc("b"))
    assert harness.get("/readyz" + query)[::2] == (200, "[+]a ok\n[+]b ok\nreadyz check passed\n")


def test_readyz_verbose_0_is_terse(harness: Harness, views: Views):
    views.set(loc("a"))
    assert harness.get("/readyz?verbose=0")[::2] == (200, "ok")


def test_readyz_fails_when_the_loop_is_not_alive(harness: Harness, views: Views):
    views.set(loc("a"), alive=False)
    status, _, body = harness.get("/readyz")
    assert status == 503
    assert body.splitlines() == [
        "[-]supervisor failed: the manager's supervision loop is not running",
        "[+]a ok",
        "readyz check failed",
    ]


def test_readyz_location(harness: Harness, views: Views):
    views.set(
        loc("a"),
        loc("b", "failed", error="restarted 6 times in 60s"),
        loc("c", "building"),
        loc("d e"),
    )
    assert harness.get("/readyz/a")[::2] == (200, "ok")
    assert harness.get("/readyz/b")[::2] == (503, "failed: restarted 6 times in 60s\n")
    assert harness.get("/readyz/c")[::2] == (503, "building\n")
    assert harness.get("/readyz/d%20e")[::2] == (200, "ok")
    status, _, body = harness.get("/readyz/nope")
    assert status == 404 and "nope" in body
    assert harness.get("/readyz/")[0] == 404


# -- /status ------------------------------------------------------------------------------------


def test_status_json(harness: Harness, views: Views):
    views.set(
        LocationView(
            name="team_a",
            state="ready",
            pid=1234,
            restarts=2,
            python="3.11.2",
            environment="3f2a9c1b",
            uptime_seconds=12.34567,
            rss_bytes=50_000_000,
        ),
        LocationView(
            name="team_b",
            state="error",
            python="3.9.18",
            environment="/usr/bin/python3",
            error="ZeroDivisionError: division by zero",
            traceback="Traceback (most recent call last):\n  ...\n",
            transitions=(
                {"at": 1700000000.5, "from": None, "to": "starting", "reason": "start"},
                {"at": 1700000001.0, "from": "starting", "to": "error", "reason": "boom"},
            ),
        ),
    )
    status, headers, body = harness.get("/status")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    data = json.loads(body)
    assert set(data) == {
        "status",
        "alive",
        "pid",
        "workspace",
        "target",
        "uptime_seconds",
        "health",
        "locations",
        "daemon",  # None: this manager keeps no runs
    }
    assert data["daemon"] is None
    assert data["status"] == "degraded"
    assert data["alive"] is True
    assert 41.0 <= data["uptime_seconds"] < 42.0 + DEADLINE
    assert list(data["locations"]) == ["team_a", "team_b"]
    assert data["locations"]["team_a"] == {
        "state": "ready",
        "pid": 1234,
        "restarts": 2,
        "python": "3.11.2",
        "environment": "3f2a9c1b",
        "uptime_seconds": 12.346,
        "down_seconds": None,
        "rss_bytes": 50_000_000,
        "error": None,
        "traceback": None,
        "reload_error": None,
        "transitions": [],
        "log": None,
    }
    b = data["locations"]["team_b"]
    assert b["state"] == "error" and b["pid"] is None
    assert b["error"] == "ZeroDivisionError: division by zero"
    assert b["traceback"].startswith("Traceback")
    assert [(t["to"], t["reason"]) for t in b["transitions"]] == [
        ("starting", "start"),
        ("error", "boom"),
    ]
    assert b["transitions"][1] == {
        "at": 1700000001.0,
        "from": "starting",
        "to": "error",
        "reason": "boom",
    }


@pytest.mark.parametrize(
    "states, expected",
    [
        ((), "ok"),
        (("ready", "ready"), "ok"),
        (("ready", "starting"), "starting"),
        (("building", "starting"), "starting"),
        (("starting", "backoff"), "degraded"),
        (("ready", "failed"), "degraded"),
    ],
)
def test_status_overall(harness: Harness, views: Views, states, expected):
    views.set(*(loc(f"l{i}", s) for i, s in enumerate(states)))
    assert json.loads(harness.get("/status")[2])["status"] == expected


# -- HTTP mechanics -----------------------------------------------------------------------------


def test_unknown_path_is_404(harness: Harness):
    for path in ("/nope", "/livez/extra", "/readyzz", "/status/"):  # "/" is the page
        assert harness.get(path)[0] == 404, path


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_are_405(harness: Harness, method: str):
    status, headers, _ = harness.get("/readyz", method=method)
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/status", "/nope"])
def test_head_has_the_get_headers_and_no_body(harness: Harness, views: Views, path: str):
    views.set(loc("a", "starting"))
    get_status, get_headers, get_body = harness.get(path)
    head_status, head_headers, head_body = harness.get(path, method="HEAD")
    assert head_status == get_status
    assert head_body == ""
    assert head_headers["Content-Length"] == str(len(get_body.encode()))
    assert head_headers["Content-Type"] == get_headers["Content-Type"]


def test_keep_alive_serves_several_requests_on_one_connection(harness: Harness, views: Views):
    views.set(loc("a"), loc("b", "starting"))
    conn = harness.connect()
    try:
        answers = []
        local_ports = set()
        for path in ["/livez", "/readyz", "/status", "/nope", "/readyz/a", "/livez"]:
            conn.request("HEAD" if path == "/status" else "GET", path)
            resp = conn.getresponse()
            answers.append(resp.status)
            resp.read()
            assert resp.getheader("Connection") is None  # HTTP/1.1: kept open by default
            local_ports.add(conn.sock.getsockname()[1])
        assert answers == [200, 503, 200, 404, 200, 200]
        assert len(local_ports) == 1  # http.client would have reconnected otherwise
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(harness: Harness):
    sock = harness.raw(
        b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with sock:
        data = read_until_closed(sock)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"200", b"404", b"200"]


def test_connection_close_is_honoured(harness: Harness):
    with harness.raw(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") as sock:
        data = read_until_closed(sock)  # returns only because the server closed
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nconnection: close\r\n" in data.lower()
    assert data.endswith(b"\r\n\r\nok")


def test_http10_is_answered_and_closed(harness: Harness):
    """uvicorn closes every HTTP/1.0 connection, `Connection: keep-alive` or not: a 1.0
    client (old probes, `nc`) gets its one answer and the end of the stream."""
    for head in (
        b"GET /livez HTTP/1.0\r\n\r\n",
        b"GET /livez HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ):
        with harness.raw(head) as sock:
            data = read_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nok")


def test_absolute_form_target(harness: Harness):
    with harness.raw(
        b"GET http://example/readyz?verbose HTTP/1.1\r\nConnection: close\r\n\r\n"
    ) as s:
        assert read_until_closed(s).endswith(b"readyz check passed\n")


def test_a_small_request_body_is_skipped_and_the_connection_kept(harness: Harness):
    sock = harness.raw(
        b"POST /readyz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /livez HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    with sock:
        data = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 405 ")
    assert data.endswith(b"\r\n\r\nok")


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400),
        (b"hello\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /livez HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /livez HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
        (b"GET /livez HTTP/1.1\r\n" + b"X: " + b"y" * 8000 + b"\r\n" * 5, 431),
    ],
)
def test_bad_requests_get_an_error_and_a_closed_connection(
    harness: Harness, request_bytes: bytes, status: int
):
    if request_bytes.endswith(b"\r\n" * 5):  # headers that add up to more than 32 KiB
        request_bytes = b"GET /livez HTTP/1.1\r\n" + (b"X: " + b"y" * 8000 + b"\r\n") * 5 + b"\r\n"
    with harness.raw(request_bytes) as sock:
        data = read_until_closed(sock)
    assert data.startswith(f"HTTP/1.1 {status} ".encode()), data[:80]
    assert b"\r\nconnection: close\r\n" in data.lower()
    # and the server is fine
    assert harness.get("/livez")[::2] == (200, "ok")


def test_a_view_that_raises_gives_500_and_the_server_goes_on(views: Views):
    broken = {"on": True}

    def view() -> ManagerView:
        if broken["on"]:
            raise RuntimeError("bug in the manager")
        return views()

    h = Harness(view)
    try:
        assert h.get("/readyz")[0] == 500
        assert h.get("/status")[0] == 500
        broken["on"] = False
        assert h.get("/readyz")[::2] == (200, "ok")
    finally:
        h.close()


def test_metrics_come_from_the_context_exposition(views: Views):
    async def exposition(accept: str):
        return f"wsm_locations {len(views().locations)}\n".encode(), "text/plain; version=0.0.4"

    h = Harness(views, context={"exposition": exposition})
    try:
        views.set(loc("a"), loc("b"))
        status, headers, body = h.get("/metrics")
        assert (status, body) == (200, "wsm_locations 2\n")
        assert headers["Content-Type"] == "text/plain; version=0.0.4"
    finally:
        h.close()


# -- bad clients do not hold anything up --------------------------------------------------------


def test_stalled_clients_do_not_block_others(harness: Harness, views: Views):
    views.set(loc("a"))
    stalled = [
        harness.raw(b"GET /livez HTTP/1.1\r\nHost: x\r\n"),  # half a request
        harness.raw(b"G"),  # one byte
        harness.raw(),  # nothing at all
    ]
    garbage = harness.raw(b"\x00\x01\x02\x03garbage-without-newline")
    try:
        for _ in range(5):
            assert harness.get("/readyz")[::2] == (200, "ok")
            assert harness.get("/livez")[::2] == (200, "ok")
        for sock in stalled:  # still open: they were simply waiting, not served or dropped
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        assert read_until_closed(garbage).startswith(b"HTTP/1.1 400 ")  # refused at once
    finally:
        for sock in (*stalled, garbage):
            sock.close()


def test_slow_clients_are_dropped_after_the_read_timeout(views: Views):
    h = Harness(views, request_timeout=0.3)
    try:
        with h.raw(b"GET /livez HTTP/1.1\r\nHost: x\r\n") as half, h.raw() as idle:
            assert read_until_closed(half) == b""
            assert read_until_closed(idle) == b""
        # a keep-alive connection left idle is closed the same way
        conn = h.connect()
        conn.request("GET", "/livez")
        conn.getresponse().read()
        assert read_until_closed(conn.sock) == b""
        conn.close()
    finally:
        h.close()


def test_close_drops_open_connections_and_stops_listening(views: Views):
    h = Harness(views)
    stalled = h.raw(b"GET /livez HTTP/1.1\r\n")
    assert h.get("/livez")[0] == 200
    h.close()
    with stalled:
        assert read_until_closed(stalled) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", h.port), timeout=DEADLINE).close()


def test_a_location_stuck_starting_answers_at_once(views: Views, capsys):
    """The answer comes from the snapshot; measure how long it takes (not asserted)."""
    views.set(loc("stuck", "starting"), loc("fine"))
    h = Harness(views)
    try:
        conn = h.connect()
        timings = []
        for _ in range(200):
            start = time.perf_counter()
            conn.request("GET", "/readyz/stuck")
            resp = conn.getresponse()
            body = resp.read()
            timings.append(time.perf_counter() - start)
            assert (resp.status, body) == (503, b"starting\n")
        conn.close()
        timings.sort()
        with capsys.disabled():
            print(
                f"\n/readyz/stuck over keep-alive, 200 requests: median "
                f"{statistics.median(timings) * 1e3:.3f} ms, p99 {timings[197] * 1e3:.3f} ms"
            )
    finally:
        h.close()


# -- binding ------------------------------------------------------------------------------------


def test_empty_host_binds_all_interfaces(views: Views):
    h = Harness(views, host="")
    try:
        assert h.port > 0
        assert h.host in ("::", "0.0.0.0")
        assert h.get("/livez")[0] == 200  # reachable over IPv4 loopback
    finally:
        h.close()


def test_localhost_binds_every_address_on_one_port(views: Views):
    h = Harness(views, host="localhost")
    try:
        hosts = {host for host, _ in h.server.addresses}
        assert {port for _, port in h.server.addresses} == {h.port}
        assert "127.0.0.1" in hosts
        assert hosts <= {"127.0.0.1", "::1"}  # ::1 too where IPv6 is on
        assert h.get("/livez")[0] == 200
    finally:
        h.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_literal(views: Views):
    h = Harness(views, host="::1")
    try:
        assert h.host == "::1"
        conn = http.client.HTTPConnection("::1", h.port, timeout=DEADLINE)
        conn.request("GET", "/livez")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        h.close()


def test_a_closed_server_can_start_again(views: Views):
    h = Harness(views)
    try:
        h.run(h.server.close())
        host, port = h.run(h.server.start())
        h.port = port
        assert h.get("/livez")[::2] == (200, "ok")
    finally:
        h.close()


def test_livez_reads_only_aliveness_when_the_context_gives_it(views: Views):
    """At 100 locations a whole view costs ~5 ms: /livez must not build one per probe."""
    state = {"alive": True}
    h = Harness(views, context={"alive": lambda: state["alive"]})
    try:
        views.set(*(loc(f"l{i}") for i in range(100)))
        before = views.calls
        for _ in range(20):
            assert h.get("/livez")[::2] == (200, "ok")
        assert views.calls == before
        state["alive"] = False
        assert h.get("/livez")[0] == 503
        assert h.get("/readyz")[0] == 200  # /readyz still reads the locations
        assert views.calls > before
    finally:
        h.close()


def test_readyz_reads_the_readiness_view_and_reuses_an_answer_while_it_is_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With `readiness` given (the manager's), /readyz and /readyz/NAME never build the full
    view, and the answer is built again only when the readiness view's locations change
    (or the query does): at 1,000 locations each answer is 1,000 lines."""
    from workspace_manager.http import routes

    built: List[int] = []
    real = routes._location_line

    def counting(view_of_one: LocationView) -> str:
        built.append(1)
        return real(view_of_one)

    monkeypatch.setattr(routes, "_location_line", counting)
    full = Views(loc("a"), loc("b", "starting"))
    readiness = Views(loc("a"), loc("b", "starting"))
    h = Harness(full, context={"readiness": readiness})
    try:
        for _ in range(3):
            status, _, body = h.get("/readyz")
            assert (status, body) == (503, "[+]a ok\n[-]b starting\nreadyz check failed\n")
        assert len(built) == 2  # one answer made, sent three times
        assert h.get("/readyz?verbose")[0] == 503 and len(built) == 4  # another query
        assert h.get("/readyz/b")[2] == "starting\n"
        readiness.set(loc("a"), loc("b"))
        assert h.get("/readyz")[:3:2] == (200, "ok")
        assert h.get("/readyz?verbose")[2].endswith("readyz check passed\n")
        readiness.set(loc("a"), loc("b"), alive=False)
        assert h.get("/readyz")[0] == 503
        assert full.calls == 0 and readiness.calls == 8
    finally:
        h.close()
