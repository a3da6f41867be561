"""Files and secrets (issue 8, section 8): everything wsm writes is its user's alone,
credentials in a command line are never printed or stored, and wsm's own tokens are not in
a location's environment."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import List

from e2e import WorkspaceDir, WsmUp, wait_for
from fixtures.envs_support import make_package

SECRET = "s3cr3t-pa55"

ENV_DUMP_SETUP = """
import json, os
from setuptools import setup
with open(os.path.join(os.environ["DUMP_DIR"], "setup.json"), "w") as f:
    json.dump(dict(os.environ), f)
setup()
"""

PLAIN = """
    import json, os
    dump = os.environ.get("DUMP_DIR")
    if dump:
        with open(os.path.join(dump, os.environ["WSM_LOCATION"] + ".json"), "w") as f:
            json.dump(dict(os.environ), f)
    print("hello from", os.environ["WSM_LOCATION"])
    from workspace_manager import job, repository

    @job
    def noop(): ...

    @repository
    def plain_repo():
        return [noop]
"""

# What pip and virtualenv make inside an environment keeps their modes (SPEC section 6
# covers what wsm writes): below these, only the folder itself is checked.
VENDOR_MADE = {".builds", "virtualenv", "py_info"}


def loose_paths(root: Path) -> List[str]:
    """Every path under ``root`` (itself included) that is not 0700 (folder) / 0600 (file)."""
    bad = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here.name in VENDOR_MADE:
            dirs[:] = []  # its own mode was checked; what is below is pip's and virtualenv's
            continue
        for name in [*dirs, *files, *([] if here != root else ["."])]:
            path = here if name == "." else here / name
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            if stat.S_IMODE(st.st_mode) != want:
                bad.append(f"{oct(stat.S_IMODE(st.st_mode))} {path}")
    return bad


def test_everything_wsm_writes_is_private_and_no_credential_is_printed_or_stored(
    ws: WorkspaceDir,
) -> None:
    ws.file("plain.py", PLAIN)
    index = f"https://alice:{SECRET}@127.0.0.1:9/simple"
    ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "plain.py", "location_name": "plain"}},
                {
                    "python_file": {
                        "relative_path": "plain.py",
                        "location_name": "built",
                        "environment": {"requirements": []},
                    }
                },
                {
                    "python_file": {
                        "relative_path": "plain.py",
                        "location_name": "leaky",
                        "environment": {
                            "requirements": [
                                "wsm-no-such-package-5d1e",
                                f"other @ https://bob:{SECRET}@127.0.0.1:9/other-1.0.tar.gz",
                            ],
                            "pip_args": [
                                "--index-url",
                                index,
                                f"--extra-index-url=https://carol:{SECRET}@127.0.0.1:9/x",
                                f"-ihttps://{SECRET}@127.0.0.1:9/y",
                                "--retries",
                                "0",
                                "--timeout",
                                "1",
                            ],
                        },
                    }
                },
            ]
        }
    )
    old_umask = os.umask(0o022)  # what most users have: files 0644, folders 0755
    try:
        up = WsmUp(ws)
    finally:
        os.umask(old_umask)
    with up:
        up.wait_state("plain", "ready", timeout=60)
        up.wait_state("built", "ready", timeout=120)
        leaky = up.wait_state("leaky", "error", timeout=120)
        assert SECRET not in json.dumps(up.status())
        assert "alice:****@" in leaky["error"] or "****" in (leaky.get("traceback") or "")
        result = ws.run("status", "--json")
        assert SECRET not in result.stdout + result.stderr
        wait_for(lambda: list((ws.root / ".wsm-state").glob("*/logs/plain.log")), 10, "log")
        running = {
            name: loose_paths(ws.root / name) for name in (".wsm-run", ".wsm-state", ".wsm-cache")
        }
        assert up.stop() == 0
    assert running == {".wsm-run": [], ".wsm-state": [], ".wsm-cache": []}, running
    assert loose_paths(ws.root / ".wsm-state") == []
    assert SECRET not in up.output()
    build_logs = list((ws.root / ".wsm-cache" / "logs").iterdir())
    assert len(build_logs) == 2
    texts = [p.read_text() for p in build_logs]
    assert not [t for t in texts if SECRET in t]
    assert any("https://alice:****@127.0.0.1:9/simple" in t for t in texts), texts
    for marker in (ws.root / ".wsm-cache" / "envs").glob("*/wsm-env.json"):
        assert SECRET not in marker.read_text()


def test_looser_folders_of_an_older_wsm_are_tightened(ws: WorkspaceDir) -> None:
    ws.file("plain.py", PLAIN)
    ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "plain.py", "environment": {"requirements": []}}}
            ]
        }
    )
    for name in (".wsm-run", ".wsm-state", ".wsm-cache"):
        (ws.root / name).mkdir(mode=0o755)
        os.chmod(ws.root / name, 0o755)
    with WsmUp(ws) as up:
        up.wait_state("plain", "ready", timeout=60)
        assert up.stop() == 0
    for name in (".wsm-run", ".wsm-state", ".wsm-cache"):
        assert loose_paths(ws.root / name) == [], name


def test_wsms_tokens_are_not_in_a_locations_environment(ws: WorkspaceDir, tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    ws.env["DUMP_DIR"] = str(dump)
    ws.env["REMOTE_TEAM_TOKEN"] = SECRET
    ws.env["SOME_USER_VAR"] = "kept"
    ws.file("plain.py", PLAIN)
    ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "plain.py", "location_name": "plain"}},
                {
                    "python_file": {
                        "relative_path": "plain.py",
                        "location_name": "asks",
                        "env_vars": {"REMOTE_TEAM_TOKEN": "its-own"},
                    }
                },
                {
                    "python_file": {
                        "relative_path": "plain.py",
                        "location_name": "built",
                        "environment": {
                            "requirements": ["./envdump"],
                            "pip_args": ["--no-index", "--no-build-isolation"],
                        },
                    }
                },
                {
                    "grpc_server": {
                        "host": "127.0.0.1",
                        "port": 9,
                        "location_name": "remote",
                        "token_env": "REMOTE_TEAM_TOKEN",
                    }
                },
            ]
        }
    )
    # a requirement whose build runs code: pip's environment is checked as well
    make_package(ws.root, "envdump", "envdump", "", setup_py=ENV_DUMP_SETUP)
    with WsmUp(ws) as up:
        up.wait_state("plain", "ready", timeout=60)
        up.wait_state("asks", "ready", timeout=60)
        up.wait_state("built", "ready", timeout=120)
        assert up.stop() == 0
    for name in ("built", "setup"):
        seen = json.loads((dump / f"{name}.json").read_text())
        assert "REMOTE_TEAM_TOKEN" not in seen and SECRET not in json.dumps(seen), name
    plain = json.loads((dump / "plain.json").read_text())
    asks = json.loads((dump / "asks.json").read_text())
    assert "REMOTE_TEAM_TOKEN" not in plain
    assert SECRET not in json.dumps(plain)
    assert plain["SOME_USER_VAR"] == "kept"  # only wsm's own secrets go
    assert asks["REMOTE_TEAM_TOKEN"] == "its-own"  # named in its env_vars: it gets it


def test_redact_masks_passwords_and_lone_tokens_in_any_url() -> None:
    from workspace_manager.redact import redact, redact_argv

    assert redact("--index-url https://user:pw@host/simple") == (
        "--index-url https://user:****@host/simple"
    )
    assert (
        redact("--extra-index-url=http://u:p@h:8080/x")
        == "--extra-index-url=http://u:****@h:8080/x"
    )
    assert redact("-ihttps://TOKEN@host/") == "-ihttps://****@host/"
    assert redact("pkg @ git+https://tok@github.com/o/r") == "pkg @ git+https://****@github.com/o/r"
    assert (
        redact("mail me at a@b.com, see https://host/a@b")
        == "mail me at a@b.com, see https://host/a@b"
    )
    assert redact_argv([sys.executable, "-i", "https://a:b@c/"]) == [
        sys.executable,
        "-i",
        "https://a:****@c/",
    ]


def test_wsm_serves_token_is_not_in_its_locations_environment(
    ws: WorkspaceDir, tmp_path: Path
) -> None:
    import socket

    dump = tmp_path / "dump"
    dump.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws.file("served.py", PLAIN)
    env = dict(ws.env, DUMP_DIR=str(dump), SERVE_TOKEN=SECRET)
    argv = ["-f", "served.py", "--listen", f"tcp://127.0.0.1:{port}", "--token-env", "SERVE_TOKEN"]
    with WsmUp(ws, *argv, command="serve", env=env) as up:
        up.wait_state("served", "ready", timeout=60)
        up.stop()
    served = json.loads((dump / "served.json").read_text())
    assert "SERVE_TOKEN" not in served and SECRET not in json.dumps(served)
