"""The blocking client against a scripted in-process server on real sockets."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from workspace_manager.protocol import messages
from workspace_manager.protocol.client import Client
from workspace_manager.protocol.errors import (
    CallTimeout,
    HandshakeError,
    ProtocolError,
    RemoteError,
)
from workspace_manager.protocol.framing import HEADER, FrameDecoder, encode_frame

SECRET = "s3cret"


class FakeServer:
    """Accepts connections; answers hello, then runs `handler(conn, request)` per request."""

    def __init__(self, tmp_path, handler, tcp=False):
        if tcp:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        else:
            path = str(tmp_path / "s.sock")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
            self.address = "unix:" + path
        self.sock.listen()
        self.handler = handler
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        decoder = FrameDecoder()
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            for obj in decoder.feed(data):
                req = messages.parse(obj)
                if req.method == "hello":
                    if req.params.get("secret") == SECRET:
                        conn.sendall(
                            encode_frame(messages.response(req.id, None, {"server": "fake"}))
                        )
                    else:
                        err = messages.error_map("HandshakeError", "wrong secret")
                        conn.sendall(encode_frame(messages.response(req.id, err)))
                        conn.close()
                        return
                else:
                    self.handler(conn, req)

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(handler, tcp=False):
        server = FakeServer(tmp_path, handler, tcp)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.close()


def echo(conn, req):
    if req.method == "fail":
        err = messages.error_map("NotFound", "nothing", "tb")
        conn.sendall(encode_frame(messages.response(req.id, err)))
    else:
        conn.sendall(encode_frame(messages.response(req.id, None, [req.method, req.params])))


@pytest.mark.parametrize("tcp", [False, True])
def test_handshake_and_calls(serve, tcp):
    server = serve(echo, tcp=tcp)
    with Client(server.address, SECRET) as client:
        assert client.server_info == {"server": "fake"}
        assert client.call("m", {"x": 1}) == ["m", {"x": 1}]
        assert client.call("m") == ["m", {}]
        with pytest.raises(RemoteError) as info:
            client.call("fail")
        assert (info.value.type, info.value.message, info.value.traceback) == (
            "NotFound",
            "nothing",
            "tb",
        )
        big = {"blob": os.urandom(3 * 1024 * 1024)}  # larger than the initial receive buffer
        assert client.call("m", big) == ["m", big]
        assert client.call("m", {"after": True}) == ["m", {"after": True}]
    with pytest.raises(ConnectionError):
        client.call("m")


def test_wrong_secret_raises_handshake_error(serve):
    server = serve(echo)
    with pytest.raises(HandshakeError, match="wrong secret"):
        Client(server.address, "nope")


def test_responses_out_of_order_reach_the_right_threads(serve):
    release = threading.Event()
    slow_received = threading.Event()

    def handler(conn, req):
        if req.method == "slow":
            slow_received.set()

            def later():
                release.wait(10)
                conn.sendall(encode_frame(messages.response(req.id, None, "slow")))

            threading.Thread(target=later, daemon=True).start()
        else:
            conn.sendall(encode_frame(messages.response(req.id, None, req.method)))

    server = serve(handler)
    with Client(server.address, SECRET) as client:
        results = []
        slow = threading.Thread(target=lambda: results.append(client.call("slow")))
        slow.start()
        assert slow_received.wait(10)  # the slow call's thread is now the reader
        for i in range(50):
            assert client.call(f"fast{i}") == f"fast{i}"
        assert results == []
        release.set()
        slow.join(10)
        assert results == ["slow"]


def test_timeout_leaves_the_connection_usable(serve):
    def handler(conn, req):
        if req.method == "never":
            return
        conn.sendall(encode_frame(messages.response(req.id, None, "ok")))

    server = serve(handler)
    with Client(server.address, SECRET) as client:
        t0 = time.monotonic()
        with pytest.raises(CallTimeout):
            client.call("never", timeout=0.2)
        assert time.monotonic() - t0 < 5
        assert client.call("again") == "ok"


def test_partial_frame_at_timeout_is_completed_by_the_next_read(serve):
    def handler(conn, req):
        frame = encode_frame(messages.response(req.id, None, "x" * 100))
        if req.method == "split":
            conn.sendall(frame[:10])
            time.sleep(0.5)
            conn.sendall(frame[10:])
        else:
            conn.sendall(frame)

    server = serve(handler)
    with Client(server.address, SECRET) as client:
        with pytest.raises(CallTimeout):
            client.call("split", timeout=0.1)
        assert client.call("whole") == "x" * 100


@pytest.mark.parametrize(
    "reply",
    [
        HEADER.pack(1) + b"\xc1",  # undecodable
        HEADER.pack(0),  # zero length
        HEADER.pack(2**31),  # oversized
        encode_frame({"not": "a message"}),
        encode_frame([0, 1, "callback", {}]),  # servers do not send requests
    ],
)
def test_malformed_answers_raise_protocol_error_and_close(serve, reply):
    server = serve(lambda conn, req: conn.sendall(reply))
    client = Client(server.address, SECRET)
    with pytest.raises(ProtocolError):
        client.call("m")
    assert client.closed
    with pytest.raises(ConnectionError):
        client.call("m")


def test_server_closing_raises_connection_error(serve):
    server = serve(lambda conn, req: conn.close())
    with Client(server.address, SECRET) as client:
        with pytest.raises(ConnectionError):
            client.call("m")


def test_connect_failure_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        Client("unix:" + str(tmp_path / "missing.sock"), SECRET, timeout=1)
    with pytest.raises(ValueError):
        Client("http://x", SECRET)
