"""A blocking client for one location connection, safe to share between threads.

Calls from several threads are multiplexed on one socket: whichever waiting caller finds no
reader becomes the reader and hands responses to their callers (leader/follower), so a slow
call (a sensor) never holds back a ping from another thread, and a single-threaded caller pays
for no thread hand-off at all. The receive path reuses one buffer with `recv_into`.
"""

from __future__ import annotations

import _socket
import _thread
import itertools
import struct
import time

from ..version import PROTOCOL_VERSION, __version__
from . import messages
from .address import parse_address
from .codec import DecodeError, packb, unpackb
from .errors import CallTimeout, HandshakeError, ProtocolError, RemoteError
from .framing import DEFAULT_MAX_FRAME, HEADER, FrameError, check_length

# `wsm status` is one short call on a Unix socket, and its start is mostly imports: the C
# `_socket` serves it where `socket` (its enum conversions and `selectors`, ~5 ms) is imported
# only for TCP; locks come from `_thread`, and `threading` (~1.5 ms) only when a second thread
# must wait (`_follow`). ssl (~8 ms) is for a TLS connection, and typing for the type checkers
# (they take any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    import threading
    from typing import Any, Dict, NoReturn, Optional, Set

_unpack_header = HEADER.unpack_from
_pack_header = HEADER.pack
_monotonic = time.monotonic
_INITIAL_BUFFER = 64 * 1024
_TIMEVAL = struct.Struct("@ll")


class _Slot:
    __slots__ = ("done", "error", "result", "wake")

    def __init__(self) -> None:
        self.done = False
        self.error: Optional[Dict[str, Any]] = None
        self.result: Any = None
        self.wake: Optional[threading.Event] = None  # set up only for a caller that must wait


class Client:
    """Connects to `address` ("unix:PATH" or "tcp://HOST:PORT") and performs the hello handshake.

    `server_info` holds the hello result. `call` raises RemoteError (the server's error map),
    CallTimeout, ProtocolError (a malformed answer; the connection is closed) or ConnectionError.
    """

    def __init__(
        self,
        address: str,
        secret: str,
        *,
        timeout: float = 30.0,
        ssl_context: Optional[ssl.SSLContext] = None,
        server_hostname: Optional[str] = None,
        client_name: str = "wsm",
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.max_frame = max_frame
        self._ids = itertools.count(1)
        self._pending: Dict[int, _Slot] = {}
        self._send_lock = _thread.allocate_lock()
        self._read_lock = _thread.allocate_lock()
        self._followers: Set[_Slot] = set()
        self._followers_lock = _thread.allocate_lock()
        self._dead: Optional[BaseException] = None
        self._buf = bytearray(_INITIAL_BUFFER)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._sock = self._connect(address, timeout, ssl_context, server_hostname)
        # Plain sockets stay in blocking mode with kernel timeouts (see _set_receive_timeout).
        self._tls = ssl_context is not None
        self._kernel_timeouts = not self._tls and hasattr(_socket, "SO_RCVTIMEO")
        self._rcvtimeo = -1.0
        if self._kernel_timeouts:
            try:
                self._sock.settimeout(None)
                sec = max(1, int(timeout))
                self._sock.setsockopt(
                    _socket.SOL_SOCKET, _socket.SO_SNDTIMEO, _TIMEVAL.pack(sec, 0)
                )
            except OSError:
                self._kernel_timeouts = False
                self._sock.settimeout(timeout)
        try:
            self.server_info: Dict[str, Any] = self._hello(secret, client_name, timeout)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ public

    def call(
        self, method: str, params: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None
    ) -> Any:
        """Send one request and wait for its response."""
        return self._call(next(self._ids), method, params, timeout)

    def close(self) -> None:
        self._fail(ConnectionError(f"client for {self.address} is closed"))

    @property
    def closed(self) -> bool:
        return self._dead is not None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ connection

    @staticmethod
    def _connect(
        address: str,
        timeout: float,
        ssl_context: Optional[ssl.SSLContext],
        server_hostname: Optional[str],
    ) -> Any:
        addr = parse_address(address)
        sock: Any  # `_socket.socket`, or `socket.socket` where ssl wraps it or for TCP
        if addr.is_unix:
            if ssl_context is None:
                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            else:  # ssl wraps the `socket` module's class
                import socket

                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(addr.target)
            except BaseException:
                sock.close()
                raise
        else:
            target: Any = addr.target  # (host, port) for tcp
            host, port = target
            import socket

            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            hostname = server_hostname
            if hostname is None and not addr.is_unix:
                hostname = addr.target[0]  # type: ignore[index]
            try:
                from .tlsio import LockedTLSSocket

                return LockedTLSSocket(ssl_context.wrap_socket(sock, server_hostname=hostname))
            except BaseException:
                sock.close()
                raise
        return sock

    def _hello(self, secret: str, client_name: str, timeout: float) -> Dict[str, Any]:
        params = {
            "protocol": PROTOCOL_VERSION,
            "secret": secret,
            "client": f"{client_name} {__version__}",
            "max_frame_bytes": self.max_frame,  # larger answers are refused call by call
        }
        try:
            info = self._call(0, "hello", params, timeout)
        except HandshakeError:
            raise
        except RemoteError as exc:
            raise HandshakeError(exc.type, exc.message, exc.traceback) from None
        if not isinstance(info, dict):
            raise ProtocolError("hello answer is not a map")
        return info

    def _fail(self, exc: BaseException) -> None:
        """Mark the connection dead (once), close the socket, wake every waiting caller."""
        with self._followers_lock:
            if self._dead is not None:
                return
            self._dead = exc
            followers = list(self._followers)
        for slot in followers:
            if slot.wake is not None:
                slot.wake.set()
        try:
            self._sock.shutdown(_socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        try:
            self._sock.close()
        except (OSError, AttributeError):
            pass

    def _raise_dead(self) -> NoReturn:
        dead = self._dead
        if isinstance(dead, ConnectionError):
            raise ConnectionError(str(dead))
        raise ConnectionError(f"connection to {self.address} failed: {dead}")

    # ------------------------------------------------------------------ calls
    #
    # Leader/follower: a caller that gets `_read_lock` reads frames and hands each response
    # to its slot until its own has come; a caller that does not waits on its slot's event,
    # woken by the leader either with its response or when the leader leaves (to take over).

    def _call(
        self, id_: int, method: str, params: Optional[Dict[str, Any]], timeout: Optional[float]
    ) -> Any:
        payload = packb([0, id_, method, {} if params is None else params])
        frame = _pack_header(len(payload)) + payload
        deadline = _monotonic() + (self.timeout if timeout is None else timeout)
        slot = _Slot()
        pending = self._pending
        pending[id_] = slot
        try:
            if self._dead is not None:
                self._raise_dead()
            try:
                with self._send_lock:
                    self._sock.sendall(frame)
            except OSError as exc:
                self._fail(exc)
                self._raise_dead()
            if self._read_lock.acquire(False):
                self._lead(slot, deadline)
            if not slot.done:
                self._follow(slot, deadline)
        finally:
            if not slot.done:
                pending.pop(id_, None)
        if slot.error is not None:
            raise RemoteError.from_map(slot.error)
        return slot.result

    def _lead(self, slot: _Slot, deadline: float) -> None:
        """Holding `_read_lock`: read until our response arrives; then hand the role over."""
        try:
            self._read_until(slot, deadline)
        finally:
            self._read_lock.release()
            if self._followers:
                with self._followers_lock:
                    followers = list(self._followers)
                for other in followers:
                    if other.wake is not None:
                        other.wake.set()

    def _follow(self, slot: _Slot, deadline: float) -> None:
        import threading

        wake = slot.wake = threading.Event()
        with self._followers_lock:
            self._followers.add(slot)
        try:
            while not slot.done:
                if self._dead is not None:
                    self._raise_dead()
                if self._read_lock.acquire(False):
                    self._lead(slot, deadline)
                    continue
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    raise CallTimeout(f"no answer from {self.address} in time")
                wake.wait(remaining)
                wake.clear()
        finally:
            with self._followers_lock:
                self._followers.discard(slot)

    def _read_until(self, slot: _Slot, deadline: float) -> None:
        """As the reader: dispatch responses until our own arrives (or the deadline passes)."""
        pending = self._pending
        while not slot.done:
            if self._dead is not None:
                self._raise_dead()
            try:
                obj = self._read_frame(deadline)
            except FrameError as exc:
                self._fail(ProtocolError(str(exc)))
                raise ProtocolError(str(exc)) from None
            except OSError as exc:  # ConnectionError included
                self._fail(exc)
                self._raise_dead()
            # Fast path: a well-formed success response; anything else gets the full check.
            if (
                type(obj) is list
                and len(obj) == 4
                and obj[0] == 1
                and type(obj[0]) is int
                and obj[2] is None
                and type(obj[1]) is int
            ):
                id_, error, result = obj[1], None, obj[3]
            else:
                try:
                    msg = messages.parse(obj)
                except ProtocolError as exc:
                    self._fail(exc)
                    raise
                if type(msg) is messages.Request:
                    err = ProtocolError("the server sent a request")
                    self._fail(err)
                    raise err
                if type(msg) is not messages.Response:
                    continue  # notifications carry nothing a client must act on
                id_, error, result = msg.id, msg.error, msg.result
            waiting = pending.pop(id_, None)
            if waiting is None:
                continue  # the answer to a call that timed out
            waiting.error = error
            waiting.result = result
            waiting.done = True
            if waiting is not slot and waiting.wake is not None:
                waiting.wake.set()

    def _read_frame(self, deadline: float) -> Any:
        while True:
            start, end = self._start, self._end
            avail = end - start
            if avail >= 4:
                length = _unpack_header(self._buf, start)[0]
                if length == 0 or length > self.max_frame:
                    check_length(length, self.max_frame)
                if avail >= 4 + length:
                    body = bytes(self._view[start + 4 : start + 4 + length])
                    start += 4 + length
                    if start == end:
                        self._start = self._end = 0
                        if len(self._buf) > 16 * _INITIAL_BUFFER:  # after a huge frame
                            self._view.release()
                            self._buf = bytearray(_INITIAL_BUFFER)
                            self._view = memoryview(self._buf)
                    else:
                        self._start = start
                    try:
                        return unpackb(body)
                    except DecodeError as exc:
                        raise FrameError(f"undecodable frame: {exc}") from None
                if start + 4 + length > len(self._buf):
                    self._make_room(4 + length)
            elif start + 4 > len(self._buf):
                self._make_room(4)
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise CallTimeout(f"no answer from {self.address} in time")
            try:
                if self._kernel_timeouts:
                    if abs(self._rcvtimeo - remaining) > 0.05:
                        self._set_receive_timeout(remaining)
                    n = self._sock.recv_into(self._view[self._end :])
                elif self._tls:
                    n = self._sock.recv_into(self._view[self._end :], 0, remaining)
                else:
                    self._sock.settimeout(remaining)
                    n = self._sock.recv_into(self._view[self._end :])
            except (_socket.timeout, BlockingIOError):
                continue  # the check above raises CallTimeout once the deadline has passed
            if not n:
                if self._end > self._start:
                    raise FrameError("connection closed in the middle of a frame")
                raise ConnectionError(f"connection to {self.address} closed by the server")
            self._end += n

    def _set_receive_timeout(self, remaining: float) -> None:
        """SO_RCVTIMEO instead of Python's socket timeout: a blocking recv is one syscall,
        where a timeout socket polls first. The caller re-sets it only when it is off by more
        than 50 ms, so a deadline may be overshot by that much at most."""
        sec = int(remaining)
        usec = int((remaining - sec) * 1e6)
        if not sec and not usec:
            usec = 1  # zero would mean "wait forever"
        self._sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, _TIMEVAL.pack(sec, usec))
        self._rcvtimeo = remaining

    def _make_room(self, frame_size: int) -> None:
        """Ensure the buffer can hold `frame_size` bytes from `_start` (compact or grow)."""
        if self._start + frame_size <= len(self._buf):
            return
        data = self._buf[self._start : self._end]
        if frame_size > len(self._buf):
            self._view.release()
            self._buf = bytearray(max(frame_size, 2 * len(self._buf)))
            self._view = memoryview(self._buf)
        self._buf[: len(data)] = data
        self._start, self._end = 0, len(data)
