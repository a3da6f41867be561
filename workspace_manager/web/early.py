"""The health address while the web stack is not imported yet: the probes answered at once,
every other request held until the web stack takes its connection over.

`wsm up` serves `/livez`, `/healthz`, `/readyz[/NAME]` and `/status` from the moment its
first locations are on their way: importing uvicorn and Starlette (~60 ms of the manager's
one thread) then waits until they have settled, instead of holding back their hand-shakes
and the first `/readyz` 200. A probe is answered by the same handlers (http/routes.py) with
the same status, body and headers as `web/probes.py` gives through uvicorn. Any other
request (another path or method, a body, an upgrade, a percent-encoded path) asks for the
web stack at once and waits for it; when it is there, `hand_over` gives every open
connection, with what it has sent so far, to the web stack's protocol, and new
connections go straight to it.
"""

from __future__ import annotations

import asyncio
import socket
import time

TYPE_CHECKING = False  # typing for the type checkers only (they take any name as true)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Set, Tuple

    from workspace_manager.http.routes import Handler
    from workspace_manager.http.view import ManagerView

#: Bytes of a request head answered here; a longer one goes to the web stack.
MAX_HEAD = 8192
#: The reason phrases uvicorn sends (http.HTTPStatus) for what the probes answer.
_PHRASES = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Headers after which a request is not a plain probe: it has a body, or wants more.
_NOT_PLAIN = frozenset({"content-length", "transfer-encoding", "upgrade", "expect"})


#: What serving the web page and API imports (the app is built with Starlette, served with
#: uvicorn): `import_web_stack` imports them in a worker thread, so that the event loop
#: still answers the probes between them (the interpreter switches threads every 5 ms).
WEB_STACK = (
    "workspace_manager.web.server",  # uvicorn, through web/guard.py
    "uvicorn.config",
    "uvicorn.server",
    "starlette.applications",
    "starlette.responses",
    "starlette.routing",
    "workspace_manager.web.app",
    "workspace_manager.web.context",
    "workspace_manager.web.session",
    "workspace_manager.http.api",
)


def import_web_stack() -> None:
    """Import WEB_STACK (in a worker thread: see there). Raises ImportError."""
    import importlib

    for name in WEB_STACK:
        importlib.import_module(name)


def http_date(now: Optional[float] = None) -> str:
    """RFC 9110 5.6.7 IMF-fixdate (`email.utils.formatdate(usegmt=True)` without email)."""
    t = time.gmtime(now)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


class EarlyServer:
    """Serve the probe `routes` on the listening `sockets` until `hand_over`.

    `view()` is the manager's view for every probe but `/livez` and `/healthz`, which look at
    `alive()` only (as web/probes.py does); `want_web()` is called once, at the first
    request only the web stack can answer."""

    def __init__(
        self,
        routes: Dict[str, Handler],
        view: Callable[[], ManagerView],
        alive: Callable[[], bool],
        want_web: Callable[[], None],
        head_timeout: float = 5.0,
        max_connections: Optional[int] = None,
    ) -> None:
        from workspace_manager.web.bind import fd_budget

        # as web/guard.py's hard limit: a flood of connections cannot take every descriptor
        self.max_connections = fd_budget() if max_connections is None else max_connections
        self.routes = routes
        self.view = view
        self.alive = alive
        self._want_web = want_web
        self.head_timeout = head_timeout
        self.servers: List[asyncio.AbstractServer] = []
        self.connections: Set[_EarlyConnection] = set()
        self._factory: Optional[Callable[[], asyncio.Protocol]] = None
        self._wanted = False

    async def start(self, sockets: List[socket.socket]) -> Tuple[str, int]:
        """Serve the bound `sockets` (theirs from now on); the first one's (host, port)."""
        loop = asyncio.get_running_loop()
        try:
            for sock in sockets:
                self.servers.append(await loop.create_server(self._protocol, sock=sock))
        except BaseException:
            for sock in sockets:
                sock.close()
            await self.close()
            raise
        name = sockets[0].getsockname()
        return str(name[0]), int(name[1])

    def _protocol(self) -> asyncio.Protocol:
        if self._factory is not None:
            return self._factory()
        return _EarlyConnection(self)

    def want_web(self) -> None:
        if not self._wanted:
            self._wanted = True
            self._want_web()

    def hand_over(self, factory: Callable[[], asyncio.Protocol]) -> None:
        """From now on `factory()` serves every connection: the new ones, and each one open
        here, with the bytes it has sent and not been answered."""
        self._factory = factory
        for conn in list(self.connections):
            conn.take_over(factory())
        self.connections.clear()

    def drop_held(self) -> None:
        """Close the connections waiting for a web stack that will not come."""
        for conn in list(self.connections):
            if conn.held:
                conn.drop()

    async def close(self) -> None:
        """Stop listening and drop the connections still served here."""
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.drop()
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 5.0)
            except asyncio.TimeoutError:
                pass
        self.servers = []


class _EarlyConnection(asyncio.Protocol):
    def __init__(self, server: EarlyServer) -> None:
        self.server = server
        self.transport: Any = None
        self.buffer = bytearray()
        self.held = False
        self._timer: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if len(self.server.connections) >= self.server.max_connections:
            transport.close()
            self.transport = None
            return
        self.server.connections.add(self)
        self._timer = asyncio.get_running_loop().call_later(
            self.server.head_timeout, self._timed_out
        )

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.held and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._hold()
                return
            request = _probe_request(bytes(self.buffer[:end]), self.server.routes, self._peer())
            if request is None:
                self._hold()
                return
            del self.buffer[: end + 4]
            self._answer(*request)

    def _peer(self) -> Optional[str]:
        name = self.transport.get_extra_info("peername")
        return str(name[0]) if isinstance(name, tuple) and name else None

    def _hold(self) -> None:
        """Wait, reading no more, for the web stack to take this connection over."""
        self.held = True
        self.transport.pause_reading()
        if self._timer is not None:
            self._timer.cancel()  # the web stack's own deadlines apply from then on
        self.server.want_web()

    def _answer(self, request: Any, handler: Handler, close: bool) -> None:
        from workspace_manager.http.exchange import Response, text
        from workspace_manager.http.routes import livez

        if handler is livez:
            from workspace_manager.http.view import ManagerView

            view = ManagerView(alive=self.server.alive(), started_at=0.0)
        else:
            view = self.server.view()
        try:
            answer = handler(request, view)
        except Exception:  # as web/probes.py: a 500, never a dropped connection
            answer = text(500, "internal error\n")
        if isinstance(answer, Response):
            response = answer
        else:  # an awaitable: no probe route gives one (/metrics is not served here)
            if asyncio.iscoroutine(answer):
                answer.close()
            response = text(500, "internal error\n")
        phrase = _PHRASES.get(response.status)
        if phrase is None:
            import http

            phrase = http.HTTPStatus(response.status).phrase
        lines = [
            f"HTTP/1.1 {response.status} {phrase}",
            f"date: {http_date()}",
            f"content-type: {response.content_type}",
            f"content-length: {len(response.body)}",
            "cache-control: no-store",
            *(f"{k.lower()}: {v}" for k, v in response.headers),
        ]
        if close:
            lines.append("connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.transport.write(head if request.method == "HEAD" else head + response.body)
        if close:
            self.transport.close()
            self.transport = None

    def take_over(self, protocol: asyncio.Protocol) -> None:
        """Give the connection, and what it sent that was not answered, to `protocol`."""
        if self._timer is not None:
            self._timer.cancel()
        transport, self.transport = self.transport, None
        if transport is None or transport.is_closing():
            return
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.held:  # before the bytes: whatever flow control `protocol` applies stands
            transport.resume_reading()
        if self.buffer:
            protocol.data_received(bytes(self.buffer))

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _timed_out(self) -> None:
        """No complete request head in time (as the web stack's guard: a client that sends
        nothing holds no connection)."""
        if self.transport is not None and not self.held:
            self.transport.close()


def _probe_request(
    head: bytes, routes: Dict[str, Handler], peer: Optional[str] = None
) -> Optional[Tuple[Any, Handler, bool]]:
    """(Request, its handler, whether to close after the answer) for a plain probe: GET or
    HEAD of a route's path, no body, HTTP/1.0 or 1.1; None for anything else."""
    from workspace_manager.http.exchange import Request
    from workspace_manager.http.routes import resolve

    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    if method not in ("GET", "HEAD") or version not in ("HTTP/1.1", "HTTP/1.0"):
        return None
    path, _, query_text = target.partition("?")
    if not path.startswith("/") or "%" in path or "#" in target:
        return None
    found = resolve(routes, path)
    if found is None:
        return None
    handler, subpath = found
    headers: List[Tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        name = name.lower()
        if name in _NOT_PLAIN:
            return None
        headers.append((name, value.strip(" \t")))
    connection = ",".join(v for k, v in headers if k == "connection").lower()
    if version == "HTTP/1.0":
        close = "keep-alive" not in connection
    else:
        close = "close" in connection
    from urllib.parse import parse_qs

    request = Request(
        method=method,
        target=target,
        version=version,
        path=path,
        query=parse_qs(query_text, keep_blank_values=True),
        headers=tuple(headers),
        subpath=subpath,
        peer=peer,
    )
    return request, handler, close
