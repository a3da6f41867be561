"""A TLS socket one thread can read while others write.

OpenSSL does not allow one SSL object to be used by two threads at once, and a TLS read may
itself need to write (and the reverse). Both our ends read in one thread and write from
others, so TLS connections go through this wrapper: the socket is non-blocking, every SSL
call is made under one lock, and waiting for the network happens outside it.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Any, Optional


class LockedTLSSocket:
    def __init__(self, sock: ssl.SSLSocket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self.sock.fileno()

    def _wait(self, want_write: bool, deadline: Optional[float]) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLOUT if want_write else select.POLLIN)
        timeout_ms = (
            None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000) + 1)
        )
        if not poller.poll(timeout_ms) and deadline is not None and time.monotonic() >= deadline:
            raise socket.timeout("timed out")

    def recv_into(self, buffer: Any, nbytes: int = 0, timeout: Optional[float] = None) -> int:
        """Like socket.recv_into; `timeout` (seconds) raises socket.timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                try:
                    return self.sock.recv_into(buffer, nbytes)
                except ssl.SSLWantReadError:
                    want_write = False
                except ssl.SSLWantWriteError:
                    want_write = True
                except ssl.SSLZeroReturnError:
                    return 0
            self._wait(want_write, deadline)

    def sendall(self, data: Any) -> None:
        view = memoryview(data)
        while view:
            with self._lock:
                try:
                    sent = self.sock.send(view)
                except ssl.SSLWantWriteError:
                    want_write = True
                except ssl.SSLWantReadError:
                    want_write = False
                else:
                    view = view[sent:]
                    continue
            self._wait(want_write, None)

    def shutdown(self, how: int) -> None:
        # On the raw socket: SSL's own close_notify needs the lock and may block.
        socket.socket.shutdown(self.sock, how)

    def close(self) -> None:
        self.sock.close()
