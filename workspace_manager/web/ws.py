"""`GET /api/events/ws`: the manager's live events (web/events.py) over a WebSocket
(RFC 6455), the transport of the web page (web/static/live.js); docs/web.md, "Live events".

    GET /api/events/ws[?kinds=location,run,tick,instigator][&run=RUN_ID[&after=SEQ]]

Why a second transport: a browser opens at most 6 HTTP/1.1 connections per host, and each
open page's Server-Sent Events stream holds one, so a 7th tab never loaded. A WebSocket is
not counted against that limit. `GET /api/events` (web/sse.py) stays for programs (`curl -N`).

- The query and the events are the SSE stream's (web/feed.py makes them for both): with
  `run` and `after=SEQ`, that run's stored lines after SEQ, then the live ones, none
  missing and none twice; `resync` when the stream fell behind.
- Each event is one text message, the JSON object `{"id": N, "event": KIND, "data": {...}}`.
  Messages from the client are read and ignored. Keep-alive is the WebSocket library's own
  ping/pong (web/guard.py sets it up); a client that answers no ping is dropped.
- A handshake whose `Origin` does not match its `Host` is refused (403): a browser lets any
  site's page open a WebSocket to any host, cookies included (cross-site WebSocket
  hijacking); programs send no Origin. Reads need no token, as the API's and SSE's do.
- Refusals are HTTP answers to the handshake in the API's JSON error shape: 400 a bad
  parameter, 403 a foreign Origin, 404 an unknown run, 409 an ambiguous run id prefix, 503
  no run storage or MAX_STREAMS streams open (SSE and WebSocket together, web/feed.py).
- It ends with a close frame when the hub closes (manager shutdown: 1001, going away) and
  at once when the client leaves; nothing is left behind either way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

from workspace_manager.web import feed
from workspace_manager.web.feed import PING_SECONDS, Refused, StreamCount

log = logging.getLogger(__name__)

#: RFC 6455 7.4.1: "going away" (the server shuts down).
GOING_AWAY = 1001


def routes(ctx: Any, streams: Optional[StreamCount] = None) -> List[Any]:
    """The Starlette WebSocket route of `/api/events/ws` (before the /api/ mount); empty
    when the manager has no hub. `streams`: the open-stream count shared with web/sse.py."""
    from starlette.routing import WebSocketRoute

    if getattr(ctx, "hub", None) is None:
        return []
    return [WebSocketRoute("/api/events/ws", EventSocket(ctx, streams), name="events_ws")]


def origin_refusal(scope: Dict[str, Any]) -> Optional[str]:
    """Why a handshake's Origin is refused, or None: an Origin (what a browser always sends
    with a WebSocket handshake, RFC 6455 4.1) must name this very host (its `Host`); "null"
    (an opaque origin: a sandboxed frame, a file) is refused. No Origin: not a browser."""
    origin = feed.header(scope, b"origin")
    if origin is None:
        return None
    text = origin.decode("latin-1").strip()
    if text == "null":
        return "a WebSocket from a page with an opaque origin is refused"
    host = (feed.header(scope, b"host") or b"").decode("latin-1").strip().lower()
    if not host or urlsplit(text).netloc.lower() != host:
        return "a WebSocket from another site's page is refused"
    return None


class EventSocket:
    """The ASGI endpoint (a class instance: it reads the raw scope and its messages, so the
    subscription closes the moment the client leaves)."""

    def __init__(
        self,
        ctx: Any,
        streams: Optional[StreamCount] = None,
        ping_seconds: float = PING_SECONDS,
    ) -> None:
        self.ctx = ctx
        self.streams = streams if streams is not None else StreamCount()
        self.ping_seconds = ping_seconds

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        message = await receive()
        if message.get("type") != "websocket.connect":
            return
        try:
            refusal = origin_refusal(scope)
            if refusal is not None:
                raise Refused(403, "Forbidden", refusal)
            self.streams.check()
            request = await feed.check_request(self.ctx, scope.get("query_string", b""))
            sub = self.ctx.hub.subscribe(request.kinds, request.run_id)
        except ValueError as exc:
            await _refuse(send, Refused(400, "InvalidRequest", str(exc)))
            return
        except Refused as exc:
            await _refuse(send, exc)
            return
        self.streams.open += 1
        watcher: Optional[asyncio.Future] = None
        try:
            await send({"type": "websocket.accept"})
            watcher = asyncio.ensure_future(
                feed.close_on_disconnect(receive, sub, "websocket.disconnect")
            )
            events = feed.Feed(self.ctx, sub, request, ping_seconds=self.ping_seconds)
            async for batch in events.batches():
                # None: idle; the library's pings keep the connection alive. A client that
                # reads nothing is dropped by the guard's write deadline (web/guard.py),
                # which ends a send waiting on it; meanwhile its queue overflows into a
                # `resync`, so the manager's memory stays bounded.
                for event in batch or ():
                    await send({"type": "websocket.send", "text": event.message()})
            if not watcher.done():  # the hub closed (shutdown), the client is still there
                await send({"type": "websocket.close", "code": GOING_AWAY})
        except OSError:
            pass  # the client left while we wrote (uvicorn's ClientDisconnected)
        except Exception as exc:  # the storage closed under a reader (shutdown), a bug
            log.warning("events: a WebSocket stream ended: %s: %s", type(exc).__name__, exc)
        finally:
            sub.close()
            if watcher is not None:
                watcher.cancel()
            self.streams.open -= 1


async def _refuse(send: Any, exc: Refused) -> None:
    """Answer the handshake with an HTTP error (the ASGI "websocket.http.response"
    extension), in the API's JSON shape."""
    headers, body = feed.error_body(exc)
    await send({"type": "websocket.http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
