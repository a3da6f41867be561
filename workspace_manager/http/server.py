"""The health endpoint: an asyncio HTTP/1.1 server on the manager's own event loop.

It answers from `view()`, a cheap snapshot of the manager's state, so no answer
ever waits on a location. Each connection is its own task with an absolute deadline for
each request head and bounded buffers; whatever one client does ends at its own connection.
When every connection slot is taken, the connection that has waited longest for its request
head (idle or incomplete) is dropped to make room: a new client is never refused for slow
or idle ones, so anyone able to open connections cannot make `/livez` fail its probe.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import resource
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Set, Tuple

from workspace_manager.http.routes import Handler, default_routes, resolve
from workspace_manager.http.view import ManagerView
from workspace_manager.http.wire import (
    ClientGone,
    HttpError,
    Limits,
    Request,
    Response,
    encode_response,
    read_request,
    text,
)

log = logging.getLogger(__name__)

#: What a route answers unless it says otherwise (a handler's `methods` attribute).
_METHODS = ("GET", "HEAD")
_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn
DEFAULT_LIMITS = Limits()
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1 << 20
# Below the hard limit, a connection must have waited this long (seconds) for its request head
# before a newcomer may evict it: a burst of real clients must not evict each other.
_EVICT_AFTER = 1.0
# A name may resolve to addresses this host cannot bind (::1 with IPv6 disabled): skip those.
_UNBINDABLE = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)


class HealthServer:
    """Serve /livez, /healthz, /readyz[/NAME] and /status (plus any route added to `routes`).

    `view` is called on the event loop once per request and must return quickly.
    `request_timeout` is an absolute deadline (seconds) for each whole request head, idle
    keep-alive time included: it is not reset by each byte received. Beyond `max_connections`
    open connections, a new one evicts the connection that has waited longest for a request
    head if that one has waited at least a second; the hard limit, half the process's
    open-file limit, evicts whatever waits longest. Only when every connection is busy
    computing an answer does a newcomer get a 503.
    """

    def __init__(
        self,
        host: str,
        port: int,
        view: Callable[[], ManagerView],
        *,
        routes: Optional[Dict[str, Handler]] = None,
        limits: Limits = DEFAULT_LIMITS,
        request_timeout: float = 5.0,
        write_timeout: float = 10.0,
        max_connections: int = 1024,
    ) -> None:
        self._host = host
        self._port = port
        self._view = view
        self.routes: Dict[str, Handler] = default_routes() if routes is None else routes
        self._limits = limits
        self._request_timeout = request_timeout
        self._write_timeout = write_timeout
        self._hard_limit = _fd_budget()
        self._max_connections = min(max_connections, self._hard_limit)
        self._servers: List[asyncio.AbstractServer] = []
        self._tasks: Set[asyncio.Task] = set()
        # ordered by the time each began waiting for its current request head, oldest first
        self._connections: OrderedDict[asyncio.Task, _Connection] = OrderedDict()
        self._closing = False
        self.addresses: List[Tuple[str, int]] = []  # every bound (host, port), once started

    async def start(self) -> Tuple[str, int]:
        """Bind and listen; return the bound (host, port), the real port when 0 was asked."""
        if self._servers:
            raise RuntimeError("HealthServer already started")
        self._closing = False
        sockets = await self._bind()
        try:
            for sock in sockets:
                server = await asyncio.start_server(
                    self._on_connect, sock=sock, limit=self._limits.line_bytes
                )
                self._servers.append(server)
        except BaseException:
            for sock in sockets:
                sock.close()
            await self.close()
            raise
        self.addresses = [tuple(sock.getsockname()[:2]) for sock in sockets]
        return self.addresses[0]

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        self._closing = True
        for server in self._servers:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 5.0)
            except asyncio.TimeoutError:
                log.warning("health endpoint: a connection did not close in time")
        self._servers = []

    # -- binding -------------------------------------------------------------------------------

    async def _bind(self) -> List[socket.socket]:
        if self._host == "":
            return [_bind_all_interfaces(self._port)]
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        addresses: List[Tuple[int, tuple]] = list(
            dict.fromkeys((info[0], info[4]) for info in infos)
        )
        attempts = 5 if self._port == 0 else 1
        for attempt in range(attempts):
            try:
                return _bind_same_port(addresses, self._port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    # -- connections ---------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing or not self._make_room():
            refusal = text(503, "too many connections\n")
            writer.write(encode_response(refusal, head_only=False, keep_alive=False, http10=False))
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = self._connections[task] = _Connection(writer)
        clean = False
        try:
            clean = await self._serve(reader, writer, conn)
        except (OSError, asyncio.TimeoutError):
            pass  # the peer went away or stopped reading: nothing to tell it
        except asyncio.CancelledError:
            # close() cancels us. This task is the connection's top level and asyncio's
            # streams log a cancelled one as an error, so end it normally instead.
            pass
        except Exception:
            log.exception("health endpoint: unexpected error on a connection")
        finally:
            self._tasks.discard(task)
            self._connections.pop(task, None)
            if clean and not self._closing:
                writer.close()  # flushes what is buffered, then closes
            else:
                writer.transport.abort()

    def _make_room(self) -> bool:
        """Whether a new connection may be served, evicting a waiting one if need be."""
        count = len(self._tasks)
        if count < self._max_connections:
            return True
        oldest = next(((t, c) for t, c in self._connections.items() if not c.busy), None)
        if oldest is not None:
            task, conn = oldest
            if count >= self._hard_limit or time.monotonic() - conn.waiting_since >= _EVICT_AFTER:
                del self._connections[task]
                self._tasks.discard(task)
                conn.writer.transport.abort()
                task.cancel()
                return True
        return count < self._hard_limit

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Connection
    ) -> bool:
        """Answer requests until the client or a rule ends the connection; True if it ended cleanly."""
        task = asyncio.current_task()
        assert task is not None
        while True:
            conn.busy = False
            conn.waiting_since = time.monotonic()
            if task in self._connections:  # else just evicted: the cancellation is on its way
                self._connections.move_to_end(task)
            try:
                request = await asyncio.wait_for(
                    read_request(reader, self._limits, lambda: _send_continue(writer)),
                    self._request_timeout,
                )
            except asyncio.TimeoutError:
                return False  # idle or too slow: drop it without a word, as Go and nginx do
            except ClientGone:
                return False
            except HttpError as exc:
                log.debug("health endpoint: %s for %s: %s", exc.status, _peer(writer), exc)
                refusal = self._refusal(exc)
                await self._write(writer, refusal, head_only=False, keep_alive=False, http10=False)
                await _linger(reader, writer)
                return True
            if request is None:
                return True
            conn.busy = True
            keep_alive = request.keep_alive and not self._closing
            response = await self._respond(replace(request, peer=_peer(writer)))
            conn.busy = False  # a client too slow to read its answer may be evicted
            await self._write(
                writer,
                response,
                head_only=request.method == "HEAD",
                keep_alive=keep_alive,
                http10=request.version == "HTTP/1.0",
            )
            if not keep_alive:
                return True

    def _refusal(self, exc: HttpError) -> Response:
        """The answer to a refused request: plain text, or the route's own wording (its
        `refusal(status, message)`) when the request got as far as naming its path."""
        found = resolve(self.routes, exc.path) if exc.path else None
        word = getattr(found[0], "refusal", None) if found else None
        if word is not None:
            try:
                response: Response = word(exc.status, exc.message)
                return response
            except Exception:
                log.exception("health endpoint: a route's refusal failed")
        return text(exc.status, exc.message + "\n")

    async def _respond(self, request: Request) -> Response:
        found = resolve(self.routes, request.path)
        if found is None:
            return text(404, "404 page not found\n")
        handler, subpath = found
        methods = getattr(handler, "methods", _METHODS)
        if request.method not in methods:
            return text(405, "method not allowed\n", ("Allow", ", ".join(methods)))
        try:
            response = handler(replace(request, subpath=subpath), self._view())
            if inspect.isawaitable(response):
                response = await response
            return response
        except Exception:
            log.exception("health endpoint: %s %s failed", request.method, request.path)
            return text(500, "internal error\n")

    async def _write(self, writer: asyncio.StreamWriter, response: Response, **how: bool) -> None:
        writer.write(encode_response(response, **how))
        await asyncio.wait_for(writer.drain(), self._write_timeout)


@dataclass
class _Connection:
    """What eviction needs to know about one open connection."""

    writer: asyncio.StreamWriter
    waiting_since: float = 0.0  # monotonic time it began waiting for its current request head
    busy: bool = False  # computing an answer: not evictable


def _fd_budget() -> int:
    """Half the soft open-file limit: the manager's own files and locations keep the rest."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 512
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(16, soft // 2)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then drop what the client is still sending for a moment, so that
    closing with unread input (a TCP reset) does not destroy the error answer in flight."""
    if writer.can_write_eof():
        writer.write_eof()

    async def drain_input() -> None:
        budget = _LINGER_BYTES
        while budget > 0:
            chunk = await reader.read(65536)
            if not chunk:
                return
            budget -= len(chunk)

    try:
        await asyncio.wait_for(drain_input(), _LINGER_SECONDS)
    except (asyncio.TimeoutError, OSError):
        pass


async def _send_continue(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    await writer.drain()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


def _listening_socket(family: int, sockaddr: tuple, dual_stack: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.bind(sockaddr)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_all_interfaces(port: int) -> socket.socket:
    """`:PORT`: one dual-stack IPv6 socket (IPv4 too), or plain IPv4 where IPv6 is off."""
    if socket.has_ipv6:
        try:
            return _listening_socket(socket.AF_INET6, ("::", port), dual_stack=True)
        except OSError as exc:
            if exc.errno not in _UNBINDABLE:
                raise
    return _listening_socket(socket.AF_INET, ("0.0.0.0", port))


def _bind_same_port(addresses: List[Tuple[int, tuple]], port: int) -> List[socket.socket]:
    """Bind every address on one port: the first one picks it when `port` is 0."""
    sockets: List[socket.socket] = []
    last_error: Optional[OSError] = None
    try:
        for family, sockaddr in addresses:
            wanted = port or (sockets[0].getsockname()[1] if sockets else 0)
            try:
                sockets.append(_listening_socket(family, (sockaddr[0], wanted, *sockaddr[2:])))
            except OSError as exc:
                if exc.errno not in _UNBINDABLE:
                    raise
                last_error = exc
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise last_error or OSError(errno.EADDRNOTAVAIL, "no address to bind")
    return sockets
