"""`GET /api/events`: the manager's live events (web/events.py) as Server-Sent Events
(WHATWG HTML, "Server-sent events"; docs/web.md, "Live events").

    GET /api/events[?kinds=location,run,tick,instigator][&run=RUN_ID[&after=SEQ]]

- `kinds`: a comma list (or the parameter repeated); default all but `log`.
- `run`: a run id (or a unique prefix): adds that run's `log` events. With `after=SEQ` the
  stream first gives the run's stored lines with a seq above SEQ, then the live ones: a page
  rendered with the lines up to SEQ misses none and gets none twice.
- The stream starts with `retry: 1000` (reconnect after a second), has a comment line
  `: ping` every PING_SECONDS (proxies and the browser see a live connection), and gives
  every event as `id: N`, `event: KIND`, `data: JSON`. Ids never decrease: lines read from
  the storage carry the id of the point they catch up to (where the stream started, or
  its `resync`).
- A stream opened with `after` misses no line even when it falls behind: after its
  `resync` (its queue overflowed) it reads the dropped lines from the storage.
- A reconnecting browser sends `Last-Event-ID` (and the same URL): what it missed meanwhile
  is gone, so its stream starts with a `resync` event; a run's lines come again from
  `after` (the page skips a seq it already shows).
- It ends when the client goes away (its subscription is closed at once, nothing is left
  behind) or when the manager's hub closes (shutdown).

Like the API's reads, it needs no token; errors are the API's JSON shape
(`{"error": {"type", "message"}}`): 400 for a bad parameter, 404 for an unknown run, 405
for a method other than GET/HEAD, 409 for an ambiguous run id prefix, 503 when the manager
has no hub or no run storage (or too many streams are open).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs

from workspace_manager.web.events import KINDS, RESYNC, Event, Subscription, log_data

log = logging.getLogger(__name__)

#: Seconds between `: ping` comments of an idle stream.
PING_SECONDS = 15.0
#: Streams one manager serves at once; more are refused (503). A stream holds a connection
#: busy (web/guard.py never evicts a busy one) and a queue of up to QUEUE_EVENTS events: well
#: under the server's connection slots, so that open pages, or anyone opening streams, can
#: never take the last slots from `/livez`. A page needs one.
MAX_STREAMS = 200
#: Stored lines read per storage call while catching up.
CATCH_UP_PAGE = 1000
#: How often the stored lines of a run another process writes (`wsm job execute`) are read.
POLL_SECONDS = 0.5
#: Waiting events written in one send: a burst goes out in few writes.
BATCH_EVENTS = 1000

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    (b"x-accel-buffering", b"no"),  # a proxy in front must not buffer the stream
]


def routes(ctx: Any) -> List[Any]:
    """The Starlette route of `GET /api/events` (before the /api/ mount: it is not the API's
    request/response shape). Empty when the manager has no hub."""
    from starlette.routing import Route

    if getattr(ctx, "hub", None) is None:
        return []
    return [Route("/api/events", EventStream(ctx), name="events")]


class _Refused(Exception):
    def __init__(self, status: int, type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type, message


class EventStream:
    """The ASGI endpoint (a class instance: Starlette hands it the raw scope, so the stream
    can watch for the client's disconnect itself and close its subscription at once)."""

    def __init__(self, ctx: Any, ping_seconds: float = PING_SECONDS) -> None:
        self.ctx = ctx
        self.ping_seconds = ping_seconds
        self.open_streams = 0

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            method = scope.get("method", "GET")
            if method not in ("GET", "HEAD"):
                raise _Refused(405, "MethodNotAllowed", f"{method} is not allowed here; use GET")
            if self.open_streams >= MAX_STREAMS:
                raise _Refused(503, "Unavailable", f"{MAX_STREAMS} event streams are open already")
            kinds, run_arg, after = _parse(scope.get("query_string", b""))
            record = await self._find_run(run_arg) if run_arg is not None else None
            run_id = str(record.run_id) if record is not None else None
        except _Refused as exc:
            await _error(send, exc)
            return
        if method == "HEAD":
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            sub = self.ctx.hub.subscribe(kinds, run_id)
        except ValueError as exc:
            await _error(send, _Refused(400, "InvalidRequest", str(exc)))
            return
        reconnect = _header(scope, b"last-event-id") is not None
        self.open_streams += 1
        watcher = asyncio.ensure_future(_close_on_disconnect(receive, sub))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send(
                {"type": "http.response.body", "body": b"retry: 1000\n\n", "more_body": True}
            )
            try:
                last_seq = 0
                if reconnect:  # the events of the gap are gone: the page re-reads its state
                    resync = Event(sub.start_id, RESYNC, {}).frame()
                    await send({"type": "http.response.body", "body": resync, "more_body": True})
                if run_id is not None and after is not None:
                    last_seq = await self._catch_up(send, sub, run_id, after, sub.start_id)
                # a run of `wsm job execute` is written by its own process: no live lines
                poll = None
                if record is not None and not record.is_final:
                    if (record.origin or {}).get("kind") == "execute":
                        poll = run_id
                # with `after`, the stream knows where the page is: it never misses a line
                recover = run_id if after is not None else None
                await self._follow(send, sub, last_seq, poll, recover)
            except Exception as exc:  # the storage closed under a reader (shutdown), a bug
                log.warning("events: a stream ended: %s: %s", type(exc).__name__, exc)
            await send({"type": "http.response.body", "body": b""})
        finally:
            sub.close()
            watcher.cancel()
            self.open_streams -= 1

    async def _find_run(self, given: str) -> Any:
        """The run `given` names (an id or a unique prefix), read through the manager's
        AsyncStorage (off the loop)."""
        from workspace_manager.storage.base import AmbiguousRunId, RunNotFound, StorageError

        api = self.ctx.api
        store = api.sources.storage() if api is not None else None
        if store is None:
            raise _Refused(503, "Unavailable", "the manager has no run storage (yet)")
        try:
            record = await store.get_run(given)
        except AmbiguousRunId as exc:
            raise _Refused(409, "Ambiguous", str(exc)) from None
        except RunNotFound as exc:
            raise _Refused(404, "NotFound", str(exc)) from None
        except StorageError as exc:
            raise _Refused(503, "StorageError", str(exc)) from None
        return record

    async def _catch_up(
        self, send: Any, sub: Subscription, run_id: str, after: int, event_id: int
    ) -> int:
        """Send the run's stored lines with a seq above `after`; the last seq sent.

        Subscribed first, then read: a line is published only once committed, so a line
        not yet published when the subscription began is in its queue, and every other
        one is in the storage; `_follow` skips the queued ones already sent (by seq)."""
        store = self.ctx.api.sources.storage()
        last = after
        while not sub.closed:
            lines = await store.read_logs(run_id, last, CATCH_UP_PAGE)
            if lines:
                body = b"".join(_line_event(event_id, line).frame() for line in lines)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                last = lines[-1].seq
            if len(lines) < CATCH_UP_PAGE:
                break
        return last

    async def _follow(
        self,
        send: Any,
        sub: Subscription,
        last_seq: int,
        poll: Optional[str] = None,
        run_id: Optional[str] = None,
    ) -> None:
        """The live events until the subscription ends; `: ping` after PING_SECONDS without
        a write. `poll`: a run whose lines another process writes (`wsm job execute`): its
        new stored lines are read every POLL_SECONDS until it is final. `run_id`: the run
        whose lines this stream gives from `after` on: after a `resync` the lines its queue
        dropped are read from the storage, so no line is ever missing from the stream."""
        ping_at = time.monotonic() + self.ping_seconds
        catching_up = last_seq > 0
        overflows = sub.overflows
        while True:
            now = time.monotonic()
            wait = max(ping_at - now, 0.0)
            if poll is not None:
                wait = min(wait, POLL_SECONDS)
            try:
                event = await sub.next(wait)
            except StopAsyncIteration:
                return
            frames: List[bytes] = []
            if event is None and poll is not None:
                last_seq, frames, final = await self._poll(sub, poll, last_seq)
                if final:
                    poll = None
            if event is not None:
                items = [event, *sub.take(BATCH_EVENTS - 1)]
                if catching_up:  # skip the lines the catch-up sent; a run's seqs increase
                    items, catching_up = _newer_than(items, last_seq)
                if sub.overflows != overflows and run_id is not None and poll is None:
                    overflows = sub.overflows
                    cut = next((i for i, e in enumerate(items) if e.kind == RESYNC), None)
                    if cut is not None:  # the resync, then the dropped lines, then the rest
                        head, items = items[: cut + 1], items[cut + 1 :]
                        last_seq = _last_seq(head, last_seq)
                        body = b"".join([item.frame() for item in head])
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                        last_seq = await self._catch_up(send, sub, run_id, last_seq, head[-1].id)
                        items, catching_up = _newer_than(items, last_seq)
                last_seq = _last_seq(items, last_seq)
                frames.extend([item.frame() for item in items])
            if not frames and time.monotonic() >= ping_at:
                frames.append(b": ping\n\n")
            if frames:
                await send(
                    {"type": "http.response.body", "body": b"".join(frames), "more_body": True}
                )
                ping_at = time.monotonic() + self.ping_seconds

    async def _poll(
        self, sub: Subscription, run_id: str, last_seq: int
    ) -> Tuple[int, List[bytes], bool]:
        """(last seq, frames of the run's lines stored after `last_seq`, whether the run is
        final): the status is read first, so a final run's last lines are in this read."""
        store = self.ctx.api.sources.storage()
        record = await store.get_run(run_id)
        lines = await store.read_logs(run_id, last_seq, CATCH_UP_PAGE)
        frames = [_line_event(self.ctx.hub.last_id, line).frame() for line in lines]
        if lines:
            last_seq = lines[-1].seq
        return last_seq, frames, record.is_final and len(lines) < CATCH_UP_PAGE


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


async def _close_on_disconnect(receive: Any, sub: Subscription) -> None:
    """Close `sub` once the client is gone (ASGI `http.disconnect`): the stream's loop then
    ends at once, even while idle."""
    try:
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                break
    finally:
        sub.close()


def _line_event(event_id: int, line: Any) -> Event:
    return Event(event_id, "log", log_data(line), line.run_id)


def _parse(query_string: bytes) -> Tuple[Optional[List[str]], Optional[str], Optional[int]]:
    """(kinds or None for the default, run or None, after or None) from the query; _Refused
    (400) with one line for a bad value."""
    try:
        query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        raise _Refused(400, "InvalidRequest", "the query string cannot be read") from None
    kinds: Optional[List[str]] = None
    if "kinds" in query:
        kinds = [k.strip() for v in query["kinds"] for k in v.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise _Refused(
                400,
                "InvalidRequest",
                f"unknown event kind {', '.join(map(repr, unknown))}; kinds: {', '.join(KINDS)}",
            )
    run = query.get("run", [None])[-1]
    if run is not None and not run.strip():
        raise _Refused(400, "InvalidRequest", "`run` must be a run id")
    after: Optional[int] = None
    if "after" in query:
        if run is None:
            raise _Refused(
                400, "InvalidRequest", "`after` needs `run`: it is a seq of that run's lines"
            )
        text = query["after"][-1]
        if not text.isdigit() or len(text) > 18:
            raise _Refused(
                400, "InvalidRequest", f"`after` must be a seq (0 or more), got {text!r}"
            )
        after = int(text)
    if kinds is not None and "log" in kinds and run is None:
        raise _Refused(400, "InvalidRequest", "log events are given for one run: add run=RUN_ID")
    return kinds, run, after


def _header(scope: Dict[str, Any], name: bytes) -> Optional[bytes]:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value)
    return None


async def _error(send: Any, exc: _Refused) -> None:
    body = (json.dumps({"error": {"type": exc.type, "message": exc.message}}) + "\n").encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if exc.status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
