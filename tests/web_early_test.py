"""The health address before the web stack is imported (web/early.py): the probes answered
byte for byte as the web stack answers them, every other request held and then answered by
the web stack on the same connection; and `wsm up` reports its first location ready
without having imported uvicorn (real sockets, a real `wsm up`)."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import Tuple

import pytest
from e2e import WorkspaceDir, probe_imports

from workspace_manager.http.routes import default_routes
from workspace_manager.http.view import LocationView, ManagerView
from workspace_manager.web.app import build_app
from workspace_manager.web.bind import bind_listeners
from workspace_manager.web.context import WebContext
from workspace_manager.web.early import EarlyServer, http_date
from workspace_manager.web.server import WebServer

DEADLINE = 10.0

VIEW = ManagerView(
    alive=True,
    started_at=0.0,
    locations=(
        LocationView(name="up", state="ready", pid=1),
        LocationView(name="down", state="backoff", error="exited with 1; restarting in 2s"),
    ),
)

#: requests the probes answer, in the forms clients send them
PROBES = [
    b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /readyz?verbose HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.29\r\n\r\n",
    b"HEAD /livez HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz?verbose HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /readyz/up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /readyz/down HTTP/1.0\r\n\r\n",
    b"GET /readyz/nope HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\n\r\n",  # pipelined
]


def exchange(port: int, request: bytes, wait: float = 0.5) -> bytes:
    """What the server sends back to `request` within `wait` seconds of quiet, `<EOF>` added
    when it closed the connection; the date header blanked."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(request)
        sock.settimeout(wait)
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    data += b"<EOF>"
                    break
                data += chunk
        except socket.timeout:
            pass
        except ConnectionResetError:  # closed with our request unread
            data += b"<EOF>"
    return re.sub(rb"date: [^\r]*\r\n", b"date: -\r\n", data)


class Servers:
    """An EarlyServer and a WebServer over the same view, each on its own port, on a loop in
    this thread (the test drives it with `run`)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.wanted = 0
        self.context = WebContext(view=lambda: VIEW, alive=lambda: True)
        self.web = WebServer("127.0.0.1", 0, build_app(self.context))
        self.web_port = self.run(self.web.start())[1]
        self.early = EarlyServer(default_routes(), lambda: VIEW, lambda: True, self._want)
        sockets = self.run(bind_listeners("127.0.0.1", 0))
        self.early_port = self.run(self.early.start(sockets))[1]

    def _want(self) -> None:
        self.wanted += 1

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def exchange(self, port: int, request: bytes, wait: float = 0.3) -> bytes:
        """`exchange` with the loop running meanwhile (a client thread)."""
        return self.run(asyncio.to_thread(exchange, port, request, wait))

    def close(self) -> None:
        self.run(self.web.close())
        self.run(self.early.close())
        self.loop.close()


@pytest.fixture()
def servers():  # type: ignore[no-untyped-def]
    s = Servers()
    try:
        yield s
    finally:
        s.close()


@pytest.mark.parametrize("request_bytes", PROBES, ids=lambda r: r.split(b"\r\n")[0].decode())
def test_a_probe_is_answered_as_the_web_stack_answers_it(
    servers: Servers, request_bytes: bytes
) -> None:
    early = servers.exchange(servers.early_port, request_bytes)
    web = servers.exchange(servers.web_port, request_bytes)
    assert early.startswith(b"HTTP/1.1 ")
    assert early == web
    assert servers.wanted == 0  # a probe never asks for the web stack


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        b"GET /readyz/a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\nGET /api/locations HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=lambda r: r.split(b"\r\n")[0].decode(),
)
def test_any_other_request_waits_for_the_web_stack_on_its_connection(
    servers: Servers, request_bytes: bytes
) -> None:
    async def scenario() -> Tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        client = loop.run_in_executor(None, exchange, servers.early_port, request_bytes, 1.0)
        deadline = time.monotonic() + DEADLINE
        while not servers.wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert servers.wanted == 1  # it asked for the web stack once
        await asyncio.sleep(0.2)  # held meanwhile: nothing more answered
        servers.early.hand_over(servers.web.protocol_factory())
        early = await client
        web = await loop.run_in_executor(None, exchange, servers.web_port, request_bytes, 1.0)
        return early, web

    early, web = servers.run(scenario())
    assert early.startswith(b"HTTP/1.1 ")
    # the same answers as the web stack gives, from the same connection
    assert _without_tokens(early) == _without_tokens(web)
    assert servers.early.connections == set()
    # and a new connection is the web stack's at once
    assert servers.exchange(
        servers.early_port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
    ).startswith(b"HTTP/1.1 404 Not Found")


def _without_tokens(data: bytes) -> bytes:
    """The page's per-request nonces and cookies differ between two answers."""
    data = re.sub(rb"set-cookie: [^\r]*\r\n", b"", data)
    data = re.sub(rb'nonce[-=][^" ;\r]*', b"nonce", data)
    data = re.sub(rb"content-length: \d+", b"content-length: -", data)
    return re.sub(rb"<html.*", b"<html>", data, flags=re.S)


def test_a_client_that_sends_no_request_is_closed(servers: Servers) -> None:
    servers.early.head_timeout = 0.2
    answer = servers.exchange(servers.early_port, b"GET /readyz HTTP/1.1\r\n", wait=2.0)
    assert answer == b"<EOF>"


def test_connections_beyond_the_limit_are_closed(servers: Servers) -> None:
    servers.early.max_connections = 2

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        held = [socket.create_connection(("127.0.0.1", servers.early_port)) for _ in range(2)]
        try:
            await asyncio.sleep(0.1)
            return await loop.run_in_executor(None, exchange, servers.early_port, PROBES[0], 1.0)
        finally:
            for sock in held:
                sock.close()

    assert servers.run(scenario()) == b"<EOF>"
    servers.run(asyncio.sleep(0.1))  # the two closes seen: room again
    assert servers.exchange(servers.early_port, PROBES[0]).startswith(b"HTTP/1.1 503 ")


def test_the_date_is_emails() -> None:
    from email.utils import formatdate

    for now in (0.0, 951782400.0, time.time()):  # 1970, a leap day, today
        assert http_date(now) == formatdate(now, usegmt=True)


# Notes, when the first location becomes ready, whether uvicorn was imported; then waits
# for the web page to answer through the same address.
READY_PROBE = r"""
import json, sys, urllib.request
from workspace_manager.supervisor.manager import Manager
from workspace_manager.supervisor.state import State
seen = []
real = Manager._on_transition
def spy(self, loc, t):
    if t.new is State.READY and not seen:
        seen.append(sorted(m for m in ("uvicorn", "starlette") if m in sys.modules))
        manager = self
        async def page():
            import asyncio
            loop = asyncio.get_running_loop()
            url = f"http://{manager.health_text()}/"
            status = await loop.run_in_executor(None, lambda: urllib.request.urlopen(url, timeout=30).status)
            seen.append(status)
            manager.request_stop()
        import asyncio
        asyncio.ensure_future(page())
    return real(self, loc, t)
Manager._on_transition = spy
from workspace_manager.cli.main import main
code = main(["up", "--health", "127.0.0.1:0", "--quiet-output"])
print("MODULES " + json.dumps([code, seen]))
"""


def test_wsm_up_is_ready_before_it_imports_the_web_stack(ws: WorkspaceDir) -> None:
    """The first `/readyz` 200 needs no uvicorn nor Starlette (~60 ms of the manager's one
    thread): they are imported once the first locations settle, and serve the page then."""
    ws.file(
        "repo.py",
        "from workspace_manager import job, repository\n\n@job\ndef j(): ...\n\n"
        "@repository\ndef r():\n    return [j]\n",
    )
    ws.workspace({"load_from": [{"python_file": {"relative_path": "repo.py"}}]})
    (code, seen), done = probe_imports(ws.root, READY_PROBE)
    assert code == 0, done.stderr
    assert seen == [[], 200], done.stdout + done.stderr
