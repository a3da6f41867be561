"""Random bytes and random msgpack at a running manager's control socket: each bad frame
closes that one connection; the manager and its locations carry on."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Iterator, Tuple

import msgpack
import pytest
from e2e import WorkspaceDir, WsmUp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workspace_manager.protocol.client import Client

MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[WsmUp, dict]]:
    ws = WorkspaceDir(tmp_path_factory.mktemp("fuzz"))
    ws.file(
        "repo.py",
        """
        from workspace_manager import job, repository
        @job
        def j(): ...
        @repository
        def r():
            return [j]
    """,
    )
    path = ws.workspace({"load_from": [{"python_file": "repo.py"}]})
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_state("repo", "ready")
        record = json.loads(next((ws.root / ".wsm-run").glob("*/manager.json")).read_text())
        yield up, record


def _send(record: dict, data: bytes, hello: bool) -> None:
    path = record["control"][len("unix:") :]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        if hello:
            body = msgpack.packb([0, 0, "hello", {"protocol": 1, "secret": record["secret"]}])
            sock.sendall(struct.pack(">I", len(body)) + body)
            header = sock.recv(4)
            assert len(header) == 4
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except OSError:
            pass  # the manager closed the connection: that is the expected answer


def _still_serving(up: WsmUp, record: dict) -> None:
    with Client(record["control"], record["secret"], timeout=10) as client:
        assert client.call("ping")["pid"] == up.proc.pid
        assert client.call("call", {"location": "repo", "method": "ping"})["pid"]
    assert up.proc.poll() is None


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=300), hello=st.booleans())
def test_random_bytes(running: Tuple[WsmUp, dict], data: bytes, hello: bool) -> None:
    up, record = running
    _send(record, data, hello)
    _still_serving(up, record)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=MSGPACK_VALUES, hello=st.booleans())
def test_random_msgpack_frames(running: Tuple[WsmUp, dict], value: object, hello: bool) -> None:
    up, record = running
    body = msgpack.packb(value)
    _send(record, struct.pack(">I", len(body)) + body, hello)
    _still_serving(up, record)


def test_oversized_and_truncated_frames(running: Tuple[WsmUp, dict]) -> None:
    up, record = running
    _send(record, struct.pack(">I", 2**31) + b"x" * 100, hello=True)  # oversized
    _send(record, struct.pack(">I", 50) + b"x" * 10, hello=False)  # truncated
    _send(record, struct.pack(">I", 0), hello=True)  # empty frame
    _still_serving(up, record)
    output = up.output()
    assert "Traceback" not in output
    assert "control connection closed" in output


def test_records_and_sockets_are_private(running: Tuple[WsmUp, dict]) -> None:
    _, record = running
    sock_path = Path(record["control"][len("unix:") :])
    assert sock_path.stat().st_mode & 0o777 == 0o600
    assert sock_path.parent.stat().st_mode & 0o777 == 0o700
    assert (sock_path.parent / "manager.json").stat().st_mode & 0o777 == 0o600
    for sock in sock_path.parent.glob("*.sock"):
        assert sock.stat().st_mode & 0o777 == 0o600, sock
