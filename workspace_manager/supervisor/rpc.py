"""The manager's asyncio client for a location: many calls in flight on one connection.

Framing and message shapes come from `protocol/`, shared with the loader and the blocking
client; this module only adds the asyncio plumbing (a reader task resolving futures by id).
Whatever the peer is (a local loader, or a remote server that may be hostile), connecting and
the hello together must finish within `timeout` seconds, the hello answer may be at most
64 KiB, and large answers are decoded off the event loop (supervisor/frames.py).
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from typing import Any, Callable, Dict, Optional, Tuple

from workspace_manager.protocol import framing, messages
from workspace_manager.protocol.errors import (
    CallTimeout,
    MessageTooLarge,
    ProtocolError,
    RemoteError,
    too_large,
)
from workspace_manager.supervisor.frames import PRE_HELLO_MAX_FRAME, FrameReader
from workspace_manager.version import PROTOCOL_VERSION, __version__


def _expire(fut: asyncio.Future, method: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(CallTimeout(f"{method} timed out after {timeout:g}s"))


class AsyncConnection:
    """One authenticated connection to a location (loader or `wsm serve`)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_frame: int = framing.DEFAULT_MAX_FRAME,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.max_frame = max_frame
        # The server's limit, from its hello answer: a larger request fails alone, unsent.
        self.peer_max_frame: Optional[int] = None
        # until the hello is answered, as the servers do for their clients
        self._frames = FrameReader(reader, min(max_frame, PRE_HELLO_MAX_FRAME))
        self._ids = itertools.count(1)
        self._pending: Dict[int, asyncio.Future] = {}
        self._closed: Optional[BaseException] = None
        self._closed_event = asyncio.Event()
        self._task = asyncio.ensure_future(self._read_loop())
        self.server_info: Dict[str, Any] = {}
        # (method, seconds, error or None) after each completed call: the manager's metrics.
        self.observer: Optional[Callable[[str, float, Optional[BaseException]], None]] = None

    @classmethod
    async def open(
        cls,
        address: str,
        secret: str,
        *,
        timeout: float = 10.0,
        ssl_context: Optional[ssl.SSLContext] = None,
        server_hostname: Optional[str] = None,
        max_frame: int = framing.DEFAULT_MAX_FRAME,
    ) -> AsyncConnection:
        async def connect() -> AsyncConnection:
            if address.startswith("unix:"):
                reader, writer = await asyncio.open_unix_connection(address[5:], limit=2**20)
            elif address.startswith("tcp://"):
                host, _, port = address[6:].rpartition(":")
                reader, writer = await asyncio.open_connection(
                    host.strip("[]"),
                    int(port),
                    ssl=ssl_context,
                    server_hostname=server_hostname if ssl_context else None,
                    limit=2**20,
                )
            else:
                raise ValueError(f"unsupported address {address!r}")
            conn = cls(reader, writer, max_frame)
            try:
                conn.server_info = await conn._call_raw(
                    "hello",
                    {
                        "protocol": PROTOCOL_VERSION,
                        "secret": secret,
                        "client": f"wsm {__version__}",
                        # so the server refuses an answer we could not read, call by call
                        "max_frame_bytes": max_frame,
                    },
                )
                info = conn.server_info if isinstance(conn.server_info, dict) else {}
                limit = info.get("max_frame_bytes")
                if type(limit) is int and limit > 0:
                    conn.peer_max_frame = limit
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            return await asyncio.wait_for(connect(), timeout)
        except asyncio.TimeoutError:
            raise CallTimeout(f"connecting to {address} timed out after {timeout:g}s") from None

    async def _read_loop(self) -> None:
        error: BaseException = ConnectionError("connection closed by the location")
        try:
            while True:
                obj = await self._frames.read()
                if obj is framing.EOF:
                    break
                msg = messages.parse(obj)
                if isinstance(msg, messages.Response):
                    # The first answer is the hello's (open() sends nothing else before it).
                    self._frames.max_frame = self.max_frame
                    fut = self._pending.pop(msg.id, None)
                    if fut is not None and not fut.done():
                        if msg.error is not None:
                            fut.set_exception(RemoteError.from_map(msg.error))
                        else:
                            fut.set_result(msg.result)
        except (framing.FrameError, ProtocolError) as exc:
            error = ProtocolError(f"bad frame from location: {exc}")
        except (OSError, asyncio.IncompleteReadError) as exc:
            error = ConnectionError(str(exc) or type(exc).__name__)
        except asyncio.CancelledError:
            error = ConnectionError("connection closed")
        finally:
            self._fail_all(error)

    def _fail_all(self, error: BaseException) -> None:
        self._closed = error
        self._closed_event.set()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)
        try:
            self._writer.close()
        except Exception:
            pass

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def close_reason(self) -> Optional[str]:
        return str(self._closed) if self._closed is not None else None

    async def wait_closed(self) -> None:
        """Returns once the peer or we closed the connection."""
        await self._closed_event.wait()

    def _send(self, method: str, params: Optional[dict]) -> Tuple[int, asyncio.Future]:
        """Send one request; its id and the future its answer resolves."""
        if self._closed is not None:
            raise ConnectionError(str(self._closed))
        msg_id = next(self._ids)
        frame = framing.encode_frame(messages.request(msg_id, method, params or {}))
        if self.peer_max_frame is not None and len(frame) - 4 > self.peer_max_frame:
            raise MessageTooLarge(
                message=too_large(f"the {method} request", len(frame) - 4, self.peer_max_frame)
            )
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        self._writer.write(frame)
        return msg_id, fut

    async def _call_raw(self, method: str, params: Optional[dict]) -> Any:
        msg_id, fut = self._send(method, params)
        try:
            return await fut
        finally:
            self._pending.pop(msg_id, None)

    async def call(self, method: str, params: Optional[dict] = None, timeout: float = 30.0) -> Any:
        """Call ``method``; a timeout fails this call only and leaves the connection usable.

        The timeout is a timer on the answer's future, not `asyncio.wait_for`: no task per
        call (the daemon makes ~70 calls a second with 2,000 instigators)."""
        started = time.perf_counter()
        error: Optional[BaseException] = None
        timer: Optional[asyncio.TimerHandle] = None
        msg_id = -1
        try:
            msg_id, fut = self._send(method, params)
            timer = asyncio.get_running_loop().call_later(timeout, _expire, fut, method, timeout)
            return await fut
        except asyncio.CancelledError:
            started = -1.0  # not completed: not observed
            raise
        except BaseException as exc:
            error = exc
            if isinstance(exc, CallTimeout):
                raise exc from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._pending.pop(msg_id, None)
            if self.observer is not None and started >= 0:
                try:
                    self.observer(method, time.perf_counter() - started, error)
                except Exception:
                    pass

    def request(self, method: str, params: Optional[dict] = None) -> asyncio.Future:
        """Send one call; the future of its answer (its result, or RemoteError,
        ConnectionError), with no task, coroutine or timer of its own: the caller bounds the
        wait (heartbeats, one per location each period, through looplag). Cancelling the
        future forgets the call; a late answer is dropped. Raises ConnectionError and
        MessageTooLarge as `call` does."""
        started = time.perf_counter()
        msg_id, fut = self._send(method, params)

        def answered(done: asyncio.Future) -> None:
            self._pending.pop(msg_id, None)
            if self.observer is not None and not done.cancelled():  # cancelled: not completed
                try:
                    self.observer(method, time.perf_counter() - started, done.exception())
                except Exception:
                    pass

        fut.add_done_callback(answered)
        return fut

    def close(self) -> None:
        if not self._task.done():
            self._task.cancel()
        try:
            self._writer.close()
        except Exception:
            pass
