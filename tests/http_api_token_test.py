"""`wsm up --api-token-env VAR`: writes to the JSON API from another host need the token; the
token never reaches the locations' code; a missing variable is one line."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
from typing import Any, Dict, Optional, Tuple

import pytest
from e2e import WorkspaceDir, WsmUp, wait_for

REPO = """
import os
from workspace_manager import job, repository

@job
def peek(context):
    print("token seen by the job:", os.environ.get("WSM_TEST_API_TOKEN"), flush=True)

@repository
def repo():
    return [peek]
"""


def own_address() -> Optional[str]:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return next((w for w in out.split() if "." in w and not w.startswith("127.")), None)


def post(
    host: str, port: int, path: str, body: Any, token: Optional[str] = None
) -> Tuple[int, Dict[str, Any]]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_a_missing_token_variable_is_one_line(ws: WorkspaceDir) -> None:
    ws.file("repo.py", REPO)
    result = ws.run(
        "up", "-f", "repo.py", "--health", "127.0.0.1:0", "--api-token-env", "WSM_TEST_NO_SUCH_VAR"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "wsm: --api-token-env: the variable WSM_TEST_NO_SUCH_VAR is not set or empty"
    )


def test_remote_writes_need_the_token_which_the_code_never_sees(ws: WorkspaceDir) -> None:
    host = own_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    ws.file("repo.py", REPO)
    env = dict(ws.env, WSM_TEST_API_TOKEN="tok-5f2c")
    with WsmUp(
        ws,
        "-f",
        "repo.py",
        "--health",
        f"{host}:0",
        "--api-token-env",
        "WSM_TEST_API_TOKEN",
        health=False,
        env=env,
    ) as up:
        line = wait_for(
            lambda: next(
                (
                    m
                    for ln in up.lines
                    if (m := re.search(r"health endpoint on http://[^ ]+:(\d+)", ln))
                ),
                None,
            ),
            30,
            "the health line",
        )
        port = int(line.group(1))

        def ready() -> bool:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            try:
                conn.request("GET", "/status")
                doc = json.loads(conn.getresponse().read())
            finally:
                conn.close()
            return (
                doc["daemon"] is not None
                and all(loc["state"] == "ready" for loc in doc["locations"].values())
                and bool(doc["locations"])
            )

        wait_for(ready, 60, "the location and the run storage")
        job = {"location": "repo", "job": "peek"}
        assert post(host, port, "/api/runs", job)[0] == 401
        assert post(host, port, "/api/runs", job, token="tok-5f2d")[0] == 401
        code, run = post(host, port, "/api/runs", job, token="tok-5f2c")
        assert code == 201, run

        def logs() -> Optional[str]:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            try:
                conn.request("GET", f"/api/runs/{run['run_id']}/logs")
                page = json.loads(conn.getresponse().read())
            finally:
                conn.close()
            text = " ".join(ln["text"] for ln in page["items"])
            return text if page["next"] is None else None

        assert "token seen by the job: None" in wait_for(logs, 60, "the run's logs")
