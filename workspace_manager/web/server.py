"""The manager's HTTP server: uvicorn, on the manager's own event loop, behind `guard.py`.

uvicorn's `Server` is made to own a process (signal handlers, a 10 Hz tick loop, exit on
a bind error), so only its protocol and config are used here: the listening sockets are
bound by `bind.py` (every address of a name on one port, dual-stack `:PORT`), served with
`loop.create_server`, and the `Date` header refreshed once a second by a timer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from email.utils import formatdate
from typing import Any, List, Optional, Tuple

from workspace_manager.web.bind import bind_listeners, fd_budget
from workspace_manager.web.guard import Guard, GuardLimits, guarded_protocol

log = logging.getLogger(__name__)

#: A WebSocket message a client may send (the event stream reads and drops them).
WS_MAX_BYTES = 65536
#: Seconds between the WebSocket library's pings, and for each pong to come back.
WS_PING_SECONDS = 20.0
#: Seconds that open requests (a page, an event stream) get to end when the server closes.
CLOSE_GRACE = 1.0


class WebServer:
    """Serve the ASGI `app` on `host:port` (port 0: a free one, reported by `start()`).

    `request_timeout` is the absolute deadline (seconds) for each request head, idle
    keep-alive time included; `write_timeout` how long a response may wait on a client
    that reads nothing; `max_connections` as `guard.GuardLimits`, capped at half the
    process's open-file limit. Errors: `start()` raises OSError when it cannot bind."""

    def __init__(
        self,
        host: str,
        port: int,
        app: Any,
        *,
        request_timeout: float = 5.0,
        write_timeout: float = 10.0,
        max_connections: int = 1024,
    ) -> None:
        self._host = host
        self._port = port
        self._app = app
        hard = fd_budget()
        self.guard = Guard(
            GuardLimits(
                head_timeout=request_timeout,
                write_timeout=write_timeout,
                max_connections=min(max_connections, hard),
                hard_limit=hard,
            )
        )
        self._servers: List[asyncio.AbstractServer] = []
        self._state: Any = None
        self._date_timer: Optional[asyncio.TimerHandle] = None
        self._config: Any = None
        self.addresses: List[Tuple[str, int]] = []  # every bound (host, port), once started

    async def start(self, sockets: Optional[List[socket.socket]] = None) -> Tuple[str, int]:
        """Bind and listen, or serve the listening `sockets` given (bound earlier by
        `bind.bind_listeners`: the manager binds its address before it starts its locations
        and imports the web stack only after); return the first bound (host, port). The
        given sockets are this server's from now on, closed if it cannot serve them."""
        if self._servers:
            raise RuntimeError("WebServer already started")
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        config = Config(
            self._app,
            http=guarded_protocol(self.guard),
            # a factory, not uvicorn's name for it: `websockets` is imported at the first
            # upgrade, not on the manager's start path (guard.py)
            ws=self.guard.websocket,  # type: ignore[arg-type]  # called as a class
            ws_max_size=WS_MAX_BYTES,
            ws_per_message_deflate=False,  # small JSON messages; no zlib state per page
            ws_ping_interval=WS_PING_SECONDS,
            ws_ping_timeout=WS_PING_SECONDS,
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            proxy_headers=False,  # never trust X-Forwarded-For: loopback decides write rights
            server_header=False,
            timeout_keep_alive=int(self.guard.limits.head_timeout) or 1,
        )
        config.load()
        _quiet_uvicorn()  # after Config, whose logging set-up would undo it
        self._config = config
        self._state = ServerState()
        self._refresh_date()
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self._state, app_state={}, _loop=loop
            )

        if sockets is None:
            sockets = await bind_listeners(self._host, self._port)
        try:
            for sock in sockets:
                self._servers.append(await loop.create_server(protocol, sock=sock))
        except BaseException:
            for sock in sockets:
                sock.close()
            await self.close()
            raise
        self.addresses = [_address(sock) for sock in sockets]
        return self.addresses[0]

    async def close(self) -> None:
        """Stop listening; let open requests end for up to CLOSE_GRACE seconds, then drop
        every connection and cancel what still runs."""
        if self._date_timer is not None:
            self._date_timer.cancel()
            self._date_timer = None
        for server in self._servers:
            server.close()
        state = self._state
        if state is not None:
            for conn in list(state.connections):
                conn.shutdown()  # idle ones close now, busy ones after their response
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CLOSE_GRACE
            while (state.connections or state.tasks) and loop.time() < deadline:
                await asyncio.sleep(0.02)
            for conn in list(state.connections):
                conn.drop()
            tasks = list(state.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 5.0)
            except asyncio.TimeoutError:
                log.warning("web server: a connection did not close in time")
        self._servers = []

    def _refresh_date(self) -> None:
        """RFC 9110 6.6.1: an origin server with a clock sends Date; uvicorn's own tick
        loop (10 Hz) is not used, so a 1 Hz timer keeps it current."""
        date = formatdate(usegmt=True).encode()
        self._state.default_headers = [(b"date", date), *self._config.encoded_headers]
        loop = asyncio.get_running_loop()
        self._date_timer = loop.call_later(1.0, self._refresh_date)


def _address(sock: socket.socket) -> Tuple[str, int]:
    name = sock.getsockname()
    return str(name[0]), int(name[1])


def _quiet_uvicorn() -> None:
    """uvicorn logs a warning for each malformed request (a client's fault, not news) and,
    when its access logger reaches any handler, a line per request (a probe a second)."""
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
    access = logging.getLogger("uvicorn.access")
    access.propagate = False  # its protocol logs requests only if this finds a handler
    access.handlers = []
    access.disabled = True  # and even where one is attached elsewhere (pytest's caplog)
