"""State folders: what a manager identity names, and which folders a prune may remove
(real folders and real locks in tmp_path; the end-to-end case is in cli_console_test.py)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import pytest

from workspace_manager.supervisor import runtime, statedirs


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WSM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WSM_RUNTIME_DIR", str(tmp_path / "run"))
    return tmp_path


def test_identity_target_names_every_kind_plainly() -> None:
    assert runtime.identity_target("workspace:/w/ws.yaml") == {"workspace": "/w/ws.yaml"}
    assert runtime.identity_target("file:/a#b/repo.py#") == {
        "python_file": "/a#b/repo.py",
        "attribute": None,
    }
    assert runtime.identity_target("file:/r.py#repo") == {
        "python_file": "/r.py",
        "attribute": "repo",
    }
    assert runtime.identity_target("module:pkg.mod#@/home/me@work") == {
        "module_name": "pkg.mod",
        "attribute": None,
        "working_directory": "/home/me@work",
    }
    assert runtime.identity_target("list:workspace:/w/ws.yaml:123") == {
        "list": {"workspace": "/w/ws.yaml"}
    }
    assert runtime.identity_target("serve:tcp://0.0.0.0:4266:file:/r.py#") == {
        "serve": "tcp://0.0.0.0:4266",
        "python_file": "/r.py",
        "attribute": None,
    }
    assert runtime.identity_target("odd") == {"identity": "odd"}


def _folder(root: Path, key: str, identity: str, age_days: float) -> Path:
    statedirs.claim(key, identity)
    folder = root / "state" / key
    (folder / "logs").mkdir()
    (folder / "logs" / "a.log").write_text("x\n")
    then = time.time() - age_days * 86400
    for path in (folder / "logs" / "a.log", folder / "logs", folder / "target.json", folder):
        os.utime(path, (then, then))
    return folder


def test_prune_removes_only_old_folders_of_gone_targets(dirs: Path) -> None:
    (dirs / "ws.yaml").write_text("load_from: []\n")
    gone = _folder(dirs, "a" * 12, f"workspace:{dirs / 'nope.yaml'}", 8)
    young = _folder(dirs, "b" * 12, f"workspace:{dirs / 'nope.yaml'}", 6)
    there = _folder(dirs, "c" * 12, f"workspace:{dirs / 'ws.yaml'}", 30)
    listed = _folder(dirs, "d" * 12, f"list:workspace:{dirs / 'ws.yaml'}:99", 8)
    gone_cwd = _folder(dirs, "e" * 12, f"module:m#@{dirs / 'no-such-dir'}", 8)
    unknown = dirs / "state" / ("f" * 12)
    unknown.mkdir()
    os.utime(unknown, (0, 0))
    dry = statedirs.prune(dry_run=True)
    assert {sd.path for sd in dry} == {gone, listed, gone_cwd}
    assert gone.exists()
    removed = statedirs.prune()
    assert {sd.path for sd in removed} == {gone, listed, gone_cwd}
    assert not gone.exists() and not listed.exists() and not gone_cwd.exists()
    assert young.exists() and there.exists() and unknown.exists()
    assert [sd.path for sd in statedirs.prune(older_than=0)] == [young]
    # a folder that does not say what it belongs to goes only when asked
    assert [sd.path for sd in statedirs.prune(include_unknown=True)] == [unknown]


def test_prune_never_removes_a_folder_whose_manager_lock_is_held(dirs: Path) -> None:
    key = "a" * 12
    held = _folder(dirs, key, f"workspace:{dirs / 'gone.yaml'}", 30)
    run_dir = runtime.ensure_private_dir(dirs / "run" / key)
    lock = runtime.ManagerLock(run_dir)
    assert lock.acquire()
    try:
        assert statedirs.prune(older_than=0) == []
        assert held.exists()
    finally:
        lock.release()
    # a prune holds the lock only while it removes a folder
    fd = os.open(run_dir / "manager.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again once the prune is done
    finally:
        os.close(fd)
    assert [sd.path for sd in statedirs.prune(older_than=0)] == [held]


def test_claim_writes_the_identity_privately(dirs: Path) -> None:
    statedirs.claim("k" * 12, "workspace:/x.yaml")
    path = dirs / "state" / ("k" * 12) / "target.json"
    assert json.loads(path.read_text()) == {"identity": "workspace:/x.yaml"}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
