"""`wsm env build | list | prune` on a real workspace, with a private cache and runtime dir."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import List

import pytest
from fixtures.envs_support import copy_fixture

from workspace_manager.cli import env as env_cli
from workspace_manager.envs import store
from workspace_manager.envs.paths import CacheLayout
from workspace_manager.supervisor.runtime import ManagerRecord, ensure_private_dir, manager_dir
from workspace_manager.units import binary_size

REPO = "from workspace_manager import job, repository\n\n@job\ndef j(): ...\n\n@repository\ndef r():\n    return [j]\n"
OFFLINE = '["--no-index", "--no-build-isolation"]'


def wsm_env(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="wsm")
    sub = parser.add_subparsers(dest="command")
    env_cli.add_parser(sub)
    try:
        return env_cli.run(parser.parse_args(["env", *argv]))
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WSM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WSM_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "repo.py").write_text(REPO)
    copy_fixture("wsm_fixture_pkg", tmp_path)
    return tmp_path


def write_workspace(folder: Path, name: str, locations: List[str]) -> Path:
    path = folder / name
    path.write_text("load_from:\n" + "".join(locations))
    return path


def env_location(name: str, requirements: str) -> str:
    return (
        f"  - python_file:\n      relative_path: repo.py\n      location_name: {name}\n"
        f"      environment:\n        requirements: {requirements}\n        pip_args: {OFFLINE}\n"
    )


PLAIN = "  - python_file:\n      relative_path: repo.py\n      location_name: plain\n"


def listing(capsys: pytest.CaptureFixture) -> list:
    capsys.readouterr()
    assert wsm_env("list", "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_build_list_and_prune(folder: Path, capsys: pytest.CaptureFixture) -> None:
    ws_a = write_workspace(
        folder,
        "a.yaml",
        [env_location("pkg", '["./wsm_fixture_pkg"]'), env_location("bare", "[]"), PLAIN],
    )
    assert wsm_env("build", "-w", str(ws_a)) == 0
    out = capsys.readouterr().out
    assert "plain: no environment to build" in out
    assert "pkg: env " in out and "bare: env " in out and "built in" in out

    assert wsm_env("build", "-w", str(ws_a), "pkg") == 0
    assert "reused" in capsys.readouterr().out

    rows = listing(capsys)
    assert len(rows) == 2
    pkg_row = next(r for r in rows if r["requirements"])
    assert pkg_row["requirements"] == [str(folder / "wsm_fixture_pkg")]
    [user] = pkg_row["used_by"]
    assert (user["workspace"], user["location"], user["running"]) == (
        f"workspace:{ws_a}",
        "pkg",
        False,
    )
    assert pkg_row["size_bytes"] > 0 and pkg_row["complete"] and not pkg_row["in_use"]
    assert wsm_env("list") == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == [
        "KEY", "SOURCE", "PYTHON", "SIZE", "SHARED", "LAST", "USED", "USED", "BY",
    ]  # fmt: skip
    assert pkg_row["key"] in table and "pkg" in table

    # prune keeping what b.yaml uses: only the bare env survives
    ws_b = write_workspace(folder, "b.yaml", [env_location("other", "[]")])
    assert wsm_env("prune", "-w", str(ws_b), "--dry-run") == 0
    # it frees what `wsm env list` says is the env's own, its blocks on disk
    freed = binary_size(pkg_row["own_bytes"])
    assert f"would remove {pkg_row['key']} (no given workspace uses it, {freed})" in (
        capsys.readouterr().out
    )
    assert len(listing(capsys)) == 2
    assert wsm_env("prune", "-w", str(ws_b)) == 0
    assert "1 environment removed" in capsys.readouterr().out
    assert [r["requirements"] for r in listing(capsys)] == [[]]
    assert not os.path.exists(pkg_row["path"])


def test_build_failure_is_one_line_and_exit_1(folder: Path, capsys: pytest.CaptureFixture) -> None:
    ws = write_workspace(
        folder,
        "workspace.yaml",
        [env_location("bad", '["wsm-no-such-package==1"]'), env_location("good", "[]")],
    )
    assert wsm_env("build") == 1
    captured = capsys.readouterr()
    failures = [line for line in captured.err.splitlines() if line.startswith("wsm: bad:")]
    assert len(failures) == 1
    assert "pip install failed: ERROR:" in failures[0] and "full log:" in failures[0]
    assert "good: env " in captured.out
    assert ws.exists()


def test_build_unknown_location_exit_2(folder: Path, capsys: pytest.CaptureFixture) -> None:
    write_workspace(folder, "workspace.yaml", [PLAIN])
    assert wsm_env("build", "nope") == 2
    assert "no location named nope" in capsys.readouterr().err


def test_prune_by_age_never_removes_an_env_in_use(
    folder: Path, capsys: pytest.CaptureFixture
) -> None:
    ws = write_workspace(
        folder, "workspace.yaml", [env_location("one", "[]"), env_location("two", '["--pre"]')]
    )
    assert wsm_env("build", "-w", str(ws)) == 0
    keys = sorted(r["key"] for r in listing(capsys))
    layout = CacheLayout.at()
    old = time.time() - 10 * 86400
    for key in keys:  # both last used ten days ago
        store.write_json_atomic(layout.usage_file(key), {"last_used": old, "users": {}})
    # a running manager (this test process) says it uses the first one
    run_dir = ensure_private_dir(manager_dir("abc123"))
    ManagerRecord(os.getpid(), "abc123", "workspace:x", "unix:/nope", "s", time.time(), "0").write(
        run_dir
    )
    (run_dir / "envs.json").write_text(json.dumps([keys[0]]))
    assert wsm_env("prune", "--unused-days", "30") == 0
    assert "0 environments removed" in capsys.readouterr().out
    assert wsm_env("prune", "--unused-days", "7") == 0
    out = capsys.readouterr().out
    assert f"kept {keys[0]}: in use by a running manager" in out
    assert f"removed {keys[1]} (unused for 7 days" in out
    assert [r["key"] for r in listing(capsys)] == [keys[0]]


def test_prune_needs_a_criterion(folder: Path, capsys: pytest.CaptureFixture) -> None:
    assert wsm_env("prune") == 2
    assert "--unused-days" in capsys.readouterr().err
