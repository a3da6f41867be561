"""sample_workspaces/isolation: two envs with two versions of one package, and Debian's Python.

The envs are built offline by the real service; each location is then served by a real
loader under its own interpreter (as the manager starts one), all three at once, and asked
through the protocol what it sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
from e2e import wait_for

from workspace_manager.envs.service import EnvironmentService
from workspace_manager.loader.launch import bootstrap_argv, make_sdk_dir
from workspace_manager.protocol.client import Client
from workspace_manager.workspace.load import load_workspace

SAMPLE = Path(__file__).resolve().parent.parent / "sample_workspaces" / "isolation"
DEBIAN = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(not os.path.exists(DEBIAN), reason="needs /usr/bin/python3")


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    tmp = tmp_path_factory.mktemp("isolation")
    sample = tmp / "isolation"
    # a copy: pip writes build/ and *.egg-info into the source trees it builds
    shutil.copytree(SAMPLE, sample, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    workspace = load_workspace(sample / "workspace.yaml")
    service = EnvironmentService(tmp / "cache")

    async def interpreters() -> Dict[str, str]:
        envs = await asyncio.gather(*(service.ensure(loc) for loc in workspace.locations))
        return {loc.name: env.python for loc, env in zip(workspace.locations, envs)}

    pythons = asyncio.run(interpreters())
    service.close()
    run = tmp / "run"
    run.mkdir(mode=0o700)
    sdk_dir = make_sdk_dir(str(run))
    procs, out = {}, {}
    try:
        for loc in workspace.locations:
            secret = secrets.token_hex(16)
            sock = run / f"{loc.name}.sock"
            boot = {
                "location": loc.name,
                "listen": f"unix:{sock}",
                "secret": secret,
                "status_fd": None,
                "target": {
                    "kind": "python_file",
                    "python_file": str(loc.target.python_file),
                    "module_name": None,
                    "attribute": None,
                    "working_directory": str(loc.target.working_directory),
                },
                "protocol": 1,
            }
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            proc = subprocess.Popen(
                bootstrap_argv(pythons[loc.name], sdk_dir),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=str(loc.target.working_directory),
                env=env,
                text=True,
            )
            proc.stdin.write(json.dumps(boot) + "\n")  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
            procs[loc.name] = (proc, sock, secret)
        for name, (proc, sock, _secret) in procs.items():
            wait_for(
                lambda p=proc, s=sock: s.exists() or p.poll() is not None, 60, f"{name} to listen"
            )
            assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
        clients = {
            name: Client(f"unix:{sock}", secret) for name, (_p, sock, secret) in procs.items()
        }
        for name, client in clients.items():  # all three are serving at once
            out[name] = {
                "python": pythons[name],
                "snapshot": client.call("get_snapshot"),
                "sensor": client.call("evaluate_sensor", {"sensor": "versions_sensor"}),
            }
        for client in clients.values():
            client.call("shutdown")
            client.close()
    finally:
        for proc, _sock, _secret in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stderr.close()  # type: ignore[union-attr]
    assert all(proc.returncode == 0 for proc, _, _ in procs.values())
    return out


def tags(answer: Dict[str, Any]) -> Dict[str, str]:
    jobs = answer["snapshot"]["repositories"][0]["jobs"]
    return next(j["tags"] for j in jobs if j["name"] == "report_versions")


def run_config(answer: Dict[str, Any]) -> Dict[str, Any]:
    return answer["sensor"]["run_requests"][0]["run_config"]


def test_each_env_sees_its_own_teamlib(answers: Dict[str, Any]) -> None:
    assert tags(answers["team_old"])["teamlib"] == "1.0"
    assert tags(answers["team_new"])["teamlib"] == "2.0"
    assert tags(answers["system_python"])["teamlib"] == "absent"
    assert [run_config(answers[n])["teamlib"] for n in ("team_old", "team_new")] == ["1.0", "2.0"]
    assert answers["team_old"]["python"] != answers["team_new"]["python"]  # two envs


def test_each_location_reports_its_own_python(answers: Dict[str, Any]) -> None:
    system = run_config(answers["system_python"])
    assert system["executable"] == DEBIAN
    debian_version = subprocess.run(
        [DEBIAN, "-c", "import sys; print(sys.version)"], capture_output=True, text=True
    ).stdout.strip()
    assert system["python"] == debian_version
    for name in ("team_old", "team_new"):
        config = run_config(answers[name])
        assert config["executable"] == answers[name]["python"]  # the env's python, not wsm's
        assert answers[name]["snapshot"]["python"] == config["python"]
    # team_old is built on wsm's own Python, team_new on the one its spec "3.12" finds
    assert run_config(answers["team_old"])["python"] == sys.version
    assert run_config(answers["team_new"])["python"].startswith("3.12")
    assert answers["system_python"]["snapshot"]["python"] == debian_version
    assert tags(answers["system_python"])["python"] == debian_version.split()[0]
