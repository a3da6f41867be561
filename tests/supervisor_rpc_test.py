"""The manager's asyncio client (supervisor/rpc.py): a call's timeout is a timer on its own
answer, so it fails that call alone and leaves the connection and the other calls alone."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import msgpack
import pytest

from workspace_manager.protocol.errors import CallTimeout
from workspace_manager.supervisor.rpc import AsyncConnection


def _server(sock: socket.socket) -> None:
    """Answer every request at once with its method's name, except `hang`: never."""
    buf = b""
    with sock:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                n = struct.unpack(">I", buf[:4])[0]
                msg = msgpack.unpackb(buf[4 : 4 + n], raw=False)
                buf = buf[4 + n :]
                if msg[2] == "hang":
                    continue
                body = msgpack.packb([1, msg[1], None, {"method": msg[2]}], use_bin_type=True)
                try:
                    sock.sendall(struct.pack(">I", len(body)) + body)
                except OSError:
                    return


def test_a_timeout_fails_its_call_alone_and_leaves_no_pending_answer() -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair()
        threading.Thread(target=_server, args=(theirs,), daemon=True).start()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        conn = AsyncConnection(reader, writer)
        try:
            hung = asyncio.ensure_future(conn.call("hang", {}, timeout=0.3))
            answers = await asyncio.gather(*(conn.call(f"m{i}", {}, 5.0) for i in range(50)))
            assert answers == [{"method": f"m{i}"} for i in range(50)]
            with pytest.raises(CallTimeout, match="hang timed out after 0.3s"):
                await hung
            assert await conn.call("after", {}, 5.0) == {"method": "after"}
            assert not conn._pending  # the timed-out call's entry went with it
            # a cancelled call leaves nothing behind either
            cancelled = asyncio.ensure_future(conn.call("hang", {}, timeout=60.0))
            await asyncio.sleep(0.05)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            assert not conn._pending
            assert not conn.closed
        finally:
            conn.close()

    asyncio.run(main())
