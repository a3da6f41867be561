"""The loader's socket server: accept loop, one reader thread per connection, worker threads
for user code.

A ping is answered by the connection's reader thread itself, so a sensor sleeping in a worker
never delays it. Anything malformed from a peer closes that one connection with one line on
stderr; nothing a peer sends can stop the server or reach repository code before the hello.

Before its hello a connection costs little and not for long (docs/protocol.md, "Handshake"):
frames of at most 64 KiB, the hello done within `hello_timeout` seconds of the accept however
slowly the bytes come, and at most `MAX_PENDING` such connections at once; a new one evicts
the oldest, so a flood of silent or dribbling peers cannot keep the manager out.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import stat
import sys
import threading
import time
from collections import OrderedDict

from ..protocol import errors as E
from ..protocol.address import Address, format_address, parse_address
from ..protocol.errors import ProtocolError
from ..protocol.framing import FrameDecoder, FrameError, encode_frame
from ..protocol.messages import Notification, Request, error_map, parse, short_repr
from ..version import PROTOCOL_VERSION, __version__

try:  # hmac.compare_digest without importing hmac, which pulls in hashlib and OpenSSL (~2 MB)
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover - other implementations
    from hmac import compare_digest  # type: ignore[no-redef]

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    import ssl
    from typing import Any, Dict, Optional, Set, Tuple

    from .heartbeat import Beat

    # imported lazily: the SDK must load inside the loader's load-error guard
    from .methods import Methods

SHUTDOWN_GRACE = 2.0  # seconds running calls get to finish after `shutdown` or SIGTERM
TLS_HANDSHAKE_TIMEOUT = 10.0
PRE_HELLO_MAX_FRAME = 64 * 1024  # frame limit before the hello has succeeded
RECV_SIZE = 64 * 1024  # reused buffer; below malloc's mmap threshold
MAX_PENDING = 16  # connections accepted that have not completed their hello


def log(location: str, message: str) -> None:
    """One line on the real stderr (fd 2), whatever repository code did to sys.stderr."""
    line = f"wsm-loader[{location}]: {message}\n".encode("utf-8", "replace")
    try:
        os.write(2, line)
    except OSError:
        pass


class Server:
    def __init__(
        self,
        *,
        listen: str,
        secret: str,
        location: str,
        methods: Methods,
        max_frame: int,
        tls: Optional[Dict[str, str]] = None,
        grace: float = SHUTDOWN_GRACE,
        hello_timeout: float = 10.0,
        beat: Optional[Beat] = None,
        beat_seconds: Optional[float] = None,
    ) -> None:
        self.listen = listen
        self.address: Address = parse_address(listen)
        self._secret = secret.encode("utf-8")
        self.location = location
        self.methods = methods
        self.max_frame = max_frame
        self.grace = grace
        self.hello_timeout = hello_timeout  # a connection must complete its hello within this
        # the local heartbeat (loader/heartbeat.py): a turn of `serve_forever` at least this often
        self._beat = beat
        self._beat_seconds = beat_seconds if beat is not None else None
        self._ssl: Optional[ssl.SSLContext] = None
        if tls is not None:
            import ssl  # only a TLS server pays for ssl's import time and memory

            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(tls["cert"], tls["key"])
        self.hello_info = {
            "protocol": PROTOCOL_VERSION,
            "server": f"wsm-loader {__version__}",
            "location": location,
            "pid": os.getpid(),
            "python": sys.version,
            "executable": sys.executable,
            "max_frame_bytes": max_frame,  # the client checks its requests against this
        }
        self.stopping = False
        self._listener: Optional[socket.socket] = None
        self._socket_id: Optional[Tuple[int, int]] = None  # (st_dev, st_ino) of our socket file
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()
        self._connections: Set[Connection] = set()
        self._pending: OrderedDict[Connection, None] = OrderedDict()  # oldest accept first
        # threads of connections without a hello, evicted ones still exiting included
        self._prehello_threads = 0
        self._prehello_room = threading.Condition(self._lock)
        self._inflight = 0
        self._idle = threading.Condition(self._lock)

    # ------------------------------------------------------------------ lifecycle

    def bind(self) -> None:
        """Create the listening socket (unix: mode 0600, a stale file replaced)."""
        addr = self.address
        if addr.is_unix:
            path = str(addr.target)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old_umask = os.umask(0o177)
            try:
                sock.bind(path)
            except BaseException:
                sock.close()
                raise
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            st = os.stat(path)
            self._socket_id = (st.st_dev, st.st_ino)
        else:
            target = addr.target
            assert not isinstance(target, str)  # a tcp:// address: (host, port)
            host, port = target
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
            family, socktype, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, socktype, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
            except BaseException:
                sock.close()
                raise
            if port == 0:  # report the port the kernel picked
                self.listen = format_address(family, sock.getsockname()[:2])
        sock.listen(128)
        sock.setblocking(False)
        self._listener = sock

    def request_stop(self) -> None:
        """Ask `serve_forever` to return; safe from signal handlers and any thread."""
        self.stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def serve_forever(self) -> None:
        """Accept connections until `request_stop`; meant for the main thread. With a
        heartbeat, every turn counts one, and a turn comes at least every `beat_seconds`:
        the thread that turns is the one that stops when the process is stopped or its
        interpreter is held (loader/heartbeat.py)."""
        assert self._listener is not None
        beat, period = self._beat, self._beat_seconds
        timeout = None
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self.stopping:
                if beat is not None and period:
                    beat.bump()
                    # wake half-way between two of the manager's looks, which it takes on a
                    # grid of the period (CLOCK_MONOTONIC is one clock for both): one wake a
                    # period, each look finds one turn since the last, late by up to half a
                    # period either way
                    timeout = period - (time.monotonic() - period / 2) % period
                for key, _ in sel.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept_ready()
                    else:
                        try:
                            os.read(self._wake_r, 4096)
                        except OSError:
                            pass

    def close(self) -> None:
        """Stop listening, give running calls `grace` seconds, close every connection."""
        self.stopping = True
        if self._listener is not None:
            self._listener.close()
            self._unlink_socket()
        deadline = time.monotonic() + self.grace
        with self._idle:
            while self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(remaining)
            connections = list(self._connections)
        for conn in connections:
            conn.close()

    def _unlink_socket(self) -> None:
        """Remove our socket file, unless another loader has bound the path since."""
        if not self.address.is_unix or self._socket_id is None:
            return
        path = str(self.address.target)
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == self._socket_id:
                os.unlink(path)
        except OSError:
            pass

    def _accept_ready(self) -> None:
        assert self._listener is not None
        while True:
            with self._lock:  # evicted threads must exit before more are started
                if self._prehello_threads >= 2 * MAX_PENDING and not self.stopping:
                    self._prehello_room.wait(0.5)
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log(self.location, f"accept failed: {exc}")
                    time.sleep(0.1)  # out of descriptors: do not spin
                return
            sock.setblocking(True)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock, _peer_name(sock, peer))
            evicted = None
            with self._lock:
                self._connections.add(conn)
                self._pending[conn] = None
                self._prehello_threads += 1
                if len(self._pending) > MAX_PENDING:
                    evicted, _ = self._pending.popitem(last=False)
            if evicted is not None:
                evicted.log(
                    f"more than {MAX_PENDING} connections waiting for a hello; closing the oldest"
                )
                evicted.hang_up()
            threading.Thread(target=conn.run, name=f"wsm-conn-{conn.peer}", daemon=True).start()

    # ------------------------------------------------------------------ bookkeeping

    def forget(self, conn: Connection) -> None:
        with self._lock:
            self._connections.discard(conn)
            self._pending.pop(conn, None)
            if not conn.authenticated:
                self._prehello_threads -= 1
                self._prehello_room.notify()

    def said_hello(self, conn: Connection) -> None:
        """`conn` is authenticated: no longer counted among those waiting for a hello."""
        with self._lock:
            self._pending.pop(conn, None)
            self._prehello_threads -= 1
            self._prehello_room.notify()

    def call_started(self) -> None:
        with self._lock:
            self._inflight += 1

    def call_finished(self) -> None:
        with self._idle:
            self._inflight -= 1
            if not self._inflight:
                self._idle.notify_all()

    def check_secret(self, secret: Any) -> bool:
        if not isinstance(secret, str):
            return False
        return compare_digest(secret.encode("utf-8", "surrogateescape"), self._secret)


def _peer_name(sock: socket.socket, peer: Any) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix-fd{sock.fileno()}"
    return format_address(sock.family, peer[:2])


class Connection:
    """One client connection: a reader thread, a send lock, worker threads for user code."""

    def __init__(self, server: Server, sock: Any, peer: str) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.authenticated = False
        self.closed = False
        # the hello must be done by then, however slowly its bytes arrive (monotonic seconds)
        self.hello_deadline = time.monotonic() + server.hello_timeout
        self._decoder = FrameDecoder()
        self._send_lock = threading.Lock()
        # The largest answer the client accepts: ours, or less when its hello says so.
        self.reply_limit = server.max_frame

    def log(self, message: str) -> None:
        log(self.server.location, f"connection {self.peer}: {message}")

    def hang_up(self) -> None:
        """End the connection from another thread: its reader wakes up to EOF and closes
        the socket itself, so the descriptor cannot be reused under a blocked `recv`."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.hang_up()
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, message: Any) -> None:
        try:
            frame = encode_frame(message)
        except (TypeError, ValueError, OverflowError) as exc:  # an unserialisable result
            frame = encode_frame(
                [
                    1,
                    message[1],
                    error_map(E.INTERNAL_ERROR, f"result cannot be encoded: {exc}"),
                    None,
                ]
            )
        if len(frame) - 4 > self.reply_limit:
            # That call fails, the connection lives: the peer would have to close it.
            error = error_map(
                E.MESSAGE_TOO_LARGE, E.too_large("the answer", len(frame) - 4, self.reply_limit)
            )
            frame = encode_frame([1, message[1], error, None])
        try:
            with self._send_lock:
                self.sock.sendall(frame)
        except OSError as exc:
            if not self.closed:
                self.log(f"send failed: {exc}; closing")
            self.close()

    # ------------------------------------------------------------------ reader thread

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a wsm bug: keep the process alive, drop the connection
            self.log(f"internal error: {type(exc).__name__}: {exc}; closing")
        finally:
            self.close()
            self.server.forget(self)

    def _run(self) -> None:
        server = self.server
        tls = server._ssl is not None
        if server._ssl is not None:
            if not self._tls_handshake(server._ssl):
                return
        # Until the hello has succeeded, a peer may not make us buffer large frames.
        decoder = self._decoder = FrameDecoder(min(server.max_frame, PRE_HELLO_MAX_FRAME))
        buf = bytearray(RECV_SIZE)
        view = memoryview(buf)
        while not self.closed:
            try:
                if self.authenticated:
                    n = self.sock.recv_into(buf, 0, None) if tls else self.sock.recv_into(buf)
                else:
                    remaining = self.hello_deadline - time.monotonic()
                    if remaining <= 0:
                        raise socket.timeout()
                    if tls:
                        n = self.sock.recv_into(buf, 0, remaining)
                    else:
                        self.sock.settimeout(remaining)  # blocking again once authenticated
                        n = self.sock.recv_into(buf)
            except socket.timeout:
                self.log(f"no hello within {server.hello_timeout:g}s; closing")
                return
            except OSError as exc:
                if not self.closed:
                    self.log(f"receive failed: {exc}; closing")
                return
            if not n:
                if decoder.has_partial:
                    self.log("truncated frame at EOF; closing")
                return
            try:
                objects = decoder.feed(view[:n])
            except FrameError as exc:
                for obj in exc.objects:
                    if not self._handle(obj):
                        return
                self.log(f"{exc}; closing")
                return
            for obj in objects:
                if not self._handle(obj):
                    return

    def _tls_handshake(self, context: ssl.SSLContext) -> bool:
        import ssl

        from ..protocol.tlsio import LockedTLSSocket

        try:
            remaining = self.hello_deadline - time.monotonic()
            self.sock.settimeout(max(0.001, min(TLS_HANDSHAKE_TIMEOUT, remaining)))
            self.sock = LockedTLSSocket(context.wrap_socket(self.sock, server_side=True))
            return True
        except (OSError, ssl.SSLError) as exc:
            self.log(f"TLS handshake failed: {exc}; closing")
            return False

    def _handle(self, obj: Any) -> bool:
        """Act on one decoded frame; False means close the connection."""
        try:
            msg = parse(obj)
        except ProtocolError as exc:
            self.log(f"bad message: {exc}; closing")
            return False
        if type(msg) is not Request:
            if type(msg) is Notification and self.authenticated:
                return True  # nothing a client notifies needs an answer
            self.log(f"unexpected {type(msg).__name__.lower()} from client; closing")
            return False
        if not self.authenticated or msg.method == "hello":
            return self._hello(msg)
        server = self.server
        method = msg.method
        if server.stopping:
            self.send(
                [1, msg.id, error_map(E.SHUTTING_DOWN, "the location is shutting down"), None]
            )
            return True
        handler = server.methods.inline.get(method)
        if handler is not None:
            try:
                result = handler(msg.params)
            except BaseException as exc:
                self.send([1, msg.id, server.methods.error(exc, user_code=False), None])
            else:
                self.send([1, msg.id, None, result])
            return True
        handler = server.methods.user_code.get(method)
        if handler is not None:
            server.call_started()
            try:
                threading.Thread(
                    target=self._run_user_code,
                    args=(msg, handler),
                    name=f"wsm-call-{method}",
                    daemon=True,
                ).start()
            except BaseException:
                server.call_finished()
                raise
            return True
        if method == "shutdown":
            if msg.params:
                error = error_map(E.INVALID_PARAMS, "shutdown takes no parameters")
                self.send([1, msg.id, error, None])
                return True
            self.send([1, msg.id, None, {}])
            server.request_stop()
            return True
        self.send(
            [1, msg.id, error_map(E.METHOD_NOT_FOUND, f"no method {short_repr(method)}"), None]
        )
        return True

    def _run_user_code(self, msg: Request, handler: Any) -> None:
        try:
            try:
                result = handler(msg.params)
            except BaseException as exc:  # SystemExit or KeyboardInterrupt from user code too
                reply = [1, msg.id, self.server.methods.error(exc, user_code=True), None]
            else:
                reply = [1, msg.id, None, result]
            if not self.closed:
                self.send(reply)
        except BaseException as exc:
            self.log(f"internal error answering {msg.method}: {exc!r}")
        finally:
            self.server.call_finished()

    def _hello(self, msg: Request) -> bool:
        server = self.server
        params = msg.params
        reason = None
        protocol = params.get("protocol")
        if msg.method != "hello":
            reason = f"the first request must be 'hello', not {short_repr(msg.method)}"
        elif type(protocol) is not int:
            reason = "hello needs an integer 'protocol'"
        elif protocol != PROTOCOL_VERSION:
            reason = f"protocol version {short_repr(protocol)} is not supported (this server speaks {PROTOCOL_VERSION})"
        elif not server.check_secret(params.get("secret")):
            reason = "wrong secret"
        if reason is not None:
            self.log(f"handshake refused: {reason}")
            self.send([1, msg.id, error_map(E.HANDSHAKE_ERROR, reason), None])
            return False
        client_limit = params.get("max_frame_bytes")
        if type(client_limit) is int and client_limit >= 1024:
            self.reply_limit = min(server.max_frame, client_limit)
        if not self.authenticated:
            self.authenticated = True
            server.said_hello(self)
            self._decoder.max_frame = server.max_frame
            if server._ssl is None:  # a TLS socket keeps its timeout for the lock's sake
                self.sock.settimeout(None)
        self.send([1, msg.id, None, server.hello_info])
        return True
