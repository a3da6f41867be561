"""Throw random bytes and random msgpack values at a running loader; it must keep serving."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workspace_manager.loader.harness import LoaderProcess, file_target
from workspace_manager.protocol import messages
from workspace_manager.protocol.framing import HEADER, FrameDecoder, FrameError, encode_frame

REPO = textwrap.dedent(
    """
    from workspace_manager import RunRequest, ScheduleDefinition, job, repository, sensor

    @job
    def fuzz_job(context):
        return context.run_config

    fuzz_schedule = ScheduleDefinition(job=fuzz_job, cron_schedule="*/5 * * * *")

    @sensor(job=fuzz_job)
    def fuzz_sensor(context):
        yield RunRequest(run_key=context.cursor, run_config={})

    @repository
    def fuzz_repo():
        return [fuzz_job, fuzz_schedule, fuzz_sensor]
    """
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=20),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.integers(-(2**63), 2**64 - 1)), children, max_size=5
        ),
    ),
    max_leaves=20,
)
method_names = st.one_of(
    st.sampled_from(
        [
            "ping",
            "list_repositories",
            "get_snapshot",
            "evaluate_sensor",
            "evaluate_schedule",
            "execute_job",
            "hello",
        ]
    ),
    st.text(max_size=15),
)
param_maps = st.dictionaries(
    st.sampled_from(
        [
            "sensor",
            "schedule",
            "job",
            "repository",
            "cursor",
            "last_run_key",
            "scheduled_time",
            "run_config",
            "secret",
            "protocol",
            "x",
        ]
    ),
    st.one_of(
        scalars,
        st.sampled_from(["fuzz_job", "fuzz_sensor", "fuzz_schedule", "fuzz_repo"]),
        st.dictionaries(st.text(max_size=5), scalars, max_size=3),
    ),
    max_size=4,
)
requests = st.builds(
    lambda i, m, p: [0, i, m, p], st.integers(0, 2**64 - 1), method_names, param_maps
)
messages_ = st.one_of(
    values, requests, st.builds(lambda e, p: [2, e, p], st.text(max_size=5), param_maps)
)


@pytest.fixture(scope="module")
def loader():
    rundir = tempfile.mkdtemp(prefix="wsm-f", dir="/tmp")
    path = os.path.join(rundir, "repo.py")
    with open(path, "w") as f:
        f.write(REPO)
    proc = LoaderProcess(sys.executable, file_target(path), rundir, location="fuzz")
    try:
        assert proc.start()[1] == "loaded", proc.stderr_text()
        proc.probe = proc.client(timeout=10)
        yield proc
        proc.probe.close()
    finally:
        assert proc.stop() is not None
        shutil.rmtree(rundir, ignore_errors=True)


def exchange(loader, payload: bytes, authenticate: bool):
    """Send `payload` (after a hello if asked), half-close, collect answers until the server closes."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(loader.address[len("unix:") :])
    decoder = FrameDecoder()
    replies = []
    try:
        if authenticate:
            sock.sendall(
                encode_frame(messages.request(0, "hello", {"protocol": 1, "secret": loader.secret}))
            )
            while not replies:
                replies += decoder.feed(sock.recv(65536))
            assert replies[0][2] is None  # hello accepted
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may already have closed on a bad frame
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            try:
                replies += decoder.feed(data)
            except FrameError as exc:
                pytest.fail(f"the loader sent a malformed frame: {exc}")
    finally:
        sock.close()
    for reply in replies:
        assert isinstance(messages.parse(reply), messages.Response)
    return replies


def still_serving(loader):
    assert loader.probe.call("ping") == {"pid": loader.pid}
    assert loader.process.poll() is None


@FUZZ
@given(payload=st.binary(max_size=200), authenticate=st.booleans())
def test_random_bytes(loader, payload, authenticate):
    exchange(loader, payload, authenticate)
    still_serving(loader)


@FUZZ
@given(objects=st.lists(messages_, min_size=1, max_size=4), authenticate=st.booleans())
def test_random_msgpack_frames(loader, objects, authenticate):
    payload = b"".join(encode_frame(o) for o in objects)
    replies = exchange(loader, payload, authenticate)
    if not authenticate:
        # Unauthenticated: at most one answer, a HandshakeError (or a hello that happened to be right).
        assert len(replies) <= 1
    still_serving(loader)


@FUZZ
@given(
    prefix=st.lists(requests, max_size=2),
    header=st.integers(0, 2**32 - 1),
    body=st.binary(max_size=50),
)
def test_valid_requests_then_a_random_frame(loader, prefix, header, body):
    payload = b"".join(encode_frame(o) for o in prefix) + HEADER.pack(header) + body
    exchange(loader, payload, authenticate=True)
    still_serving(loader)


def test_the_loader_logged_faults_without_dying(loader):
    stderr = loader.stderr_text()
    assert "closing" in stderr
    assert "Traceback" not in stderr  # faults are one-line logs, never crashes
    still_serving(loader)
