"""Locations beyond one machine, over loopback TCP: `wsm serve` and grpc_server entries."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Dict, Optional

import pytest
from cli_up_test import manager_client
from e2e import WorkspaceDir, WsmUp, wait_for, wsm_argv

from workspace_manager.protocol.client import Client
from workspace_manager.protocol.errors import RemoteError

TOKEN = "a-shared-token-for-tests"

REPO = """
import os, sys
from pathlib import Path
from workspace_manager import RunRequest, job, repository, sensor

MARKER = os.environ.get("WSM_TEST_MARKER")

@job
def {name}_job(): ...

@sensor(job={name}_job)
def {name}_sensor():
    if MARKER:
        Path(MARKER).write_text("sensor ran")
    yield RunRequest(run_key="{name}", run_config={{"pid": os.getpid()}})

@repository
def {name}_repo():
    return [{name}_job, {name}_sensor]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(
    ws: WorkspaceDir, name: str, port: int, *extra: str, env: Optional[Dict[str, str]] = None
) -> WsmUp:
    ws.file(f"{name}.py", REPO.format(name=name))  # location name: the file's stem
    env = dict(env or ws.env, WSM_TOKEN=TOKEN)
    # each server keeps its own runtime dir, as a pod would
    env["WSM_RUNTIME_DIR"] = str(ws.root / f".run-{name}-{port}")
    return WsmUp(
        ws,
        "-f",
        f"{name}.py",
        "--listen",
        f"tcp://127.0.0.1:{port}",
        "--token-env",
        "WSM_TOKEN",
        *extra,
        command="serve",
        env=env,
    )


def remote_entry(name: str, port: int, **extra: object) -> dict:
    entry = {"host": "127.0.0.1", "port": port, "location_name": name, "token_env": "WSM_TOKEN"}
    entry.update(extra)
    return {"grpc_server": entry}


def manager_env(ws: WorkspaceDir, token: str = TOKEN) -> Dict[str, str]:
    return dict(ws.env, WSM_TOKEN=token)


def test_manager_with_one_local_and_two_remote_locations(ws: WorkspaceDir) -> None:
    p1, p2 = free_port(), free_port()
    ws.file("local/repo.py", REPO.format(name="local"))
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "local/repo.py", "location_name": "local"}},
                remote_entry("remote1", p1),
                remote_entry("remote2", p2),
            ],
            "supervision": {
                "heartbeat_seconds": 0.5,
                "backoff_initial_seconds": 0.2,
                "backoff_max_seconds": 1,
                "max_restarts": 50,
            },
        }
    )
    with serve(ws, "remote1", p1) as s1, serve(ws, "remote2", p2) as s2:
        assert s1.wait_state("remote1", "ready")["pid"]
        s2.wait_state("remote2", "ready")
        assert s1.get("/readyz")[0] == 200
        with WsmUp(ws, "-w", str(path), env=manager_env(ws)) as up:
            status = up.wait_all_settled()
            assert {n: loc["state"] for n, loc in status["locations"].items()} == {
                "local": "ready",
                "remote1": "ready",
                "remote2": "ready",
            }
            assert status["locations"]["remote1"]["environment"] == f"remote tcp://127.0.0.1:{p1}"
            with manager_client(ws) as client:
                for name in ("remote1", "remote2", "local"):
                    result = client.call(
                        "call",
                        {
                            "location": name,
                            "method": "evaluate_sensor",
                            "params": {"sensor": f"{name}_sensor"},
                        },
                    )
                    assert result["run_requests"][0]["run_key"] == name

            # the remote server goes away: the manager marks it and keeps the others serving
            s1.stop(signal.SIGKILL)
            s1.assert_no_leftovers()
            up.wait_state("remote1", "backoff", "starting")
            assert up.location("remote2")["state"] == "ready"
            assert up.location("local")["state"] == "ready"
            # it comes back on the same port: the manager reconnects by itself
            with serve(ws, "remote1", p1) as s1b:
                s1b.wait_state("remote1", "ready")
                back = up.wait_state("remote1", "ready", timeout=30)
                assert back["restarts"] >= 1
                with manager_client(ws) as client:
                    result = client.call(
                        "call",
                        {
                            "location": "remote1",
                            "method": "evaluate_sensor",
                            "params": {"sensor": "remote1_sensor"},
                        },
                    )
                    assert result["run_requests"][0]["run_key"] == "remote1"


def test_wrong_token_is_refused_before_repository_code(ws: WorkspaceDir, tmp_path: Path) -> None:
    port = free_port()
    marker = tmp_path / "marker"
    env = dict(ws.env, WSM_TEST_MARKER=str(marker))
    with serve(ws, "guarded", port, env=env) as server:
        server.wait_state("guarded", "ready")
        with pytest.raises(RemoteError) as err:
            Client(f"tcp://127.0.0.1:{port}", "wrong-token", timeout=10)
        assert err.value.type == "HandshakeError"
        with Client(f"tcp://127.0.0.1:{port}", TOKEN, timeout=10) as good:
            assert good.call("ping")["pid"]
        assert not marker.exists()  # the refused client reached no repository code
        # a manager holding the wrong token shows the location in `error`, not a retry loop
        path = ws.workspace({"load_from": [remote_entry("guarded", port)]})
        with WsmUp(ws, "-w", str(path), env=manager_env(ws, token="nope")) as up:
            loc = up.wait_state("guarded", "error")
            assert "refused" in loc["error"]
        assert not marker.exists()


def make_certificate(directory: Path) -> tuple:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_with_a_throwaway_self_signed_certificate(ws: WorkspaceDir, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    port = free_port()
    with serve(ws, "secure", port, "--tls-cert", str(cert), "--tls-key", str(key)) as server:
        server.wait_state("secure", "ready")
        ctx = ssl.create_default_context(cafile=str(cert))
        with Client(
            f"tcp://127.0.0.1:{port}",
            TOKEN,
            ssl_context=ctx,
            server_hostname="127.0.0.1",
            timeout=10,
        ) as client:
            assert client.call("ping")["pid"]
        with pytest.raises((ConnectionError, OSError, RemoteError)):
            # plain TCP against a TLS server does not get through the handshake
            Client(f"tcp://127.0.0.1:{port}", TOKEN, timeout=3).call("ping")
        path = ws.workspace(
            {
                "load_from": [
                    remote_entry("secure", port, ssl=True, ca_file=str(cert)),
                ]
            }
        )
        with WsmUp(ws, "-w", str(path), env=manager_env(ws)) as up:
            up.wait_state("secure", "ready")
            with manager_client(ws) as mc:
                res = mc.call(
                    "call",
                    {
                        "location": "secure",
                        "method": "evaluate_sensor",
                        "params": {"sensor": "secure_sensor"},
                    },
                )
                assert res["run_requests"][0]["run_key"] == "secure"
        # without the CA the manager does not trust the server: an error, not a retry loop
        path = ws.workspace({"load_from": [remote_entry("secure", port, ssl=True)]})
        with WsmUp(ws, "-w", str(path), env=manager_env(ws)) as up:
            loc = up.wait_state("secure", "error")
            assert "certificate" in loc["error"].lower()


def test_serve_exit_codes(ws: WorkspaceDir) -> None:
    ws.file("bad/repo.py", "raise RuntimeError('cannot load')\n")
    env = dict(ws.env, WSM_TOKEN=TOKEN)
    port = free_port()
    res = subprocess.run(
        [
            *wsm_argv(),
            "serve",
            "-f",
            "bad/repo.py",
            "--listen",
            f"tcp://127.0.0.1:{port}",
            "--token-env",
            "WSM_TOKEN",
        ],
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 4, res.stdout + res.stderr
    assert "cannot load" in res.stdout
    no_token = subprocess.run(
        [*wsm_argv(), "serve", "-f", "bad/repo.py", "--listen", f"tcp://127.0.0.1:{port}"],
        cwd=ws.root,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_token.returncode == 2 and "token" in no_token.stderr
    # the served location crashes: wsm serve exits 1 for its orchestrator to restart it
    with serve(ws, "doomed", port) as server:
        loc = server.wait_state("doomed", "ready")
        os.kill(loc["pid"], signal.SIGKILL)
        assert server.proc.wait(30) == 1


def test_remote_server_that_stays_away_is_retried_at_the_longest_backoff(
    ws: WorkspaceDir,
) -> None:
    """Unlike a local crash loop, a remote server is never given up on: its orchestrator
    restarts it (issue 8; see also permanent_failure_test.py)."""
    port = free_port()  # nothing listens there
    path = ws.workspace(
        {
            "load_from": [remote_entry("ghost", port)],
            "supervision": {
                "max_restarts": 2,
                "window_seconds": 30,
                "backoff_initial_seconds": 0.1,
                "backoff_max_seconds": 0.4,
            },
        }
    )
    with WsmUp(ws, "-w", str(path), env=manager_env(ws)) as up:
        wait_for(lambda: up.location("ghost")["restarts"] >= 5, 30, "retries past max_restarts")
        loc = up.location("ghost")
        assert loc["state"] in ("backoff", "starting")
        assert "connection refused" in " ".join(t["reason"] for t in loc["transitions"])


def test_serve_a_workspace_location_on_a_unix_socket(ws: WorkspaceDir) -> None:
    ws.file("team/repo.py", REPO.format(name="team"))
    path = ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "team/repo.py",
                        "location_name": "team",
                        "env_vars": {"FROM_WORKSPACE": "1"},
                    }
                },
            ]
        }
    )
    sock = ws.root / "team.sock"
    env = dict(ws.env, WSM_TOKEN=TOKEN)
    with WsmUp(
        ws,
        "-w",
        str(path),
        "team",
        "--listen",
        f"unix:{sock}",
        "--token-env",
        "WSM_TOKEN",
        command="serve",
        env=env,
    ) as server:
        server.wait_state("team", "ready")
        assert sock.stat().st_mode & 0o777 == 0o600
        with Client(f"unix:{sock}", TOKEN, timeout=10) as client:
            res = client.call("evaluate_sensor", {"sensor": "team_sensor"})
            assert res["run_requests"][0]["run_key"] == "team"
        # a remote manager entry can name the socket too
        mpath = ws.workspace(
            {
                "load_from": [
                    {
                        "grpc_server": {
                            "host": "localhost",
                            "socket": str(sock),
                            "location_name": "team",
                            "token_env": "WSM_TOKEN",
                        }
                    }
                ]
            },
            name="manager.yaml",
        )
        with WsmUp(ws, "-w", str(mpath), env=manager_env(ws)) as up:
            assert up.wait_state("team", "ready")["environment"] == f"remote unix:{sock}"
    ws.env["WSM_TOKEN"] = TOKEN
    bad = ws.run(
        "serve", "-w", str(path), "nope", "--listen", f"unix:{sock}", "--token-env", "WSM_TOKEN"
    )
    assert bad.returncode == 2 and "no location 'nope'" in bad.stderr
