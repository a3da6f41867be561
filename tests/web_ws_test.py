"""`GET /api/events/ws` (web/ws.py): the live events over a WebSocket, on the real web server
(web/server.py + web/app.py, behind web/guard.py) over real sockets with the real run
storage, and against a real `wsm up` (`kill -9`, a run's lines, `wsm down` with 50 open
sockets); and seven tabs of the page in one headless Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from e2e import WsmUp, wait_for
from http_server_test import Harness, Views, loc
from web_events_test import LIVEZ_TIMER, SseClient, keep_writing, launch, up_workspace
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from workspace_manager.storage.records import LogLine, RunRecord
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.storage.writer import AsyncStorage
from workspace_manager.web.events import EventHub

WAIT = 10.0


class Served:
    """The real WebServer and app (Harness) with a hub and a SQLite run storage whose
    committed lines are published, as the manager wires them."""

    def __init__(self, tmp_path: Path, views: Optional[Views] = None, **kwargs: Any) -> None:
        from workspace_manager.http.api import Api, ApiSources

        self.holder: Dict[str, Any] = {}
        self.hub = EventHub()
        api = Api(ApiSources(storage=lambda: self.holder.get("store")))
        context = {"hub": self.hub, "api": api}
        self.h = Harness(views or Views(), context=context, **kwargs)
        self.port = self.h.port

        async def open_store() -> AsyncStorage:
            store = AsyncStorage(SqliteStorage(tmp_path / "runs.db"))
            store.on_logs = self.hub.publish_logs
            return store

        self.store: AsyncStorage = self.h.run(open_store())
        self.holder["store"] = self.store

    def call(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return self.h.run(run())

    def url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/api/events/ws{query}"

    def wait_for(self, fn: Any, what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not self.call(fn):
            assert time.monotonic() < deadline, what
            time.sleep(0.01)

    def close(self) -> None:
        try:
            self.call(self.hub.close)
            self.call(self.store.close)
        finally:
            self.h.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    try:
        yield s
    finally:
        s.close()


def open_ws(url: str, **kwargs: Any) -> ClientConnection:
    """A connected client outside a `with` block (close() it)."""
    return connect(url, open_timeout=WAIT, **kwargs).__enter__()


def recv(sock: ClientConnection, timeout: float = WAIT) -> Dict[str, Any]:
    message = sock.recv(timeout=timeout)
    assert isinstance(message, str)  # a text message
    return json.loads(message)


def recv_kind(sock: ClientConnection, n: int, kind: str) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    while len(out) < n:
        event = recv(sock)
        if event["event"] == kind:
            out.append(event)
    return out


def refused(url: str, origin: Optional[str] = None) -> Any:
    """The HTTP answer to a refused handshake (status, JSON body)."""
    with pytest.raises(InvalidStatus) as info:
        with connect(url, origin=origin, open_timeout=WAIT):  # type: ignore[arg-type]
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body or b"{}")


# -- the endpoint on the real server ---------------------------------------------------------------


def test_one_json_message_per_event_with_kinds_and_increasing_ids(served: Served) -> None:
    """Each event is one text message {"id", "event", "data"}; `kinds` filters as for SSE;
    ids increase; an event's data is the published dict."""
    with connect(served.url("?kinds=location,run"), open_timeout=WAIT) as sock:
        served.wait_for(lambda: served.hub.subscribers == 1, "not subscribed")
        served.call(served.hub.publish, "tick", {"tick_id": "t"})  # not asked for
        served.call(served.hub.publish, "location", {"name": "a", "state": "ready"})
        served.call(served.hub.publish, "run", {"event": "queued", "run_id": "r1"})
        served.call(served.hub.publish, "location", {"name": "a", "state": "crashed", "x": 1.5})
        got = [recv(sock) for _ in range(3)]
    assert [e["event"] for e in got] == ["location", "run", "location"]
    assert got[0]["data"] == {"name": "a", "state": "ready"}
    assert got[2]["data"] == {"name": "a", "state": "crashed", "x": 1.5}
    assert sorted(got[0]) == ["data", "event", "id"]
    ids = [e["id"] for e in got]
    assert ids == sorted(ids) and len(set(ids)) == 3
    served.wait_for(lambda: served.hub.subscribers == 0, "the subscription outlived its client")


def test_bad_requests_are_refused_handshakes_in_the_apis_json_shape(served: Served) -> None:
    status, body = refused(served.url("?kinds=nope"))
    assert status == 400 and "unknown event kind 'nope'" in body["error"]["message"]
    status, body = refused(served.url("?kinds=log"))
    assert status == 400 and "run=RUN_ID" in body["error"]["message"]
    status, body = refused(served.url("?run=abc&after=x"))
    assert status == 400 and body["error"]["type"] == "InvalidRequest"
    status, body = refused(served.url("?run=" + "f" * 32))
    assert status == 404 and body["error"]["type"] == "NotFound"
    assert served.call(lambda: served.hub.subscribers) == 0


def test_a_foreign_origin_is_refused_and_the_own_origin_or_none_is_served(
    served: Served,
) -> None:
    """Cross-site WebSocket hijacking: a browser lets any site's page open a WebSocket here,
    so a handshake whose Origin is not this host's is refused (403), as is an opaque
    origin; the page's own Origin, and a program without one, are served."""
    for origin in ("http://evil.example", f"http://127.0.0.1:{served.port + 1}", "null"):
        status, body = refused(served.url(), origin=origin)
        assert status == 403 and body["error"]["type"] == "Forbidden", origin
    # Host 127.0.0.1:PORT and the same Origin: the page's own
    with connect(served.url(), origin=f"http://127.0.0.1:{served.port}", open_timeout=WAIT):  # type: ignore[arg-type]
        pass
    with connect(served.url(), open_timeout=WAIT):
        pass
    served.wait_for(lambda: served.hub.subscribers == 0, "subscriptions left behind")


def test_run_log_resumes_after_seq_without_gaps_or_duplicates(served: Served) -> None:
    """run=ID&after=SEQ while the run keeps writing: SEQ+1, SEQ+2, ... exactly once each,
    the stored ones first, then the live ones (web/feed.py, shared with SSE)."""
    store = served.store
    run = served.call(store.add_run, RunRecord(run_id=uuid.uuid4().hex, location="l", job="j"))
    total = 3000
    future = keep_writing(served.h.loop, store, run.run_id, total)
    with connect(served.url(f"?kinds=run&run={run.run_id[:12]}&after=200")) as sock:
        got = recv_kind(sock, total - 200, "log")
    future.result(30)
    assert [e["data"]["seq"] for e in got] == list(range(201, total + 1))
    assert [e["data"]["text"] for e in got[:2]] == ["line 201", "line 202"]
    ids = [e["id"] for e in got]
    assert ids == sorted(ids)


def test_a_run_socket_that_falls_behind_gets_resync_then_every_dropped_line(
    tmp_path: Path,
) -> None:
    """A queue of 10 events and batches of 500 committed lines: the socket gets a `resync`,
    then the dropped lines from the storage; every line once, in order."""
    s = Served(tmp_path)
    try:
        s.hub.queue_events = 10
        run = s.call(s.store.add_run, RunRecord(run_id=uuid.uuid4().hex, location="l", job="j"))
        with connect(s.url(f"?run={run.run_id}&after=0")) as sock:
            s.wait_for(lambda: s.hub.subscribers == 1, "not subscribed")

            async def write() -> None:
                for i in range(2000):
                    s.store.log(LogLine(run.run_id, time.time(), "stdout", f"line {i + 1}"))
                await s.store.flush_logs()

            s.call(write)
            got: List[Dict[str, Any]] = []
            while not [e for e in got if e["event"] == "log" and e["data"]["seq"] == 2000]:
                got.append(recv(sock))
        assert any(e["event"] == "resync" for e in got)
        assert [e["data"]["seq"] for e in got if e["event"] == "log"] == list(range(1, 2001))
    finally:
        s.close()


def test_sse_and_websocket_streams_share_one_cap(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAX_STREAMS counts both transports: with 2 SSE streams and 1 WebSocket open (cap 3),
    a 4th of either is a 503; one leaving frees a place."""
    from workspace_manager.web import feed

    monkeypatch.setattr(feed, "MAX_STREAMS", 3)
    sse = [SseClient(served.port, "/api/events") for _ in range(2)]
    assert [c.resp.status for c in sse] == [200, 200]
    sock = open_ws(served.url())
    status, body = refused(served.url())
    assert status == 503 and "3 event streams are open" in body["error"]["message"]
    extra = SseClient(served.port, "/api/events")
    assert extra.resp.status == 503
    extra.close()
    sock.close()
    served.wait_for(lambda: served.hub.subscribers == 2, "the socket's stream is still open")
    with connect(served.url(), open_timeout=WAIT):
        pass
    for c in sse:
        c.close()


def test_upgraded_connections_leave_the_guards_slots_and_its_timers(tmp_path: Path) -> None:
    """An upgraded connection is out of the guard's slots (len(guard) 0 while 20 sockets are
    open; a stream is capped by the app instead) and its head deadline (0.5 s here) no longer
    applies: sockets idle for 1.5 s still get events. When the clients leave, nothing is
    left: no slot, no upgraded connection, no subscription, no task."""
    s = Served(tmp_path, request_timeout=0.5)
    try:
        guard = s.h.server.guard
        state = s.h.server._state
        socks = [open_ws(s.url()) for _ in range(20)]
        s.wait_for(lambda: s.hub.subscribers == 20, "20 subscribers")
        assert s.call(lambda: (len(guard), len(guard.upgraded))) == (0, 20)
        time.sleep(1.5)  # past the head deadline a waiting connection would have
        s.call(s.hub.publish, "location", {"name": "a", "state": "ready"})
        assert [recv(sock)["data"]["name"] for sock in socks] == ["a"] * 20
        for sock in socks:
            sock.close()
        s.wait_for(
            lambda: (
                (len(guard), len(guard.upgraded), s.hub.subscribers, len(state.tasks))
                == (0, 0, 0, 0)
            ),
            "something of the closed sockets is left",
        )
    finally:
        s.close()


def test_the_guard_caps_upgraded_connections(tmp_path: Path) -> None:
    """Beyond GuardLimits.max_upgraded open WebSockets, a handshake is a 503 before any
    endpoint runs (the app's stream cap is the first bound; this one holds for any path)."""
    import dataclasses

    s = Served(tmp_path)
    try:
        guard = s.h.server.guard
        guard.limits = dataclasses.replace(guard.limits, max_upgraded=3)
        socks = [open_ws(s.url()) for _ in range(3)]
        with pytest.raises(InvalidStatus) as info:
            open_ws(s.url())
        assert info.value.response.status_code == 503
        for sock in socks:
            sock.close()
        s.wait_for(lambda: len(guard.upgraded) == 0, "upgraded connections left")
        with connect(s.url(), open_timeout=WAIT):
            pass
    finally:
        s.close()


def test_hub_close_ends_every_socket_with_going_away(served: Served) -> None:
    socks = [open_ws(served.url()) for _ in range(5)]
    served.wait_for(lambda: served.hub.subscribers == 5, "5 subscribers")
    served.call(served.hub.close)
    for sock in socks:
        with pytest.raises(ConnectionClosed) as info:
            sock.recv(timeout=WAIT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        sock.close()
    served.wait_for(lambda: len(served.h.server.guard.upgraded) == 0, "upgraded left")


def test_a_client_that_reads_nothing_is_dropped_and_costs_a_bounded_queue(
    tmp_path: Path,
) -> None:
    """A socket whose client reads nothing: its queue overflows into a resync (bounded), the
    server's writes pause, and the guard's write deadline (0.5 s here) drops it."""
    import socket as socketlib

    s = Served(tmp_path, write_timeout=0.5)
    try:
        raw = socketlib.create_connection(("127.0.0.1", s.port), timeout=WAIT)
        raw.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_RCVBUF, 4096)
        raw.sendall(
            b"GET /api/events/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        s.wait_for(lambda: s.hub.subscribers == 1, "not subscribed")
        big = {"name": "x" * 60000, "state": "ready"}
        deadline = time.monotonic() + WAIT
        while s.call(lambda: len(s.h.server.guard.upgraded)):
            assert time.monotonic() < deadline, "a client that reads nothing was never dropped"
            s.call(lambda: [s.hub.publish("location", big) for _ in range(50)])
            time.sleep(0.1)
        s.wait_for(lambda: s.hub.subscribers == 0, "its subscription is left")
        raw.close()
    finally:
        s.close()


def test_websockets_is_not_imported_until_the_first_upgrade(tmp_path: Path) -> None:
    """The manager's start path does not pay for the WebSocket library: the server starts
    and answers without importing `websockets`; the first handshake imports it."""
    script = f"""
import asyncio, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from http_server_test import Harness, Views, loc
from workspace_manager.web.events import EventHub
h = Harness(Views(), context={{"hub": EventHub()}})
assert h.get("/livez")[0] == 200
before = "websockets" in sys.modules
from websockets.sync.client import connect
with connect(f"ws://127.0.0.1:{{h.port}}/api/events/ws", open_timeout=10):
    pass
h.run(h.context.hub.close() or asyncio.sleep(0))
h.close()
print(before)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# -- seven tabs in one browser ---------------------------------------------------------------------


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Headless Chromium as the browser tests launch it (tests/browser/browser_support.py):
    skipped where neither it nor CI is there; under CI (CI=true) a missing browser fails."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
    from browser_support import chromium_or_skip, launch_chromium

    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            yield browser
        finally:
            browser.close()


def test_seven_tabs_of_the_page_in_one_browser_all_go_live_over_websockets(
    chromium: Any, tmp_path: Path
) -> None:
    """Seven tabs of the page (tests/browser/browser_pages_test.py has them on a real `wsm
    up`): here on the server's parts, so that what they hold is seen: seven upgraded
    connections, none in the guard's slots; each tab shows a location's change in place;
    closing them leaves no stream and no upgraded connection behind."""
    s = Served(tmp_path, views=Views(loc("alpha")))
    csp: List[str] = []
    try:
        context = chromium.new_context()
        pages = []
        for tab in range(1, 8):
            page = context.new_page()
            page.on(
                "console",
                lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None,
            )
            try:
                page.goto(f"http://127.0.0.1:{s.port}/", timeout=10_000)
                page.wait_for_function("document.body.dataset.live === 'open'", timeout=10_000)
            except Exception as exc:
                raise AssertionError(f"tab {tab} did not load and go live: {exc}") from None
            assert page.evaluate("window.wsmLive.transport()") == "websocket"
            pages.append(page)
        s.wait_for(lambda: s.hub.subscribers == 7, "7 subscribers")
        assert s.call(lambda: len(s.h.server.guard.upgraded)) == 7
        s.call(s.hub.publish, "location", {"name": "alpha", "state": "crashed", "restarts": 3})
        for page in pages:
            page.wait_for_selector('tr[data-location="alpha"][data-state="crashed"]', timeout=5_000)
        assert csp == []
        context.close()
        s.wait_for(
            lambda: (s.hub.subscribers, len(s.h.server.guard.upgraded)) == (0, 0),
            "the closed tabs' streams are left",
        )
    finally:
        s.close()


# -- a real `wsm up` ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_wsm_up_over_websockets_kill_lines_down_and_origin(ws: Any) -> None:
    """Against `wsm up --health 127.0.0.1:0`: `kill -9` of a location reaches an open socket
    as a non-ready `location` message within a second; a run's lines resume with `after`
    without a gap or a duplicate; a foreign Origin is refused; 50 open sockets are all ended
    by `wsm down` and the manager's whole process tree is gone."""
    up_workspace(ws)
    with WsmUp(ws) as up:
        pid = up.wait_state("team", "ready")["pid"]
        up.track()
        port = up.port
        assert port is not None
        base = f"ws://127.0.0.1:{port}/api/events/ws"

        status, body = refused(base, origin="http://evil.example")
        assert status == 403, body

        with connect(base + "?kinds=location", open_timeout=WAIT) as sock:
            time.sleep(0.2)  # subscribed once the handshake is answered; margin for the loop
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            event = recv(sock, timeout=5)
            latency = time.monotonic() - killed
            print(f"\nkill -9 -> location message on the WebSocket: {latency * 1000:.1f} ms")
            assert event["event"] == "location" and event["data"]["name"] == "team"
            assert event["data"]["state"] != "ready"
            assert latency < 1.0
        up.wait_state("team", "ready")
        up.track()

        run_id = launch(ws, "talk", {"lines": 2000, "pause": 0.05})
        first = open_ws(f"{base}?kinds=run&run={run_id}&after=0")
        got: List[Dict[str, Any]] = []
        received: List[float] = []

        def read_first() -> None:
            while len(got) < 2001:
                got.extend(recv_kind(first, 1, "log"))
                received.append(time.time())

        reader = threading.Thread(target=read_first)
        reader.start()
        wait_for(lambda: len(got) >= 500 or not reader.is_alive(), 60, "500 lines")
        with connect(f"{base}?kinds=log&run={run_id}&after=500", open_timeout=WAIT) as second:
            rest = recv_kind(second, 1501, "log")
        reader.join(60)
        first.close()
        assert [e["data"]["seq"] for e in got] == list(range(1, 2002))
        assert [e["data"] for e in rest] == [e["data"] for e in got[500:]]
        lag = sorted(r - e["data"]["time"] for r, e in zip(received, got))
        print(
            f"log line, from the manager reading it to the WebSocket client: "
            f"p50 {lag[len(lag) // 2] * 1000:.1f} ms, p99 {lag[len(lag) * 99 // 100] * 1000:.1f} ms"
        )
        up.track()

        # 50 sockets, 25 following a run of 5,000 lines: /livez is timed from another
        # process meanwhile (this one's 50 reader threads share one GIL)
        run_id = launch(ws, "talk", {"lines": 5000})
        paths = [base] * 25 + [f"{base}?run={run_id}&after=0"] * 25
        socks = [open_ws(path) for path in paths]
        ended: List[int] = []
        seen: List[List[Dict[str, Any]]] = [[] for _ in socks]

        def drain(i: int) -> None:
            try:
                while True:
                    seen[i].append(json.loads(socks[i].recv(timeout=60)))
            except ConnectionClosed:
                ended.append(1)
            except Exception as exc:  # said in the assertion below
                errors.append(f"socket {i}: {type(exc).__name__}: {exc}")

        errors: List[str] = []
        readers = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(50)]
        for t in readers:
            t.start()
        livez = sorted(
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", LIVEZ_TIMER, str(port)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                ).stdout
            )
        )
        print(
            f"/livez with 50 open WebSockets, 25 following a run's 5,000 lines: "
            f"p50 {livez[50] * 1000:.1f} ms, p99 {livez[99] * 1000:.1f} ms"
        )

        def all_lines() -> bool:  # the run may end before a socket opens: count its lines
            return all(
                any(e["event"] == "resync" for e in x)
                or sum(1 for e in x if e["event"] == "log") >= 5001
                for x in seen[25:]
            )

        wait_for(all_lines, 60, "every line of the run on the sockets")
        up.track()
        started = time.monotonic()
        down = ws.run("down", timeout=60)
        assert down.returncode == 0, down.stderr
        for t in readers:
            t.join(30)
        assert len(ended) == 50, f"{50 - len(ended)} sockets not ended by wsm down: {errors}"
        print(f"wsm down with 50 open WebSockets: all ended in {time.monotonic() - started:.2f} s")
        for events in seen[25:]:  # every line once, in order (or a resync where it fell behind)
            if not any(e["event"] == "resync" for e in events):
                seqs = [e["data"]["seq"] for e in events if e["event"] == "log"]
                wrong = next((i for i, seq in enumerate(seqs) if seq != i + 1), None)
                assert wrong is None, (
                    f"line {wrong + 1} is seq {seqs[wrong]}: {seqs[wrong - 3 : wrong + 3]}"
                )
                assert len(seqs) >= 5001
        for sock in socks:
            sock.close()
        assert up.proc.wait(30) == 0
    # WsmUp's exit: every process it started is gone
