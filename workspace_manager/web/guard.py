"""What uvicorn leaves open, closed around its protocol: deadlines and connection slots.

uvicorn's keep-alive timer restarts with every byte received and it has no deadline for a
request head, so a client sending one byte a second holds a connection for ever; it caps
neither the head's size (httptools keeps every header) nor the time a reader may leave a
response unread. `GuardedProtocol` (a subclass of uvicorn's httptools protocol) adds:

- an absolute deadline for each request head, from the moment the connection is made or
  its previous response ended (idle keep-alive time included), as Go's `ReadHeaderTimeout`
  and nginx's `client_header_timeout`; a connection past it is dropped without a word;
- a cap on a head's bytes (431) and on its request line (414);
- a write deadline: a connection whose writes stay paused (the client reads nothing) that
  long is dropped;
- connection slots: beyond `max_connections`, a new connection evicts the one that has
  waited longest for its request head if that one has waited at least a second; beyond the
  hard limit (half the open-file limit) it evicts whichever waits longest. Only when every
  connection is busy with a request does a newcomer get a 503. So nobody able to open
  connections can make `/livez` fail its probe, whatever else they do;
- WebSocket upgrades (`Guard.websocket`, uvicorn's `Config(ws=...)`): an upgraded connection
  leaves the slots and its timers end (it is a long-lived stream, capped by the app, with
  the WebSocket library's ping/pong as its liveness check); at most `max_upgraded` are open
  (a 503 beyond), each keeps the write deadline, and the library (`websockets`, through
  uvicorn's sans-I/O protocol) is imported at the first upgrade, not when the server starts.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Callable, Optional, Tuple

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: A connection must have waited this long (seconds) for its request head before a
#: newcomer may evict it below the hard limit: a burst of real clients must not evict each other.
EVICT_AFTER = 1.0


@dataclass(frozen=True)
class GuardLimits:
    """`head_timeout`: seconds for a whole request head (absolute); `write_timeout`: seconds
    writes may stay paused; `head_bytes`: request line plus headers; `line_bytes`: the
    request target; `max_connections` / `hard_limit`: see the module docstring."""

    head_timeout: float = 5.0
    write_timeout: float = 10.0
    head_bytes: int = 32768
    line_bytes: int = 8192
    header_count: int = 100
    body_bytes: int = 1 << 20
    max_connections: int = 1024
    hard_limit: int = 1024
    max_upgraded: int = 256


class Guard:
    """The connections of one server, ordered by when each began waiting for its current
    request head (oldest first); busy ones (a request in progress) are kept apart."""

    def __init__(self, limits: GuardLimits) -> None:
        self.limits = limits
        self.waiting: OrderedDict[GuardedProtocol, float] = OrderedDict()
        self.busy: set[GuardedProtocol] = set()
        #: Upgraded (WebSocket) connections: out of the slots, still holding a socket.
        self.upgraded: set[asyncio.Protocol] = set()
        self._websocket_class: Optional[type] = None

    def __len__(self) -> int:
        return len(self.waiting) + len(self.busy)

    def admit(self) -> bool:
        """Whether a new connection may be served, evicting a waiting one if need be."""
        count = len(self)
        if count < self.limits.max_connections:
            return True
        oldest = next(iter(self.waiting.items()), None)
        if oldest is not None:
            conn, since = oldest
            if count >= self.limits.hard_limit or time.monotonic() - since >= EVICT_AFTER:
                conn.drop()
                return True
        return count + len(self.upgraded) < self.limits.hard_limit

    def websocket(self, config: Any, server_state: Any, app_state: Any, **_: Any) -> Any:
        """The protocol an upgraded connection is handed to (uvicorn calls
        `config.ws_protocol_class(config=..., server_state=..., app_state=...)`): uvicorn's
        sans-I/O `websockets` protocol under this guard, its class made at the first call."""
        if self._websocket_class is None:
            self._websocket_class = _guarded_websocket(self)
        return self._websocket_class(config=config, server_state=server_state, app_state=app_state)

    def set_waiting(self, conn: GuardedProtocol) -> None:
        self.busy.discard(conn)
        self.waiting.pop(conn, None)
        self.waiting[conn] = time.monotonic()

    def set_busy(self, conn: GuardedProtocol) -> None:
        self.waiting.pop(conn, None)
        self.busy.add(conn)

    def forget(self, conn: GuardedProtocol) -> None:
        self.waiting.pop(conn, None)
        self.busy.discard(conn)


class _WriteDeadline(asyncio.Protocol):
    """A write deadline, mixed in before a uvicorn protocol: a connection whose writes stay
    paused (its client reads nothing) `_write_timeout()` seconds is dropped. The class it is
    mixed into gives `_write_timeout()` (its guard's limit) and `drop()` (abort at once)."""

    _write_timer: Optional[asyncio.TimerHandle] = None
    loop: asyncio.AbstractEventLoop
    _write_timeout: Callable[[], float]
    drop: Callable[[], None]

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self._write_timeout(), self.drop)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_write_timer()

    def _stop_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None


class GuardedProtocol(_WriteDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol under a `Guard`; `guard` is set on a subclass made per
    server (`guarded_protocol`)."""

    guard: Guard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._head_timer: Optional[asyncio.TimerHandle] = None
        self._head_seen = 0  # bytes received while waiting for the current request head
        self._in_head = True
        self._line_done = False  # the request line's end was seen
        self._body_seen = 0

    # -- the connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.guard.admit():
            self._refused = True
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n"
            )
            transport.close()
            return
        super().connection_made(transport)
        _no_delay(transport)
        self._wait_for_head()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._refused:
            return
        self._cancel_timers()
        self.guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.parser is None:
            return
        if self._in_head:
            # Checked before parsing, so at most one read's worth beyond a limit is kept.
            if not self._line_done:
                if b"\n" in data:
                    self._line_done = True
                elif self._head_seen + len(data) > self.guard.limits.line_bytes:
                    self._refuse(414, "request target too long")
                    return
            if self._head_seen >= self.guard.limits.head_bytes:
                self._refuse(431, "request header fields too large")
                return
            self._head_seen += len(data)
        super().data_received(data)

    def _head_refusal(self) -> Optional[Tuple[int, str]]:
        limits = self.guard.limits
        if len(self.url) > limits.line_bytes:
            return 414, "request target too long"
        if len(self.headers) > limits.header_count:
            return 431, "too many header fields"
        if any(len(k) + len(v) + 4 > limits.line_bytes for k, v in self.headers):
            return 431, "a header field too large"
        if sum(len(k) + len(v) + 4 for k, v in self.headers) > limits.head_bytes:
            return 431, "request header fields too large"
        for name, value in self.headers:
            if name == b"content-length" and value.strip().isdigit():
                if int(value) > limits.body_bytes:
                    return 413, "request body too large"
        return None

    def drop(self) -> None:
        """Abort the connection at once (evicted, or past a deadline)."""
        self._cancel_timers()
        self.guard.forget(self)
        if self.transport is not None:
            self.transport.abort()

    def handle_websocket_upgrade(self) -> None:
        """Hand the connection to the WebSocket protocol: it leaves the slots (a stream is
        not a request waiting or in progress) and this protocol's timers end with it."""
        self._cancel_timers()
        self.guard.forget(self)
        if len(self.guard.upgraded) >= self.guard.limits.max_upgraded:
            self._refuse(503, "too many WebSocket connections")
            return
        super().handle_websocket_upgrade()

    # -- parser callbacks ----------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._line_done = False
        self._head_seen = 0
        self._body_seen = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        refusal = self._head_refusal()
        if refusal is not None:
            self._refuse(*refusal)
            raise _Refused()  # stops the parser: nothing of this request reaches the app
        self.guard.set_busy(self)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_seen += len(body)
        if self._body_seen > self.guard.limits.body_bytes:  # chunked: no length declared
            self._refuse(413, "request body too large")
            raise _Refused()
        super().on_body(body)

    def send_400_response(self, msg: str) -> None:
        if self.transport.is_closing():
            return  # refused already (a _Refused reaches uvicorn as a parser error)
        super().send_400_response(msg)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a pipelined request started: still busy
        # the keep-alive timer restarts with each byte: our absolute deadline replaces it
        self._unset_keepalive_if_required()
        self._wait_for_head()

    # -- writes --------------------------------------------------------------------------------

    def _write_timeout(self) -> float:
        return self.guard.limits.write_timeout

    # -- helpers -------------------------------------------------------------------------------

    def _wait_for_head(self) -> None:
        self._in_head = True
        self._line_done = False
        self._head_seen = 0
        self.guard.set_waiting(self)
        if self._head_timer is not None:
            self._head_timer.cancel()
        # idle or too slow: dropped without a word, as Go's and nginx's servers do
        self._head_timer = self.loop.call_later(self.guard.limits.head_timeout, self.drop)

    def _cancel_timers(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._stop_write_timer()

    def _refuse(self, status: int, message: str) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self._cancel_timers()
        body = (message + "\n").encode()
        reason = HTTPStatus(status).phrase.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()
        self.parser = None  # type: ignore[assignment]  # nothing more is parsed


def _no_delay(transport: asyncio.Transport) -> None:
    """TCP_NODELAY: uvicorn writes a response's head and body apart, and with Nagle's
    algorithm the body waits for the client's delayed ACK of the head (40 ms on Linux)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a refused request."""


def _guarded_websocket(guard: Guard) -> type:
    """uvicorn's `websockets` sans-I/O protocol, counted in `guard.upgraded` while its
    connection is open, with the guard's write deadline, and `drop()` (WebServer.close)."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    class GuardedWebSocket(_WriteDeadline, WebSocketsSansIOProtocol):
        def connection_made(self, transport: Any) -> None:
            guard.upgraded.add(self)
            super().connection_made(transport)

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._forget()
            super().connection_lost(exc)

        def _write_timeout(self) -> float:
            return guard.limits.write_timeout

        def drop(self) -> None:
            """Abort the connection at once (a client that reads nothing, shutdown)."""
            self._forget()
            if self.transport is not None:
                self.transport.abort()

        def _forget(self) -> None:
            guard.upgraded.discard(self)
            self._stop_write_timer()

    return GuardedWebSocket


def guarded_protocol(guard: Guard) -> type:
    """A `GuardedProtocol` class bound to `guard`, for uvicorn's `Config(http=...)`."""
    return type("GuardedProtocol", (GuardedProtocol,), {"guard": guard})
