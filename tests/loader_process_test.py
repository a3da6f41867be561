"""The loader as a real process on real sockets, under several interpreters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import interpreters
import pytest

from workspace_manager.loader.harness import LoaderProcess, file_target, module_target
from workspace_manager.protocol import messages
from workspace_manager.protocol.client import Client
from workspace_manager.protocol.errors import HandshakeError, RemoteError
from workspace_manager.protocol.framing import HEADER, FrameDecoder, encode_frame

INTERPRETERS = interpreters.params("wsm-python", *interpreters.BARE)

REPO = textwrap.dedent(
    """
    import os, sys, time
    from workspace_manager import RunRequest, ScheduleDefinition, SkipReason, job, repository, sensor

    MARKERS = os.environ["WSM_TEST_MARKERS"]

    def touch(name):
        open(os.path.join(MARKERS, name), "w").close()

    @job
    def job1():
        return 42

    @job(description="echoes its config")
    def job2(context):
        return {"cfg": context.run_config}

    @job
    def boom():
        return 1 / 0

    @job
    def environment():
        found = {}
        for name in ("msgpack", "psutil", "yaml", "jsonschema"):
            try:
                __import__(name)
                found[name] = True
            except ImportError:
                found[name] = False
        from workspace_manager.protocol import codec
        return {"importable": found, "backend": codec.BACKEND, "cwd": os.getcwd(),
                "version": list(sys.version_info[:2])}

    @job
    def big():
        return "y" * 5000

    @job
    def unserialisable():
        return object()

    job1_schedule = ScheduleDefinition(job=job1, cron_schedule="0 0 * * *")

    @sensor(job=job2)
    def job2_sensor(context):
        touch("job2_sensor_ran")
        context.update_cursor("next")
        yield RunRequest(run_key="k1", run_config={"x": 1})

    @sensor(job=job2)
    def skipping_sensor():
        return SkipReason("nothing to do")

    @sensor(job=job2)
    def gated_sensor():
        # In flight until the test creates the "release" file (at most 5 s).
        touch("gated_started")
        deadline = time.monotonic() + 5
        while not os.path.exists(os.path.join(MARKERS, "release")) and time.monotonic() < deadline:
            time.sleep(0.01)
        yield RunRequest(run_key="gated", run_config={})

    @repository
    def my_repository():
        return [job1, job1_schedule, job2_sensor, skipping_sensor, gated_sensor, boom,
                environment, unserialisable, big]

    print("repo imported", flush=True)
    """
)


@pytest.fixture
def rundir():
    path = tempfile.mkdtemp(prefix="wsm-t", dir="/tmp")  # short: unix socket paths are limited
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def repo(rundir):
    code = os.path.join(rundir, "code")
    markers = os.path.join(rundir, "markers")
    os.makedirs(code)
    os.makedirs(markers)
    path = os.path.join(code, "repo.py")
    with open(path, "w") as f:
        f.write(REPO)
    return {"path": path, "code": code, "markers": markers}


def loader_env(repo, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["WSM_TEST_MARKERS"] = repo["markers"]
    env.update(extra)
    return env


def importable_in(python, repo):
    """Which of wsm's dependencies `python` can import on its own, outside any loader."""
    code = (
        "import importlib.util, json; "
        "print(json.dumps({n: importlib.util.find_spec(n) is not None "
        "for n in ('msgpack', 'psutil', 'yaml', 'jsonschema')}))"
    )
    out = subprocess.run(
        [python, "-c", code],
        cwd=repo["markers"],
        env=loader_env(repo),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture
def spawn(rundir, repo):
    started = []

    def start(python=sys.executable, target=None, expect="loaded", **kwargs):
        kwargs.setdefault("env", loader_env(repo))
        loader = LoaderProcess(python, target or file_target(repo["path"]), rundir, **kwargs)
        started.append(loader)
        event = loader.first_event = loader.start()
        if expect is not None:
            assert event is not None, loader.stderr_text()
            assert event[1] == expect, (event, loader.stderr_text())
        return loader

    yield start
    for loader in started:
        loader.stop()
        assert loader.process.poll() is not None


@pytest.mark.parametrize("python", INTERPRETERS)
def test_all_methods(spawn, repo, python):
    loader = spawn(python)
    with loader.client(timeout=10) as client:
        info = client.server_info
        assert info["protocol"] == 1 and info["location"] == "test"
        assert info["pid"] == loader.pid
        assert os.path.realpath(info["executable"]) == os.path.realpath(python)

        assert client.call("ping") == {"pid": loader.pid}
        (summary,) = client.call("list_repositories")
        assert summary["name"] == "my_repository"
        assert sorted(summary["jobs"]) == [
            "big",
            "boom",
            "environment",
            "job1",
            "job2",
            "unserialisable",
        ]
        assert summary["schedules"] == ["job1_schedule"]
        assert sorted(summary["sensors"]) == ["gated_sensor", "job2_sensor", "skipping_sensor"]

        snap = client.call("get_snapshot")
        assert snap["location"] == "test" and snap["pid"] == loader.pid
        assert snap["python_version"].count(".") == 2
        (repo_snap,) = snap["repositories"]
        assert repo_snap["name"] == "my_repository"
        assert {j["name"]: j["description"] for j in repo_snap["jobs"]}[
            "job2"
        ] == "echoes its config"
        assert repo_snap["schedules"][0]["cron_schedule"] == "0 0 * * *"
        assert client.call("get_snapshot", {"repository": "my_repository"}) == snap
        with pytest.raises(RemoteError) as info_:
            client.call("get_snapshot", {"repository": "nope"})
        assert info_.value.type == "NotFound"

        tick = client.call("evaluate_sensor", {"sensor": "job2_sensor", "cursor": "c0"})
        assert tick == {
            "run_requests": [
                {"run_key": "k1", "run_config": {"x": 1}, "tags": {}, "job_name": "job2"}
            ],
            "skip_reason": None,
            "cursor": "next",
        }
        skip = client.call(
            "evaluate_sensor", {"sensor": "skipping_sensor", "repository": "my_repository"}
        )
        assert skip["run_requests"] == [] and skip["skip_reason"] == "nothing to do"

        sched = client.call(
            "evaluate_schedule", {"schedule": "job1_schedule", "scheduled_time": 1700000000}
        )
        assert sched["run_requests"][0]["job_name"] == "job1"

        assert client.call("execute_job", {"job": "job1"}) == {"success": True, "result": 42}
        echoed = client.call("execute_job", {"job": "job2", "run_config": {"a": [1, 2]}})
        assert echoed == {"success": True, "result": {"cfg": {"a": [1, 2]}}}
        odd = client.call("execute_job", {"job": "unserialisable"})
        assert odd["success"] is True and odd["result"].startswith("<object object")

        with pytest.raises(RemoteError) as err:
            client.call("execute_job", {"job": "boom"})
        assert err.value.type == "UserCodeError"
        assert err.value.message == "ZeroDivisionError: division by zero"
        assert "return 1 / 0" in err.value.traceback

        for method, params, kind in [
            ("no_such_method", {}, "MethodNotFound"),
            ("execute_job", {}, "InvalidParams"),
            ("execute_job", {"job": 3}, "InvalidParams"),
            ("execute_job", {"job": "job1", "extra": 1}, "InvalidParams"),
            (
                "evaluate_schedule",
                {"schedule": "job1_schedule", "scheduled_time": True},
                "InvalidParams",
            ),
            ("ping", {"x": 1}, "InvalidParams"),
            ("shutdown", {"now": True}, "InvalidParams"),
            ("execute_job", {"job": "missing"}, "NotFound"),
            ("evaluate_sensor", {"sensor": "missing"}, "NotFound"),
            ("evaluate_sensor", {"sensor": "job2_sensor", "repository": "other"}, "NotFound"),
        ]:
            with pytest.raises(RemoteError) as err:
                client.call(method, params)
            assert err.value.type == kind, (method, params, err.value)

        env = client.call("execute_job", {"job": "environment"})["result"]
        assert env["cwd"] == repo["code"]
        if python != sys.executable:
            # Another interpreter sees only its own packages, never wsm's dependencies.
            assert env["importable"] == importable_in(python, repo)
            assert env["importable"]["msgpack"] is False and env["importable"]["psutil"] is False
            assert env["backend"] == "pure"
        else:
            assert env["backend"] == "msgpack"
        assert client.call("ping") == {"pid": loader.pid}  # still healthy after all that

    assert "repo imported" in loader.stdout_text()


def test_module_target_with_working_directory(spawn, repo):
    pkg = os.path.join(repo["code"], "team_pkg")
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    shutil.copy(repo["path"], os.path.join(pkg, "definitions.py"))
    loader = spawn(
        target=module_target("team_pkg.definitions", repo["code"], attribute="my_repository")
    )
    with loader.client() as client:
        assert client.call("list_repositories")[0]["name"] == "my_repository"


def test_ping_answers_while_a_sensor_is_in_flight_on_the_same_connection(spawn, repo):
    loader = spawn()
    started = os.path.join(repo["markers"], "gated_started")
    with loader.client(timeout=10) as client:
        order = []
        results = []

        def run_sensor():
            results.append(client.call("evaluate_sensor", {"sensor": "gated_sensor"}))
            order.append("sensor")

        thread = threading.Thread(target=run_sensor)
        thread.start()
        deadline = time.monotonic() + 10
        while not os.path.exists(started):
            assert time.monotonic() < deadline, "the sensor never started"
            time.sleep(0.01)
        for _ in range(20):
            assert client.call("ping", timeout=5) == {"pid": loader.pid}
        order.append("pings")
        assert thread.is_alive()  # the sensor cannot finish before "release" exists
        open(os.path.join(repo["markers"], "release"), "w").close()
        thread.join(10)
        assert order == ["pings", "sensor"]
        assert results[0]["run_requests"][0]["run_key"] == "gated"


def raw_exchange(address, frames, timeout=5.0):
    """Send raw bytes, return every decoded frame until the server closes the connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(address[len("unix:") :])
    try:
        sock.sendall(frames)
        decoder = FrameDecoder()
        out = []
        while True:
            data = sock.recv(65536)
            if not data:
                return out
            out += decoder.feed(data)
    finally:
        sock.close()


def test_no_repository_code_runs_without_a_successful_handshake(spawn, repo):
    loader = spawn()
    sensor = encode_frame(messages.request(1, "evaluate_sensor", {"sensor": "job2_sensor"}))
    hello_bad = encode_frame(
        messages.request(0, "hello", {"protocol": 1, "secret": "wrong", "client": "t"})
    )
    hello_v2 = encode_frame(messages.request(0, "hello", {"protocol": 2, "secret": loader.secret}))

    replies = raw_exchange(loader.address, hello_bad + sensor)
    assert [messages.parse(r).error["type"] for r in replies] == ["HandshakeError"]
    assert "wrong secret" in replies[0][2]["message"]

    replies = raw_exchange(loader.address, sensor)  # no hello at all
    assert len(replies) == 1 and replies[0][2]["type"] == "HandshakeError"

    replies = raw_exchange(loader.address, hello_v2 + sensor)
    assert len(replies) == 1 and "protocol version 2" in replies[0][2]["message"]

    with pytest.raises(HandshakeError):
        Client(loader.address, "nope", timeout=5)

    assert not os.path.exists(os.path.join(repo["markers"], "job2_sensor_ran"))
    with loader.client() as client:  # and the location is fine
        client.call("evaluate_sensor", {"sensor": "job2_sensor"})
    assert os.path.exists(os.path.join(repo["markers"], "job2_sensor_ran"))


@pytest.mark.parametrize(
    "garbage, fault",
    [
        (HEADER.pack(2**31), "exceeds"),
        (HEADER.pack(0), "zero-length"),
        (HEADER.pack(1) + b"\xc1", "undecodable"),
        (encode_frame({"not": "a message"}), "bad message"),
        (encode_frame([1, 0, None, None]), "unexpected response"),
    ],
)
def test_malformed_frames_close_only_that_connection(spawn, garbage, fault):
    loader = spawn()
    with loader.client() as bystander:
        assert raw_exchange(loader.address, garbage) == []
        assert bystander.call("ping") == {"pid": loader.pid}
    deadline = time.monotonic() + 5
    while fault not in loader.stderr_text():
        assert time.monotonic() < deadline, loader.stderr_text()
        time.sleep(0.01)
    line = [ln for ln in loader.stderr_text().splitlines() if fault in ln][0]
    assert line.startswith("wsm-loader[test]: connection ")


def test_truncated_frame_at_eof_is_logged(spawn):
    loader = spawn()
    hello = encode_frame(messages.request(0, "hello", {"protocol": 1, "secret": loader.secret}))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(loader.address[5:])
    sock.settimeout(5)
    sock.sendall(hello)
    decoder = FrameDecoder()
    while not decoder.feed(sock.recv(65536)):
        pass  # the hello answer
    sock.sendall(encode_frame(messages.request(1, "ping", {}))[:-2])
    sock.shutdown(socket.SHUT_WR)
    assert sock.recv(65536) == b""  # the server closes its side
    sock.close()
    deadline = time.monotonic() + 5
    while "truncated frame at EOF" not in loader.stderr_text():
        assert time.monotonic() < deadline, loader.stderr_text()
        time.sleep(0.01)
    with loader.client() as client:
        assert client.call("ping") == {"pid": loader.pid}


def test_oversized_result_is_an_error_not_a_broken_stream(spawn):
    loader = spawn(max_frame_bytes=1024)
    with loader.client() as client:
        with pytest.raises(RemoteError) as err:
            client.call("execute_job", {"job": "big"})
        assert err.value.type == "MessageTooLarge" and "frame limit" in err.value.message
        assert client.call("ping") == {"pid": loader.pid}


def test_shutdown_refuses_new_calls_lets_running_ones_finish_and_exits_0(spawn, repo):
    loader = spawn()
    sock_path = loader.address[5:]
    with loader.client(timeout=10) as client:
        results = []
        thread = threading.Thread(
            target=lambda: results.append(
                client.call("evaluate_sensor", {"sensor": "gated_sensor"})
            )
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(repo["markers"], "gated_started")):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.call("shutdown") == {}
        with pytest.raises(RemoteError) as err:
            client.call("ping")
        assert err.value.type == "ShuttingDown"
        open(os.path.join(repo["markers"], "release"), "w").close()
        thread.join(10)
        assert results and results[0]["run_requests"][0]["run_key"] == "gated"
    assert loader.wait(10) == 0
    assert not os.path.exists(sock_path)


def test_sigterm_is_a_clean_exit(spawn):
    loader = spawn()
    sock_path = loader.address[5:]
    with loader.client() as client:
        client.call("ping")
    os.kill(loader.pid, signal.SIGTERM)
    assert loader.wait(10) == 0
    assert not os.path.exists(sock_path)


def test_stale_socket_file_is_replaced_and_mode_is_0600(spawn, rundir):
    stale = os.path.join(rundir, "test.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    loader = spawn()
    assert os.stat(stale).st_mode & 0o777 == 0o600
    with loader.client() as client:
        assert client.call("ping") == {"pid": loader.pid}


LOAD_ERRORS = {
    "import_error": ("import no_such_module_anywhere\n", "UserCodeError", "ModuleNotFoundError"),
    "raises": (
        "x = 1\nraise RuntimeError('broken on purpose')\n",
        "UserCodeError",
        "broken on purpose",
    ),
    "exit": ("import sys\nsys.exit(5)\n", "UserCodeError", "SystemExit"),
    "no_repository": ("x = 1\n", "DefinitionError", "no repository"),
}


@pytest.mark.parametrize("case", sorted(LOAD_ERRORS))
def test_load_error_is_reported_then_exit_4(spawn, repo, case):
    code, kind, text = LOAD_ERRORS[case]
    path = os.path.join(repo["code"], "bad.py")
    with open(path, "w") as f:
        f.write(code)
    loader = spawn(target=file_target(path), expect="load_error")
    error = loader.first_event[2]["error"]
    assert error["type"] == kind
    assert text in error["message"] + error["traceback"]
    assert loader.wait(10) == 4
    # the manager keeps the traceback; stderr stays quiet so its console shows one line
    assert "Traceback" not in loader.stderr_text()


def test_load_error_frame_contents(spawn, repo):
    path = os.path.join(repo["code"], "bad.py")
    with open(path, "w") as f:
        f.write("def f():\n    raise ValueError('deep')\n\nf()\n")
    loader = LoaderProcess(
        sys.executable, file_target(path), os.path.dirname(repo["code"]), env=loader_env(repo)
    )
    try:
        event = messages.parse(loader.start())
        assert event.event == "load_error"
        error = event.params["error"]
        assert error["type"] == "UserCodeError"
        assert error["message"] == "ValueError: deep"
        assert "bad.py" in error["traceback"] and "raise ValueError('deep')" in error["traceback"]
        assert loader.next_event() is None  # then EOF: the loader is gone
        assert loader.wait(10) == 4
    finally:
        loader.stop()

    missing_attr = LoaderProcess(
        sys.executable,
        file_target(repo["path"], attribute="nope"),
        os.path.dirname(repo["code"]),
        location="attr",
        env=loader_env(repo),
    )
    try:
        event = messages.parse(missing_attr.start())
        assert event.params["error"]["type"] == "DefinitionError"
        assert "nope" in event.params["error"]["message"]
        assert missing_attr.wait(10) == 4
    finally:
        missing_attr.stop()


def test_without_status_channel_load_errors_go_to_stderr(rundir, repo):
    path = os.path.join(repo["code"], "bad.py")
    with open(path, "w") as f:
        f.write("raise ImportError('standalone')\n")
    loader = LoaderProcess(
        sys.executable, file_target(path), rundir, lifeline=False, env=loader_env(repo)
    )
    try:
        loader.spawn()
        assert loader.wait(10) == 4
        assert "ImportError: standalone" in loader.stderr_text()
    finally:
        loader.stop()


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json\n",
        b"[]\n",
        b'{"location": "x"}\n',
        b'{"location": "x", "listen": "nowhere", "secret": "s", "target": {"kind": "python_file", "python_file": "/x.py"}}\n',
    ],
)
def test_bad_bootstrap_exits_3_with_one_line(rundir, repo, line):
    loader = LoaderProcess(
        sys.executable, file_target(repo["path"]), rundir, lifeline=False, env=loader_env(repo)
    )
    try:
        loader.spawn(bootstrap_line=line)
        assert loader.wait(10) == 3
        lines = loader.stderr_text().strip().splitlines()
        assert len(lines) == 1 and "bad bootstrap" in lines[0]
    finally:
        loader.stop()


def test_tcp_listen(spawn):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    loader = spawn(listen=f"tcp://127.0.0.1:{port}")
    with loader.client() as client:
        assert client.call("ping") == {"pid": loader.pid}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_listen(spawn, rundir):
    import ssl

    cert, key = os.path.join(rundir, "cert.pem"), os.path.join(rundir, "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    loader = spawn(listen=f"tcp://127.0.0.1:{port}", tls={"cert": cert, "key": key})
    context = ssl.create_default_context(cafile=cert)
    with loader.client(ssl_context=context, server_hostname="localhost", timeout=20) as client:
        assert client.call("ping") == {"pid": loader.pid}
        big = {"blob": "z" * 300_000}  # many TLS records each way
        assert client.call("execute_job", {"job": "job2", "run_config": big})["result"] == {
            "cfg": big
        }
        # Several threads share the TLS connection: one reads while others write.
        errors = []

        def hammer():
            try:
                for _ in range(100):
                    assert client.call("ping") == {"pid": loader.pid}
                    client.call("execute_job", {"job": "job1"})
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []


def test_many_threads_share_one_client(spawn):
    loader = spawn()
    with loader.client(timeout=20) as client:
        errors = []

        def hammer(n):
            try:
                for i in range(200):
                    if i % 3:
                        assert client.call("ping") == {"pid": loader.pid}
                    else:
                        cfg = {"thread": n, "i": i}
                        assert client.call("execute_job", {"job": "job2", "run_config": cfg})[
                            "result"
                        ] == {"cfg": cfg}
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert client._pending == {}


def test_before_the_hello_frames_are_small(spawn):
    loader = spawn()
    assert raw_exchange(loader.address, HEADER.pack(65 * 1024)) == []  # refused from its header
    deadline = time.monotonic() + 5
    while "limit of 65536" not in loader.stderr_text():
        assert time.monotonic() < deadline, loader.stderr_text()
        time.sleep(0.01)
    with loader.client() as client:  # after the hello, big frames are fine
        cfg = {"blob": "b" * 200_000}
        assert client.call("execute_job", {"job": "job2", "run_config": cfg})["result"] == {
            "cfg": cfg
        }


def test_a_connection_that_never_says_hello_is_dropped(spawn):
    loader = spawn(extra_bootstrap={"hello_timeout_seconds": 0.3})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(loader.address[5:])
    t0 = time.monotonic()
    assert sock.recv(1) == b""  # closed by the server
    assert time.monotonic() - t0 < 5
    sock.close()
    assert "no hello within 0.3s" in loader.stderr_text()
    with loader.client() as client:
        time.sleep(0.5)  # an authenticated connection may stay idle as long as it likes
        assert client.call("ping") == {"pid": loader.pid}
