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

The events themselves (catch-up, follow, resync recovery, polling) come from web/feed.py,
shared with the WebSocket transport (web/ws.py); this module only frames them.

Like the API's reads, it needs no token; errors are the API's JSON shape
(`{"error": {"type", "message"}}`): 400 for a bad parameter, 404 for an unknown run, 405
for a method other than GET/HEAD, 409 for an ambiguous run id prefix, 503 when the manager
has no hub or no run storage (or too many streams, SSE and WebSocket together, are open).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional

from workspace_manager.web import feed
from workspace_manager.web.feed import MAX_STREAMS, PING_SECONDS, Refused, StreamCount

log = logging.getLogger(__name__)

__all__ = ["MAX_STREAMS", "PING_SECONDS", "EventStream", "routes"]

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    (b"x-accel-buffering", b"no"),  # a proxy in front must not buffer the stream
]


def routes(ctx: Any, streams: Optional[StreamCount] = None) -> List[Any]:
    """The Starlette route of `GET /api/events` (before the /api/ mount: it is not the API's
    request/response shape). Empty when the manager has no hub. `streams`: the count of open
    streams shared with the WebSocket transport (web/app.py), else one of its own."""
    from starlette.routing import Route

    if getattr(ctx, "hub", None) is None:
        return []
    return [Route("/api/events", EventStream(ctx, streams=streams), name="events")]


class EventStream:
    """The ASGI endpoint (a class instance: Starlette hands it the raw scope, so the stream
    can watch for the client's disconnect itself and close its subscription at once)."""

    def __init__(
        self,
        ctx: Any,
        ping_seconds: float = PING_SECONDS,
        streams: Optional[StreamCount] = None,
    ) -> None:
        self.ctx = ctx
        self.ping_seconds = ping_seconds
        self.streams = streams if streams is not None else StreamCount()

    @property
    def open_streams(self) -> int:
        """Streams open now (this endpoint's and those sharing its count)."""
        return self.streams.open

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            method = scope.get("method", "GET")
            if method not in ("GET", "HEAD"):
                raise Refused(405, "MethodNotAllowed", f"{method} is not allowed here; use GET")
            self.streams.check()
            request = await feed.check_request(self.ctx, scope.get("query_string", b""))
        except Refused as exc:
            await _error(send, exc)
            return
        if method == "HEAD":
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            sub = self.ctx.hub.subscribe(request.kinds, request.run_id)
        except ValueError as exc:
            await _error(send, Refused(400, "InvalidRequest", str(exc)))
            return
        reconnect = feed.header(scope, b"last-event-id") is not None
        self.streams.open += 1
        watcher = asyncio.ensure_future(feed.close_on_disconnect(receive, sub, "http.disconnect"))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send(
                {"type": "http.response.body", "body": b"retry: 1000\n\n", "more_body": True}
            )
            events = feed.Feed(self.ctx, sub, request, reconnect, self.ping_seconds)
            try:
                async for batch in events.batches():
                    body = b": ping\n\n" if batch is None else b"".join([e.frame() for e in batch])
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            except Exception as exc:  # the storage closed under a reader (shutdown), a bug
                log.warning("events: a stream ended: %s: %s", type(exc).__name__, exc)
            await send({"type": "http.response.body", "body": b""})
        finally:
            sub.close()
            watcher.cancel()
            self.streams.open -= 1


async def _error(send: Any, exc: Refused) -> None:
    headers, body = feed.error_body(exc)
    if exc.status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
