"""The web page's live events: the hub (web/events.py) on its own, `GET /api/events`
(web/sse.py) on a real uvicorn server over a real socket with the real run storage, and the
events of a real manager (`kill -9` of a location, a run's log lines, `wsm down` with 50 open
streams)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import uuid
import weakref
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import psutil
import pytest
from e2e import WsmUp, wait_for

from workspace_manager.storage.records import LogLine, RunRecord
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.storage.writer import AsyncStorage
from workspace_manager.web.events import DEFAULT_KINDS, EventHub, Subscription

# -- the hub --------------------------------------------------------------------------------


def drain(sub: Subscription) -> List[Any]:
    out = []
    while True:
        event = sub.get_nowait()
        if event is None:
            return out
        out.append(event)


def test_hub_delivers_each_kind_to_its_subscribers_only() -> None:
    hub = EventHub()
    default = hub.subscribe()
    runs = hub.subscribe(["run"])
    one_run = hub.subscribe(["location"], run_id="r1")
    assert default.kinds == DEFAULT_KINDS
    hub.publish("location", {"name": "a", "state": "ready"})
    hub.publish("run", {"event": "queued", "run_id": "r1"})
    hub.publish("tick", {"tick_id": "t"})
    hub.publish("instigator", {"kind": "schedule", "name": "s", "status": "RUNNING"})
    hub.publish("log", {"run_id": "r1", "seq": 1, "text": "one"})
    hub.publish("log", {"run_id": "r2", "seq": 1, "text": "other run"})
    got = drain(default)
    assert [e.kind for e in got] == ["location", "run", "tick", "instigator"]
    assert [e.id for e in got] == sorted(e.id for e in got) and len({e.id for e in got}) == 4
    assert [e.kind for e in drain(runs)] == ["run"]
    assert [(e.kind, e.data.get("text")) for e in drain(one_run)] == [
        ("location", None),
        ("log", "one"),
    ]


def test_hub_refuses_unknown_kinds_and_log_without_a_run() -> None:
    hub = EventHub()
    with pytest.raises(ValueError, match="unknown event kind 'nope'"):
        hub.subscribe(["run", "nope"])
    with pytest.raises(ValueError, match="run=RUN_ID"):
        hub.subscribe(["log"])


def test_a_full_queue_is_cleared_and_gives_one_resync() -> None:
    hub = EventHub(queue_events=10)
    slow = hub.subscribe(["run"])
    fast = hub.subscribe(["run"])
    for i in range(25):
        hub.publish("run", {"n": i})
        if i % 5 == 4:
            drain(fast)
    got = drain(slow)
    # 10 fill it; the 11th clears it and is replaced by ONE resync; 12..20 follow; the
    # 21st clears it again
    assert [e.kind for e in got] == ["resync"] + ["run"] * 4
    assert [e.data.get("n") for e in got[1:]] == [21, 22, 23, 24]
    assert got[0].data == {} and got[0].id == got[1].id - 1  # where the reader must re-read
    assert slow.overflows == 2 and fast.overflows == 0
    assert hub.overflows == 2


def test_a_batch_of_lines_that_overflows_gives_one_resync() -> None:
    hub = EventHub(queue_events=10)
    sub = hub.subscribe(["run"], run_id="r")
    hub.publish_logs([LogLine("r", 0.0, "stdout", f"{i}", seq=i) for i in range(1, 9)])
    hub.publish_logs([LogLine("r", 0.0, "stdout", f"{i}", seq=i) for i in range(9, 13)])
    hub.publish_logs([LogLine("r", 0.0, "stdout", "x", seq=0)])  # not stored: never given
    hub.publish_logs([LogLine("r", 0.0, "stdout", f"{i}", seq=i) for i in range(13, 15)])
    got = drain(sub)
    assert [e.kind for e in got] == ["resync", "log", "log"]
    assert got[0].id == 12 and [e.data["seq"] for e in got[1:]] == [13, 14]


def test_the_sink_publishes_and_never_breaks_on_a_bad_event() -> None:
    """observe_events: the inner sink always gets its call first; a location removed by a
    reload is given by its new state with "removed"; an event that cannot be built is
    logged and dropped, the sink goes on."""
    from workspace_manager.supervisor.manager import EventSink
    from workspace_manager.supervisor.state import State, Transition

    seen: List[Any] = []
    manager = types.SimpleNamespace(locations={})
    hub = EventHub()
    sink = hub.observe_events(
        EventSink(
            transition=lambda name, t: seen.append(name),
            run=lambda record, event: seen.append(event),
            instigator=lambda doc: seen.append(doc["name"]),
        ),
        manager,
    )
    sub = hub.subscribe()
    sink.transition("gone", Transition(1.0, State.READY, State.STOPPED))
    sink.run(object(), "queued")  # not a RunRecord: no event, no exception
    sink.instigator({"kind": "schedule", "location": "a", "name": "s", "status": "STOPPED"})
    assert seen == ["gone", "queued", "s"]
    got = drain(sub)
    assert [e.kind for e in got] == ["location", "instigator"]
    assert got[0].data["name"] == "gone" and got[0].data["state"] == "stopped"
    assert got[0].data["removed"] is True and "pid" in got[0].data


def test_publish_never_raises_and_skips_nobody_reads() -> None:
    hub = EventHub()
    hub.publish("run", {"x": 1})  # no subscriber: not even an id
    assert hub.last_id == 0
    sub = hub.subscribe(["run"])
    hub.publish("run", {"x": float("nan"), "o": object()})  # encoded later, strictly
    frame = drain(sub)[0].frame().decode()
    assert frame.startswith("id: 1\nevent: run\ndata: {") and frame.endswith("}\n\n")
    data = json.loads(frame.split("data: ", 1)[1])  # strict JSON: NaN is a string
    assert data["x"] == "NaN" and data["o"].startswith("<object object")
    hub.publish("run", None)  # type: ignore[arg-type]  # a bug in a caller: logged, no raise
    hub._by_kind = None  # type: ignore[assignment]  # even a broken hub does not raise
    hub.publish("run", {})


def test_frames_are_one_data_line_and_encoded_once() -> None:
    hub = EventHub()
    a, b = hub.subscribe(["log"], run_id="r"), hub.subscribe(["log"], run_id="r")
    hub.publish("log", {"run_id": "r", "seq": 1, "text": "two\nlines\r\u2028"})
    ea, eb = drain(a)[0], drain(b)[0]
    assert ea is eb and ea.frame() is eb.frame()
    lines = ea.frame().decode().split("\n")
    assert lines[:2] == ["id: 1", "event: log"] and lines[-2:] == ["", ""]
    assert json.loads(lines[2][len("data: ") :])["text"] == "two\nlines\r\u2028"


def test_close_ends_every_iterator_and_forgets_every_subscriber() -> None:
    async def main() -> None:
        hub = EventHub()
        subs = [hub.subscribe(), hub.subscribe(["run"], run_id="r")]
        got: List[List[str]] = [[], []]

        async def read(i: int) -> None:
            async for event in subs[i]:
                got[i].append(event.kind)

        tasks = [asyncio.ensure_future(read(i)) for i in range(2)]
        await asyncio.sleep(0)
        hub.publish("run", {"run_id": "r"})
        hub.publish("log", {"run_id": "r", "seq": 1})
        hub.close()  # what was queued is still given, then the iterators end
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert got == [["run"], ["run", "log"]]
        assert hub.subscribers == 0 and not hub._by_run
        assert not any(hub._by_kind.values())
        late = hub.subscribe()  # after close: ends at once
        assert late.closed and [e async for e in late] == []

    asyncio.run(main())


def test_closed_subscriptions_leave_nothing_behind() -> None:
    hub = EventHub()
    refs = []
    for i in range(1000):
        sub = hub.subscribe(["run", "location"], run_id=f"r{i % 7}")
        hub.publish("run", {})
        sub.close()
        sub.close()  # idempotent
        refs.append(weakref.ref(sub))
    del sub
    assert hub.subscribers == 0 and not hub._by_run and not any(hub._by_kind.values())
    gc.collect()
    assert not [r for r in refs if r() is not None]


def test_next_times_out_then_still_delivers() -> None:
    async def main() -> None:
        hub = EventHub()
        sub = hub.subscribe(["tick"])
        started = time.monotonic()
        assert await sub.next(0.05) is None
        assert time.monotonic() - started >= 0.04
        asyncio.get_running_loop().call_later(0.02, hub.publish, "tick", {"n": 1})
        event = await sub.next(5)
        assert event is not None and event.data == {"n": 1}
        sub.close()
        with pytest.raises(StopAsyncIteration):
            await sub.next(5)

    asyncio.run(main())


def test_committed_log_lines_are_published_with_their_storage_seq(tmp_path: Path) -> None:
    """The hub hears of a line only once its batch is committed, with the seq the storage
    gave it; lines of unknown runs (not stored) are never published."""

    async def main() -> None:
        store = AsyncStorage(SqliteStorage(tmp_path / "runs.db"))
        hub = EventHub(queue_events=5000)
        store.on_logs = hub.publish_logs
        run = await store.add_run(RunRecord(run_id="r1", location="l", job="j"))
        sub = hub.subscribe(["run"], run_id=run.run_id)
        ghost = hub.subscribe(["run"], run_id="ghost")
        for i in range(1200):  # more than one batch
            store.log(LogLine(run.run_id, time.time(), "stdout", f"line {i}"))
        store.log(LogLine("ghost", time.time(), "stdout", "not stored"))
        await store.flush_logs()
        await asyncio.sleep(0.01)
        got = drain(sub)
        assert [e.data["seq"] for e in got] == list(range(1, 1201))
        assert got[5].data["text"] == "line 5" and got[5].data["stream"] == "stdout"
        assert drain(ghost) == []
        stored = await store.read_logs(run.run_id, 1100, 1000)
        assert [(line.seq, line.text) for line in stored] == [
            (e.data["seq"], e.data["text"]) for e in got[1100:]
        ]
        await store.close()

    asyncio.run(main())


# -- GET /api/events on a real server ---------------------------------------------------------


class Served:
    """A Starlette app with sse.routes on a real uvicorn server, on its own loop in a thread
    (as the manager embeds it); `call(fn, *args)` runs fn on that loop."""

    def __init__(self, ctx: Any) -> None:
        import uvicorn
        from starlette.applications import Starlette

        from workspace_manager.web import sse

        self.ctx = ctx
        app = Starlette(routes=sse.routes(ctx))
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", http="httptools"
        )
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def call(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive()


class SseClient:
    """A Server-Sent Events client on http.client: `events(n)` reads n events (comments
    kept as {"comment": text}), with a deadline."""

    def __init__(self, port: int, path: str, headers: Optional[Dict[str, str]] = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.request("GET", path, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.retry: Optional[str] = None
        self.skipped: List[Dict[str, Any]] = []  # what events(kind=...) passed over

    def next(self, comments: bool = False) -> Dict[str, Any]:
        """The next event: {"id", "event", "data"} (data parsed as JSON), or None at the end."""
        fields: Dict[str, Any] = {}
        while True:
            raw = self.resp.readline()
            if not raw:
                return {}
            line = raw.decode().rstrip("\n")
            if line == "":
                if "event" in fields or "data" in fields:
                    fields["data"] = json.loads(fields.get("data", "null"))
                    fields["received"] = time.time()
                    return fields
                continue
            if line.startswith(":"):
                if comments:
                    return {"comment": line[1:].strip()}
                continue
            name, _, value = line.partition(": ")
            if name == "retry":
                self.retry = value
            else:
                fields[name] = int(value) if name == "id" else value

    def events(self, n: int, kind: Optional[str] = None) -> List[Dict[str, Any]]:
        out = []
        while len(out) < n:
            event = self.next()
            assert event, f"the stream ended after {out}"
            if kind is None or event["event"] == kind:
                out.append(event)
            else:
                self.skipped.append(event)
        return out

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Tuple[Served, EventHub, Any]]:
    """A server with a hub and the real run storage (SQLite through AsyncStorage, its
    committed lines published as the manager's are)."""
    from workspace_manager.http.api import Api, ApiSources
    from workspace_manager.http.view import ManagerView
    from workspace_manager.web.context import WebContext

    holder: Dict[str, Any] = {}
    hub = EventHub()
    api = Api(ApiSources(storage=lambda: holder.get("store")))
    ctx = WebContext(view=lambda: ManagerView(alive=True, started_at=0.0), api=api, hub=hub)
    server: Optional[Served] = None
    try:
        server = Served(ctx)

        def open_store() -> AsyncStorage:
            store = AsyncStorage(SqliteStorage(tmp_path / "runs.db"))
            store.on_logs = hub.publish_logs
            return store

        holder["store"] = server.call(open_store)
        yield server, hub, holder["store"]
    finally:
        if server is not None:
            server.call(hub.close)
            if "store" in holder:
                server.call(holder["store"].close)
            server.close()


def get(port: int, path: str, method: str = "GET") -> Tuple[int, Dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


def wait_subscribers(server: Served, hub: EventHub, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while server.call(lambda: hub.subscribers) != n:
        assert time.monotonic() < deadline, f"{hub.subscribers} subscribers, not {n}"
        time.sleep(0.01)


def test_stream_shape_kinds_filter_and_ids(served: Any) -> None:
    server, hub, _ = served
    client = SseClient(server.port, "/api/events?kinds=location,instigator")
    assert client.resp.status == 200
    assert client.resp.getheader("content-type") == "text/event-stream; charset=utf-8"
    assert "no-cache" in client.resp.getheader("cache-control")
    wait_subscribers(server, hub, 1)
    server.call(hub.publish, "run", {"event": "queued"})
    server.call(hub.publish, "location", {"name": "a", "state": "backoff"})
    server.call(hub.publish, "instigator", {"kind": "sensor", "name": "s", "status": "STOPPED"})
    got = client.events(2)
    assert client.retry == "1000"
    assert [e["event"] for e in got] == ["location", "instigator"]
    assert got[0]["data"] == {"name": "a", "state": "backoff"}
    assert got[0]["id"] < got[1]["id"]
    client.close()
    wait_subscribers(server, hub, 0)  # the client went away: its subscription is gone


def test_bad_requests_are_one_line_json_errors(served: Any) -> None:
    server, _, store = served
    for path, status, words in [
        ("/api/events?kinds=run,nope", 400, "unknown event kind 'nope'"),
        ("/api/events?kinds=log", 400, "run=RUN_ID"),
        ("/api/events?after=3", 400, "`after` needs `run`"),
        ("/api/events?run=x&after=-1", 400, "`after` must be a seq"),
        ("/api/events?run=nosuchrun", 404, "nosuchrun"),
    ]:
        code, headers, body = get(server.port, path)
        assert code == status, (path, body)
        assert headers["content-type"] == "application/json"
        assert words in json.loads(body)["error"]["message"], body
    code, headers, body = get(server.port, "/api/events", "POST")
    assert code == 405 and headers["allow"] == "GET, HEAD"
    code, headers, body = get(server.port, "/api/events", "HEAD")
    assert code == 200 and body == ""


def test_without_storage_a_run_stream_is_503_and_without_a_hub_there_is_no_route() -> None:
    """`wsm serve` keeps no runs: its events have no `log` (503 for run=); a WebContext
    without a hub gets no /api/events route at all (the API's own 404 answers)."""
    from workspace_manager.http.view import ManagerView
    from workspace_manager.web import sse
    from workspace_manager.web.context import WebContext

    def view() -> ManagerView:
        return ManagerView(alive=True, started_at=0.0)

    assert sse.routes(WebContext(view=view)) == []
    endpoint = sse.routes(WebContext(view=view, hub=EventHub()))[0].endpoint
    sent: List[Dict[str, Any]] = []

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> Dict[str, Any]:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET", "query_string": b"run=abc", "headers": []}
    asyncio.run(endpoint(scope, receive, send))
    assert sent[0]["status"] == 503
    assert "no run storage" in json.loads(sent[1]["body"])["error"]["message"]


def test_pings_while_idle(served: Any) -> None:
    server, hub, _ = served
    server.server.config.app.routes[0].endpoint.ping_seconds = 0.1
    client = SseClient(server.port, "/api/events")
    assert client.next(comments=True) == {"comment": "ping"}
    client.close()


def keep_writing(loop: Any, store: Any, run_id: str, total: int) -> Any:
    """Write `total` lines of `run_id` ("line 1", ...) on `loop`, a few at a time; return
    (the future of the writing) once 1,000 are written, the rest still coming."""
    writing = threading.Event()

    async def write() -> None:
        for i in range(total):
            store.log(LogLine(run_id, time.time(), "stdout", f"line {i + 1}"))
            if i % 50 == 0:
                await asyncio.sleep(0.002)  # lines keep coming while the client catches up
            if i == 1000:
                writing.set()
        await store.flush_logs()

    future = asyncio.run_coroutine_threadsafe(write(), loop)
    writing.wait(10)
    return future


def test_run_log_resumes_after_seq_without_gaps_or_duplicates(served: Any) -> None:
    """A page rendered with lines 1..SEQ opens run=ID&after=SEQ while the run keeps writing:
    it gets SEQ+1, SEQ+2, ... exactly once each, stored ones first, then live ones."""
    server, hub, store = served
    run = server.call(store.add_run, RunRecord(run_id=uuid.uuid4().hex, location="l", job="j"))
    total = 3000
    future = keep_writing(server.loop, store, run.run_id, total)
    client = SseClient(server.port, f"/api/events?kinds=run&run={run.run_id[:12]}&after=200")
    got = client.events(total - 200, kind="log")
    future.result(30)
    seqs = [e["data"]["seq"] for e in got]
    assert seqs == list(range(201, total + 1))
    assert [e["data"]["text"] for e in got[:2]] == ["line 201", "line 202"]
    ids = [e["id"] for e in got]
    assert ids == sorted(ids)  # stored lines carry the id the stream started at, then live
    client.close()
    wait_subscribers(server, hub, 0)


def test_a_run_stream_that_falls_behind_misses_no_line(tmp_path: Path) -> None:
    """A stream of run=ID&after=SEQ whose queue overflows (a queue of 10 events, batches of
    up to 500 committed lines) gets its `resync` and then the dropped lines from the
    storage: every line once, in order."""
    from workspace_manager.http.api import Api, ApiSources
    from workspace_manager.http.view import ManagerView
    from workspace_manager.web.context import WebContext

    holder: Dict[str, Any] = {}
    hub = EventHub(queue_events=10)
    api = Api(ApiSources(storage=lambda: holder.get("store")))
    ctx = WebContext(view=lambda: ManagerView(alive=True, started_at=0.0), api=api, hub=hub)
    server = Served(ctx)
    try:

        def open_store() -> AsyncStorage:
            store = AsyncStorage(SqliteStorage(tmp_path / "runs.db"))
            store.on_logs = hub.publish_logs
            return store

        store = holder["store"] = server.call(open_store)
        run = server.call(store.add_run, RunRecord(run_id=uuid.uuid4().hex, location="l", job="j"))
        client = SseClient(server.port, f"/api/events?kinds=run&run={run.run_id}&after=0")
        wait_subscribers(server, hub, 1)

        async def write() -> None:
            for i in range(3000):
                store.log(LogLine(run.run_id, time.time(), "stdout", f"line {i + 1}"))
                if i % 700 == 0:
                    await asyncio.sleep(0.01)
            await store.flush_logs()

        server.call(write)
        got = client.events(3000, kind="log")
        assert [e["data"]["seq"] for e in got] == list(range(1, 3001))
        client.close()
        assert server.call(lambda: hub.overflows) >= 1  # it did fall behind
    finally:
        server.call(hub.close)
        if "store" in holder:
            server.call(holder["store"].close)
        server.close()


def test_lines_another_process_writes_are_read_from_storage(served: Any, tmp_path: Path) -> None:
    """A run of `wsm job execute` is written by its own process, not this manager: its new
    stored lines still reach the stream, in order, once each, until the run is final."""
    server, hub, store = served
    origin = {"kind": "execute", "pid": 1}
    run = server.call(
        store.add_run, RunRecord(run_id=uuid.uuid4().hex, location="l", job="j", origin=origin)
    )
    other = SqliteStorage(tmp_path / "runs.db")  # the other process's connection
    try:
        other.append_logs([LogLine(run.run_id, time.time(), "stdout", "before") for _ in range(3)])
        client = SseClient(server.port, f"/api/events?kinds=run&run={run.run_id}&after=1")
        assert [e["data"]["seq"] for e in client.events(2, kind="log")] == [2, 3]
        for batch in range(3):
            other.append_logs(
                [LogLine(run.run_id, time.time(), "stdout", f"b{batch}") for _ in range(4)]
            )
            time.sleep(0.2)
        got = client.events(12, kind="log")
        assert [e["data"]["seq"] for e in got] == list(range(4, 16))
        other.update_run(run.run_id, status="STARTING")
        other.update_run(run.run_id, status="STARTED")
        other.append_logs([LogLine(run.run_id, time.time(), "stdout", "the last line")])
        other.update_run(run.run_id, status="SUCCESS")
        last = client.events(1, kind="log")[0]
        assert last["data"]["seq"] == 16 and last["data"]["text"] == "the last line"
        client.close()
    finally:
        other.close()


def test_streams_beyond_the_cap_are_refused(served: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Open streams hold busy connections: past MAX_STREAMS a new one is a 503 (the probes
    keep their connection slots), and a slot frees when a client leaves."""
    from workspace_manager.web import feed

    server, hub, _ = served
    monkeypatch.setattr(feed, "MAX_STREAMS", 3)
    clients = [SseClient(server.port, "/api/events") for _ in range(3)]
    assert [c.resp.status for c in clients] == [200, 200, 200]
    code, _, body = get(server.port, "/api/events")
    assert code == 503 and "3 event streams are open" in json.loads(body)["error"]["message"]
    clients.pop().close()
    endpoint = server.server.config.app.routes[0].endpoint
    deadline = time.monotonic() + 10
    while server.call(lambda: endpoint.open_streams) != 2:
        assert time.monotonic() < deadline, "the stream of the client that left is still open"
        time.sleep(0.01)
    clients.append(SseClient(server.port, "/api/events"))
    assert clients[-1].resp.status == 200
    for c in clients:
        c.close()


def test_a_reconnect_starts_with_resync(served: Any) -> None:
    """EventSource reconnects to the same URL with Last-Event-ID: the events of the gap are
    gone (resync), and a run's lines come again from `after`, so none is missing."""
    server, hub, store = served
    client = SseClient(server.port, "/api/events", headers={"Last-Event-ID": "17"})
    first = client.next()
    assert first["event"] == "resync" and first["data"] == {}
    client.close()
    run = server.call(store.add_run, RunRecord(run_id=uuid.uuid4().hex, location="l", job="j"))
    server.call(store.append_logs, [LogLine(run.run_id, 1.0, "stdout", f"{i}") for i in range(5)])
    path = f"/api/events?run={run.run_id}&after=2"
    client = SseClient(server.port, path, headers={"Last-Event-ID": "17"})
    got = client.events(3)
    assert [e["event"] for e in got] == ["resync", "log", "log"]
    assert [e["data"]["seq"] for e in got[1:]] == [3, 4]
    client.close()


def test_hub_close_ends_every_stream(served: Any) -> None:
    server, hub, _ = served
    clients = [SseClient(server.port, "/api/events") for _ in range(50)]
    wait_subscribers(server, hub, 50)
    server.call(hub.publish, "location", {"name": "a", "state": "stopped"})
    server.call(hub.close)
    for client in clients:
        assert client.next()["event"] == "location"
        assert client.next() == {}  # the response ended
        client.close()
    assert server.call(lambda: hub.subscribers) == 0


def test_clients_that_leave_or_never_read_cost_nothing_after(served: Any) -> None:
    """200 clients that connect and drop, and one that never reads while 20,000 events go
    by: no subscription stays, and the stuck one's queue stays bounded."""
    server, hub, _ = served
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(100)
        sock.close()
    wait_subscribers(server, hub, 0)
    stuck = socket.create_connection(("127.0.0.1", server.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /api/events?kinds=run HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_subscribers(server, hub, 1)
    big = {"text": "x" * 1000}

    def flood() -> int:
        for _ in range(20000):
            hub.publish("run", big)
        return max(s.pending() for s in hub._all)

    assert server.call(flood) <= hub.queue_events
    stuck.close()
    wait_subscribers(server, hub, 0)


# -- the events of a real manager ---------------------------------------------------------------

REPO = """
import sys, time
from workspace_manager import job, repository, schedule, sensor, RunRequest

@job
def talk(context):
    n = int(context.run_config.get("lines", 300))
    for i in range(n):
        print(f"line {i + 1}", flush=True)
        if i % 50 == 0:
            time.sleep(float(context.run_config.get("pause", 0.01)))
    context.log.info("done talking")

@sensor(job=talk, minimum_interval_seconds=1)
def poke(context):
    yield RunRequest(run_key="once", run_config={"lines": 1})

@schedule(cron_schedule="* * * * *", job=talk)
def every_minute(context):
    return {"lines": 1}

@repository
def repo():
    return [talk, poke, every_minute]
"""


def live_workspace(ws: Any) -> Path:
    ws.file("code/live_repo.py", REPO)
    entry = {"relative_path": "code/live_repo.py", "location_name": "team"}
    return ws.workspace({"load_from": [{"python_file": entry}]})


async def next_event(sub: Subscription, match: Any, timeout: float, what: str) -> Any:
    """The first event of `sub` for which `match(event)` holds, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {what} within {timeout:g}s")
        event = await sub.next(left)
        if event is not None and match(event):
            return event


def test_a_real_manager_publishes_every_kind(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An embedded manager (the `wsm up` one, runs and daemon on): `kill -9` of its
    location gives a `location` event that is not ready; a launched run gives its `run`
    events and its lines as `log` events with the storage's seqs; a sensor started gives
    an `instigator` event, then its `tick`."""
    from workspace_manager.supervisor.manager import Manager
    from workspace_manager.workspace.load import load_workspace

    for name in ("WSM_RUNTIME_DIR", "WSM_STATE_DIR", "WSM_CACHE_DIR"):
        monkeypatch.setenv(name, ws.env[name])
    path = live_workspace(ws)
    workspace = load_workspace(path)

    seen: Dict[int, float] = {}

    def track() -> None:
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                seen.setdefault(child.pid, child.create_time())

    async def main() -> None:
        manager = Manager(workspace, str(path), runs=True, stop_grace=2.0)
        hub = manager.hub
        sub = hub.subscribe()
        await manager.start(serve_control=False)
        try:
            ready = await next_event(
                sub, lambda e: e.kind == "location" and e.data["state"] == "ready", 60, "ready"
            )
            assert ready.data["name"] == "team" and ready.data["pid"]
            track()
            assert set(ready.data) >= {"python", "environment", "restarts", "rss_bytes"}
            killed = time.monotonic()
            os.kill(ready.data["pid"], signal.SIGKILL)
            down = await next_event(sub, lambda e: e.kind == "location", 10, "a location event")
            latency = time.monotonic() - killed
            print(f"kill -9 -> location event: {latency * 1000:.1f} ms")
            assert down.data["state"] != "ready" and down.data["name"] == "team"
            await next_event(
                sub, lambda e: e.kind == "location" and e.data["state"] == "ready", 60, "ready"
            )

            assert manager.runs is not None and manager.daemon is not None
            run = await manager.runs.submit("team", "talk", run_config={"lines": 300})
            logs = hub.subscribe(["run"], run_id=run.run_id)
            statuses = []
            while not statuses or statuses[-1] not in ("success", "failure", "canceled"):
                event = await next_event(
                    sub,
                    lambda e: e.kind == "run" and e.data["run_id"] == run.run_id,
                    60,
                    "the run's events",
                )
                statuses.append(event.data["event"])
                track()
            assert statuses[-3:] == ["starting", "started", "success"], statuses
            await asyncio.sleep(0.2)  # the last batch of lines
            lines = [e for e in drain(logs) if e.kind == "log"]
            seqs = [e.data["seq"] for e in lines]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs[:10]
            stored = await manager.store.read_logs(run.run_id, 0, 5000)
            assert [(x.seq, x.text) for x in stored if x.seq >= seqs[0]] == [
                (e.data["seq"], e.data["text"]) for e in lines
            ]
            assert [e.data["text"] for e in lines if e.data["stream"] == "stdout"] == [
                f"line {i}" for i in range(1, 301)
            ]
            said = [e.data for e in lines if e.data["stream"] == "log"]
            assert [(d["level"], d["text"]) for d in said] == [("INFO", "done talking")]
            logs.close()

            await manager.daemon.set_status("sensor", "poke", "RUNNING")
            started = await next_event(sub, lambda e: e.kind == "instigator", 5, "instigator")
            assert started.data == {
                "kind": "sensor",
                "location": "team",
                "name": "poke",
                "status": "RUNNING",
                "next_tick": None,
            }
            tick = await next_event(sub, lambda e: e.kind == "tick", 30, "a tick")
            assert tick.data["name"] == "poke" and tick.data["status"] in ("success", "skipped")
            assert "next_tick" not in tick.data  # a sensor's ticks have no next tick
            track()
            # a schedule's events carry its next tick, so an open page moves it forward
            before = time.time()
            await manager.daemon.set_status("schedule", "every_minute", "RUNNING")
            on = await next_event(sub, lambda e: e.kind == "instigator", 5, "instigator")
            assert before < on.data["next_tick"] <= before + 61
            assert (
                manager.daemon.next_tick_of("schedule", "team", "every_minute")
                == on.data["next_tick"]
            )
            await manager.daemon.set_status("schedule", "every_minute", "STOPPED")
            off = await next_event(sub, lambda e: e.kind == "instigator", 5, "instigator")
            assert off.data["next_tick"] is None
            assert manager.daemon.next_tick_of("schedule", "team", "nope") is None
        finally:
            await manager.shutdown()
        # shutdown closed the hub: the subscription ends after what was queued
        rest = [e async for e in sub]
        assert [e.data["state"] for e in rest if e.kind == "location"][-1] == "stopped"
        assert hub.subscribers == 0

    asyncio.run(main())
    assert_gone(seen)


def assert_gone(seen: Dict[int, float], timeout: float = 10.0) -> None:
    """Every process in `seen` (pid -> create time) has exited (a pid reused since is not
    ours)."""

    def alive(pid: int) -> bool:
        try:
            p = psutil.Process(pid)
            return p.create_time() == seen[pid] and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    deadline = time.monotonic() + timeout
    while [p for p in seen if alive(p)]:
        assert time.monotonic() < deadline, f"left behind: {[p for p in seen if alive(p)]}"
        time.sleep(0.05)


# -- the real `wsm up` --------------------------------------------------------------------------


def up_workspace(ws: Any) -> None:
    ws.file("code/live_repo.py", REPO)
    entry = {
        "relative_path": "code/live_repo.py",
        "location_name": "team",
        "executable_path": sys.executable,
    }
    ws.workspace({"load_from": [{"python_file": entry}]})


def launch(ws: Any, job: str, config: Dict[str, Any]) -> str:
    done = ws.run("job", "launch", job, "--config", json.dumps(config))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_wsm_up_streams_a_kill_and_a_runs_lines(ws: Any) -> None:
    """`kill -9` of a location reaches an open stream as a `location` event that is not
    ready (the latency is printed); a run's lines arrive as `log` events with increasing
    seqs, and a second stream opened mid-run with after=SEQ continues it without a gap
    or a duplicate."""

    up_workspace(ws)
    with WsmUp(ws) as up:
        pid = up.wait_state("team", "ready")["pid"]
        up.track()
        assert up.port is not None
        stream = SseClient(up.port, "/api/events?kinds=location")
        assert stream.resp.status == 200
        # subscribed: the stream sends its headers only once it is
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        event = stream.events(1)[0]
        latency = time.monotonic() - killed
        changed = event["data"]["transitions"][-1]["at"]  # when the manager saw it
        print(
            f"\nkill -9 -> location event on the stream: {latency * 1000:.1f} ms "
            f"(of which the state change -> the client: {(event['received'] - changed) * 1000:.1f} ms)"
        )
        assert event["data"]["name"] == "team" and event["data"]["state"] != "ready"
        assert event["data"]["transitions"][-1]["to"] == event["data"]["state"]
        restarted = stream.events(2)  # starting, then ready again
        assert [e["data"]["state"] for e in restarted] == ["starting", "ready"]
        stream.close()
        up.wait_state("team", "ready")
        up.track()

        # 2,000 lines over about 2 s; the first stream reads them as they come (a thread),
        # the second opens at line 500 with after=500
        run_id = launch(ws, "talk", {"lines": 2000, "pause": 0.05})
        first = SseClient(up.port, f"/api/events?kinds=run&run={run_id}&after=0")
        got: List[Dict[str, Any]] = []

        def read_first() -> None:
            while len(got) < 2001:
                got.extend(first.events(1, kind="log"))

        reader = threading.Thread(target=read_first)
        reader.start()
        wait_for(lambda: len(got) >= 500 or not reader.is_alive(), 60, "500 lines")
        second = SseClient(up.port, f"/api/events?kinds=run&run={run_id}&after=500")
        rest_second = second.events(1501, kind="log")  # 2000 prints and "done talking"
        reader.join(60)
        assert [e["data"]["seq"] for e in got] == list(range(1, 2002))
        assert [e["data"] for e in rest_second] == [e["data"] for e in got[500:]]
        assert [e["id"] for e in got] == sorted(e["id"] for e in got)
        texts = [e["data"]["text"] for e in got if e["data"]["stream"] == "stdout"]
        assert texts == [f"line {i}" for i in range(1, 2001)]
        lag = sorted(e["received"] - e["data"]["time"] for e in got)
        print(
            f"log line, from the manager reading it to the stream's client: "
            f"p50 {lag[len(lag) // 2] * 1000:.1f} ms, p99 {lag[len(lag) * 99 // 100] * 1000:.1f} ms"
        )
        # the run's events come on the same stream (it ends while the lines are read)
        statuses = [e["data"]["event"] for e in second.skipped if e["event"] == "run"]
        while "success" not in statuses:
            statuses += [e["data"]["event"] for e in second.events(1, kind="run")]
        assert statuses[-1] == "success", statuses
        first.close()
        second.close()
        up.track()
    # WsmUp's exit: stopped, and every process it started is gone


LIVEZ_TIMER = """
import http.client, json, sys, time
port = int(sys.argv[1])
out = []
for _ in range(100):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    before = time.perf_counter()
    conn.request("GET", "/livez")
    resp = conn.getresponse()
    resp.read()
    out.append(time.perf_counter() - before)
    assert resp.status == 200
    conn.close()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_wsm_down_ends_50_open_streams(ws: Any) -> None:
    """50 open streams, half of them following a run that writes 5,000 lines: /livez keeps
    answering (its latency is printed), then `wsm down` ends every stream and the manager's
    whole process tree is gone."""

    up_workspace(ws)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        up.track()
        assert up.port is not None
        run_id = launch(ws, "talk", {"lines": 5000})
        paths = ["/api/events"] * 25 + [f"/api/events?run={run_id}&after=0"] * 25
        streams = [SseClient(up.port, path) for path in paths]
        assert all(s.resp.status == 200 for s in streams)
        got: List[List[Dict[str, Any]]] = [[] for _ in streams]

        def read(i: int) -> None:
            while True:
                event = streams[i].next()
                if not event:
                    return
                got[i].append(event)

        readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(50)]
        for t in readers:
            t.start()
        # timed from another process: this one's 50 reader threads share one GIL
        livez = sorted(
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", LIVEZ_TIMER, str(up.port)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                ).stdout
            )
        )
        print(
            f"\n/livez with 50 open streams, 25 following a run's 5,000 lines: "
            f"p50 {livez[50] * 1000:.1f} ms, p99 {livez[99] * 1000:.1f} ms"
        )

        def run_done() -> bool:
            return any(
                e["event"] == "run" and e["data"]["event"] == "success" for e in got[0] + got[-1]
            )

        wait_for(run_done, 60, "the run to end on the streams")
        up.track()
        started = time.monotonic()
        down = ws.run("down", timeout=60)
        assert down.returncode == 0, down.stderr
        took_down = time.monotonic() - started
        for t in readers:
            t.join(30)
        assert not [t for t in readers if t.is_alive()], "streams still open after wsm down"
        print(
            f"wsm down with 50 open streams: {took_down:.2f} s, "
            f"every stream ended {time.monotonic() - started:.2f} s after it began"
        )
        print("resyncs:", sum(1 for g in got for e in g if e["event"] == "resync"))
        for s in streams:
            s.close()
        for events in got[25:]:  # every line once, in order (or a resync where it fell behind)
            seqs = [e["data"]["seq"] for e in events if e["event"] == "log"]
            if not any(e["event"] == "resync" for e in events):
                assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 5001
        assert [e["data"]["state"] for e in got[0] if e["event"] == "location"][-1] == "stopped"
        assert up.proc.wait(30) == 0


@pytest.mark.slow
def test_churning_clients_under_a_flood_leave_nothing_behind(served: Any) -> None:
    """For 15 s, 8 threads open streams (some following a run), read a little and vanish
    (close, or reset), while events and committed lines flood: afterwards no subscription,
    no open-stream count and no task of a stream is left."""
    server, hub, store = served
    run = server.call(store.add_run, RunRecord(run_id=uuid.uuid4().hex, location="l", job="j"))
    baseline = server.call(lambda: len(asyncio.all_tasks()))
    stop = threading.Event()

    async def flood() -> None:
        n = 0
        while not stop.is_set():
            for _ in range(50):
                n += 1
                hub.publish("location", {"name": "a", "state": "ready", "n": n})
                store.log(LogLine(run.run_id, time.time(), "stdout", f"line {n}"))
            await asyncio.sleep(0.005)

    flooding = asyncio.run_coroutine_threadsafe(flood(), server.loop)
    opened = [0]

    def churn(k: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            path = "/api/events" if i % 2 else f"/api/events?run={run.run_id}&after={i}"
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.recv(1000 * (i % 5))
            if i % 3 == 0:  # a reset, not a close
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            sock.close()
            opened[0] += 1

    threads = [threading.Thread(target=churn, args=(k,), daemon=True) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(15)
    stop.set()
    for t in threads:
        t.join(10)
    flooding.result(10)
    print(f"\n{opened[0]} streams opened and dropped")
    wait_subscribers(server, hub, 0)
    endpoint = server.server.config.app.routes[0].endpoint
    deadline = time.monotonic() + 10
    left: Any = None
    while left != (0, 0):  # the task asking is in both counts
        left = server.call(lambda: (endpoint.open_streams, len(asyncio.all_tasks()) - baseline))
        assert time.monotonic() < deadline, f"(streams, tasks) left: {left}"
        time.sleep(0.05)


def test_a_schedules_tick_event_carries_its_next_tick() -> None:
    from workspace_manager.storage.records import TickRecord
    from workspace_manager.web.events import tick_event

    class Daemon:
        def next_tick_of(self, kind: str, location: str, name: str) -> Optional[float]:
            return 1796098500.0 if (kind, location, name) == ("schedule", "a", "s") else None

    schedule_tick = TickRecord(location="a", name="s", kind="schedule", tick_time=1.0)
    sensor_tick = TickRecord(location="a", name="s", kind="sensor", tick_time=1.0)
    assert tick_event(schedule_tick, Daemon())["next_tick"] == 1796098500.0
    assert "next_tick" not in tick_event(sensor_tick, Daemon())
    assert "next_tick" not in tick_event(schedule_tick)  # a manager without a daemon
