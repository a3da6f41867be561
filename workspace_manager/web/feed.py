"""One live event stream's events, whatever carries them: the request's checks (query, run,
the cap on open streams) and the generator `Feed.batches()` that gives a stream its events
in order. `web/sse.py` frames them as Server-Sent Events, `web/ws.py` as WebSocket messages;
docs/web.md, "Live events".

What a stream gives (both transports):
- with `run` and `after=SEQ`: that run's stored lines with a seq above SEQ, then the live
  ones, none missing and none twice, even when the stream falls behind (after its `resync`
  the lines its queue dropped are read from the storage);
- the lines of a run of `wsm job execute` (another process writes them) read from the
  storage every POLL_SECONDS until the run is final;
- ids that never decrease: lines read from the storage carry the id of the point they catch
  up to (where the stream started, or its `resync`);
- its end once the subscription closes (the client left, or the hub closed at shutdown).
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, List, Optional, Tuple
from urllib.parse import parse_qs

from workspace_manager.web.events import KINDS, RESYNC, Event, Subscription, log_data

#: Seconds between keep-alives (`None` batches) of an idle stream.
PING_SECONDS = 15.0
#: Streams one manager serves at once, SSE and WebSocket together; more are refused (503).
#: An SSE stream holds a connection busy (web/guard.py never evicts a busy one), a WebSocket
#: a connection out of the guard's slots; each holds a queue of up to QUEUE_EVENTS events:
#: well under the server's connection slots, so that open pages, or anyone opening streams,
#: can never take the last slots from `/livez`. A page needs one.
MAX_STREAMS = 200
#: Stored lines read per storage call while catching up.
CATCH_UP_PAGE = 1000
#: How often the stored lines of a run another process writes (`wsm job execute`) are read.
POLL_SECONDS = 0.5
#: Waiting events given in one batch: a burst goes out in few writes.
BATCH_EVENTS = 1000


class Refused(Exception):
    """A request the stream refuses: an HTTP `status` and the API's error `type` and message."""

    def __init__(self, status: int, type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type, message


class StreamCount:
    """The streams open on one app, SSE and WebSocket together (one per app: web/app.py
    hands the same one to both transports)."""

    def __init__(self) -> None:
        self.open = 0

    def check(self) -> None:
        """Refused (503) when MAX_STREAMS are open already."""
        if self.open >= MAX_STREAMS:
            raise Refused(503, "Unavailable", f"{MAX_STREAMS} event streams are open already")


class Request:
    """A stream's checked request: `kinds` (None: the default), the run `record` (or None),
    `run_id`, `after` (or None)."""

    def __init__(self, kinds: Optional[List[str]], record: Any, after: Optional[int]) -> None:
        self.kinds = kinds
        self.record = record
        self.run_id = str(record.run_id) if record is not None else None
        self.after = after


async def check_request(ctx: Any, query_string: bytes) -> Request:
    """The stream's request from its query (kinds, run, after); Refused with one line for a
    bad parameter (400), an unknown (404) or ambiguous (409) run, no run storage (503)."""
    kinds, run_arg, after = parse_query(query_string)
    record = await find_run(ctx, run_arg) if run_arg is not None else None
    return Request(kinds, record, after)


async def find_run(ctx: Any, given: str) -> Any:
    """The run `given` names (an id or a unique prefix), read through the manager's
    AsyncStorage (off the loop)."""
    from workspace_manager.storage.base import AmbiguousRunId, RunNotFound, StorageError

    api = ctx.api
    store = api.sources.storage() if api is not None else None
    if store is None:
        raise Refused(503, "Unavailable", "the manager has no run storage (yet)")
    try:
        record = await store.get_run(given)
    except AmbiguousRunId as exc:
        raise Refused(409, "Ambiguous", str(exc)) from None
    except RunNotFound as exc:
        raise Refused(404, "NotFound", str(exc)) from None
    except StorageError as exc:
        raise Refused(503, "StorageError", str(exc)) from None
    return record


class Feed:
    """The events of one stream over `sub` (subscribed before anything is read from the
    storage): `batches()` gives lists of events, oldest first, and None when `ping_seconds`
    passed without an event (the transport's keep-alive), until `sub` closes."""

    def __init__(
        self,
        ctx: Any,
        sub: Subscription,
        request: Request,
        reconnect: bool = False,
        ping_seconds: float = PING_SECONDS,
    ) -> None:
        self.ctx = ctx
        self.sub = sub
        self.request = request
        self.reconnect = reconnect
        self.ping_seconds = ping_seconds
        #: The seq of the last log line given.
        self.last_seq = 0

    async def batches(self) -> AsyncIterator[Optional[List[Event]]]:
        sub, request = self.sub, self.request
        run_id, after, record = request.run_id, request.after, request.record
        if self.reconnect:  # the events of the gap are gone: the page re-reads its state
            yield [Event(sub.start_id, RESYNC, {})]
        if run_id is not None and after is not None:
            self.last_seq = after
            async for lines in self._catch_up(run_id, sub.start_id):
                yield lines
        # a run of `wsm job execute` is written by its own process: no live lines
        poll = None
        if record is not None and not record.is_final:
            if (record.origin or {}).get("kind") == "execute":
                poll = run_id
        # with `after`, the stream knows where the page is: it never misses a line
        recover = run_id if after is not None else None
        async for live in self._follow(poll, recover, catching_up=self.last_seq > 0):
            yield live

    async def _catch_up(self, run_id: str, event_id: int) -> AsyncIterator[List[Event]]:
        """The run's stored lines with a seq above `self.last_seq`, a page at a time.

        Subscribed first, then read: a line is published only once committed, so a line
        not yet published when the subscription began is in its queue, and every other
        one is in the storage; `_follow` skips the queued ones already given (by seq)."""
        store = self.ctx.api.sources.storage()
        while not self.sub.closed:
            lines = await store.read_logs(run_id, self.last_seq, CATCH_UP_PAGE)
            if lines:
                self.last_seq = lines[-1].seq
                yield [_line_event(event_id, line) for line in lines]
            if len(lines) < CATCH_UP_PAGE:
                break

    async def _follow(
        self, poll: Optional[str], run_id: Optional[str], catching_up: bool
    ) -> AsyncIterator[Optional[List[Event]]]:
        """The live events until the subscription ends; None after `ping_seconds` without
        one. `poll`: a run whose lines another process writes: its new stored lines are read
        every POLL_SECONDS until it is final. `run_id`: the run whose lines this stream gives
        from `after` on: after a `resync` the lines its queue dropped are read from the
        storage, so no line is ever missing from the stream."""
        sub = self.sub
        ping_at = time.monotonic() + self.ping_seconds
        overflows = sub.overflows
        while True:
            wait = max(ping_at - time.monotonic(), 0.0)
            if poll is not None:
                wait = min(wait, POLL_SECONDS)
            try:
                event = await sub.next(wait)
            except StopAsyncIteration:
                return
            items: List[Event] = []
            if event is None and poll is not None:
                items, final = await self._poll(poll)
                if final:
                    poll = None
            if event is not None:
                batch = [event, *sub.take(BATCH_EVENTS - 1)]
                if catching_up:  # skip the lines the catch-up gave; a run's seqs increase
                    batch, catching_up = _newer_than(batch, self.last_seq)
                if sub.overflows != overflows and run_id is not None and poll is None:
                    overflows = sub.overflows
                    cut = next((i for i, e in enumerate(batch) if e.kind == RESYNC), None)
                    if cut is not None:  # the resync, then the dropped lines, then the rest
                        head, batch = batch[: cut + 1], batch[cut + 1 :]
                        self.last_seq = _last_seq(head, self.last_seq)
                        yield head
                        async for lines in self._catch_up(run_id, head[-1].id):
                            yield lines
                        batch, catching_up = _newer_than(batch, self.last_seq)
                self.last_seq = _last_seq(batch, self.last_seq)
                items.extend(batch)
            if items:
                yield items
                ping_at = time.monotonic() + self.ping_seconds
            elif time.monotonic() >= ping_at:
                yield None
                ping_at = time.monotonic() + self.ping_seconds

    async def _poll(self, run_id: str) -> Tuple[List[Event], bool]:
        """(the run's lines stored after `self.last_seq`, whether the run is final): the
        status is read first, so a final run's last lines are in this read."""
        store = self.ctx.api.sources.storage()
        record = await store.get_run(run_id)
        lines = await store.read_logs(run_id, self.last_seq, CATCH_UP_PAGE)
        if lines:
            self.last_seq = lines[-1].seq
        items = [_line_event(self.ctx.hub.last_id, line) for line in lines]
        return items, record.is_final and len(lines) < CATCH_UP_PAGE


def _last_seq(items: List[Event], last_seq: int) -> int:
    """The seq of the last log line in `items`, else `last_seq`."""
    for item in reversed(items):
        if item.kind == "log":
            return int(item.data["seq"])
    return last_seq


def _newer_than(items: List[Event], last_seq: int) -> Tuple[List[Event], bool]:
    """`items` without the log lines at or below `last_seq`, and whether to go on checking
    (until a newer line came: the ones after it are newer too)."""
    kept = []
    checking = True
    for item in items:
        if item.kind == "log" and checking:
            if item.data["seq"] <= last_seq:
                continue
            checking = False
        kept.append(item)
    return kept, checking


def _line_event(event_id: int, line: Any) -> Event:
    return Event(event_id, "log", log_data(line), line.run_id)


def parse_query(query_string: bytes) -> Tuple[Optional[List[str]], Optional[str], Optional[int]]:
    """(kinds or None for the default, run or None, after or None) from the query; Refused
    (400) with one line for a bad value."""
    try:
        query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        raise Refused(400, "InvalidRequest", "the query string cannot be read") from None
    kinds: Optional[List[str]] = None
    if "kinds" in query:
        kinds = [k.strip() for v in query["kinds"] for k in v.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise Refused(
                400,
                "InvalidRequest",
                f"unknown event kind {', '.join(map(repr, unknown))}; kinds: {', '.join(KINDS)}",
            )
    run = query.get("run", [None])[-1]
    if run is not None and not run.strip():
        raise Refused(400, "InvalidRequest", "`run` must be a run id")
    after: Optional[int] = None
    if "after" in query:
        if run is None:
            raise Refused(
                400, "InvalidRequest", "`after` needs `run`: it is a seq of that run's lines"
            )
        text = query["after"][-1]
        if not text.isdigit() or len(text) > 18:
            raise Refused(400, "InvalidRequest", f"`after` must be a seq (0 or more), got {text!r}")
        after = int(text)
    if kinds is not None and "log" in kinds and run is None:
        raise Refused(400, "InvalidRequest", "log events are given for one run: add run=RUN_ID")
    return kinds, run, after


async def close_on_disconnect(receive: Any, sub: Subscription, disconnect: str) -> None:
    """Close `sub` once the client is gone (the ASGI message `disconnect`: "http.disconnect"
    or "websocket.disconnect"): the stream's loop then ends at once, even while idle. What
    else the client sends meanwhile is read and dropped."""
    try:
        while True:
            message = await receive()
            if message.get("type") == disconnect:
                break
    finally:
        sub.close()


def header(scope: Any, name: bytes) -> Optional[bytes]:
    """The first header `name` (lower case) of an ASGI scope, or None."""
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value)
    return None


def error_body(exc: Refused) -> Tuple[List[Tuple[bytes, bytes]], bytes]:
    """(headers, body) of a refusal in the API's JSON error shape."""
    import json

    body = (json.dumps({"error": {"type": exc.type, "message": exc.message}}) + "\n").encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    return headers, body
