"""Issue 12, point 6: `wsm env list` shows each environment's source, interpreter, size on disk,
the space it shares with others (uv links files from its cache), and which locations use it,
running or not. Offline: wheels written by the test, real `uv lock`, UV_OFFLINE=1."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
from cli_imports_test import wsm as wsm_modules
from e2e import WorkspaceDir, WsmUp, modules_in
from wheelhouse import PYTHON, UV, code_location, make_wheel, pyproject, uv_lock

from workspace_manager.envs.store import source_of
from workspace_manager.envs.usage import measure

REPO = "from workspace_manager import job, repository\n\n@job\ndef j(): ...\n\n@repository\ndef r():\n    return [j]\n"
KEYS = {
    "key", "complete", "path", "source", "python", "interpreter", "implementation",
    "requirements", "installer", "size_bytes",
    "shared_bytes", "own_bytes", "shared_with", "created", "last_used", "used_by", "in_use",
}  # fmt: skip


def env_list(ws: WorkspaceDir) -> List[Dict[str, Any]]:
    done = ws.run("env", "list", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def du(*paths: Path) -> List[int]:
    """GNU du's blocks in bytes for each path; a hard-linked file is counted at its first
    path only, so a later path's figure is what it holds beyond the earlier ones."""
    out = subprocess.run(
        ["du", "-s", "-B1", *map(str, paths)], capture_output=True, text=True, check=True
    ).stdout
    return [int(line.split()[0]) for line in out.splitlines()]


@pytest.mark.skipif(UV is None, reason="uv is a test dependency (.[test])")
def test_uv_envs_share_their_files_and_a_pip_env_shares_none(ws: WorkspaceDir) -> None:
    """Two locked envs installed by uv from one wheelhouse hold the same inodes (uv links them
    from its cache): each shows that space as shared, and with which env. The same packages
    installed by pip are copies: nothing shared. Sizes and shares agree with GNU du."""
    ws.env.update(UV_OFFLINE="1", UV_NO_PROGRESS="1")
    ws.env.pop("UV_CACHE_DIR", None)
    wheels = ws.root / "wheels"
    built = {n: make_wheel(wheels, n, "1.0") for n in ("tinya", "tinyb", "tinyc")}
    pyproject(ws.root / "alpha", "alpha", ["tinya", "tinyb"], built)
    pyproject(
        ws.root / "beta", "beta", ["tinya"], built, extra='[dependency-groups]\ndev = ["tinyc"]\n'
    )
    for name in ("alpha", "beta"):
        uv_lock(ws.root / name, ws.root / "uv-lock-cache")
    (ws.root / "pipenv").mkdir()
    req = ws.root / "pipenv" / "requirements.txt"
    req.write_text(
        "".join(
            f"{n}==1.0 --hash=sha256:{hashlib.sha256(built[n].read_bytes()).hexdigest()}\n"
            for n in ("tinya", "tinyb")
        )
    )
    for workdir in ("alpha", "beta", "pipenv"):
        ws.file(f"{workdir}/repo.py", REPO)
    path = ws.workspace(
        {
            "load_from": [
                code_location("alpha", "alpha", project="."),
                code_location("beta", "beta", project=".", groups=["dev"]),
                code_location(
                    "copies",
                    "pipenv",
                    requirements_file="pipenv/requirements.txt",
                    pip_args=["--no-index", "--find-links", str(wheels)],
                ),
            ]
        }
    )
    done = ws.run("env", "build", "-w", str(path), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    rows = env_list(ws)
    assert len(rows) == 3 and all(set(r) == KEYS for r in rows), rows
    by = {r["used_by"][0]["location"]: r for r in rows}
    alpha, beta, copies = by["alpha"], by["beta"], by["copies"]

    # source: the lock (and the project it is read for), or the requirements file
    assert alpha["source"]["kind"] == "uv.lock"
    assert alpha["source"]["path"] == str(ws.root / "alpha" / "uv.lock")
    assert alpha["source"]["project"] == str(ws.root / "alpha")
    assert beta["source"]["groups"] == ["dev"]
    assert copies["source"]["kind"] == "requirements_file"
    assert copies["source"]["path"] == str(req)
    assert (alpha["installer"], copies["installer"]) == ("uv", "pip")
    # the interpreter each was made from: here wsm's own
    for row in rows:
        assert row["interpreter"] == str(PYTHON)
        assert row["python"] == platform.python_version()
        assert row["implementation"] == platform.python_implementation()

    # one inode, two envs: uv linked tinya's module into both from its cache
    module = "lib/python{}.{}/site-packages/tinya/__init__.py".format(
        *platform.python_version_tuple()
    )
    a_file, b_file = (Path(r["path"]) / module for r in (alpha, beta))
    assert os.stat(a_file).st_ino == os.stat(b_file).st_ino

    assert alpha["shared_bytes"] > 0 and beta["shared_bytes"] > 0
    assert alpha["shared_with"] == [beta["key"]] and beta["shared_with"] == [alpha["key"]]
    assert copies["shared_bytes"] == 0 and copies["shared_with"] == []
    assert copies["own_bytes"] == copies["size_bytes"]
    # sizes are du's: each inode once; shared is what du finds already counted in uv's cache
    uv_cache = ws.root / ".wsm-cache" / "uv"
    for row in rows:
        real = Path(row["path"]).resolve()
        assert du(real) == [row["size_bytes"]], row
        assert du(uv_cache, real)[1] == row["own_bytes"], row
        assert row["own_bytes"] + row["shared_bytes"] == row["size_bytes"]

    unmeasured = json.loads(ws.run("env", "list", "--json", "--no-size").stdout)
    assert [r["key"] for r in unmeasured] == [r["key"] for r in rows]
    assert {(r["size_bytes"], r["shared_bytes"], r["own_bytes"]) for r in unmeasured} == {
        (None, None, None)
    }

    table = ws.run("env", "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["KEY", "SOURCE", "PYTHON", "SIZE", "SHARED"]
    copies_line = next(line for line in lines if line.startswith(copies["key"]))
    assert " none " in copies_line and "requirements_file " in copies_line
    alpha_line = next(line for line in lines if line.startswith(alpha["key"]))
    assert "uv.lock " in alpha_line and "alpha/uv.lock" in alpha_line and "%)" in alpha_line
    beta_line = next(line for line in lines if line.startswith(beta["key"]))
    assert "(groups dev)" in beta_line
    total = du(*(Path(r["path"]).resolve() for r in rows))
    assert lines[-1].startswith("3 environments: ") and "on disk together" in lines[-1]
    assert sum(total) < sum(r["size_bytes"] for r in rows)  # the sharing, seen by du too


def test_users_are_listed_running_or_not(ws: WorkspaceDir) -> None:
    """Which locations use an env, with their workspace: the two of a running manager are
    `running`; a third that only built it with `wsm env build` from another workspace is not.
    Once the manager stops, none is."""
    ws.file("repo.py", REPO)
    offline = {"requirements": [], "pip_args": ["--no-index"]}

    def workspace(names: List[str], file: str) -> Path:
        locations = [
            {
                "python_file": {
                    "relative_path": "repo.py",
                    "location_name": n,
                    "environment": offline,
                }
            }
            for n in names
        ]
        return ws.workspace({"load_from": locations}, name=file)

    running = workspace(["one", "two"], "workspace.yaml")
    other = workspace(["three"], "other.yaml")
    done = ws.run("env", "build", "-w", str(other), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with WsmUp(ws, "-w", str(running)) as up:
        status = up.wait_all_settled(timeout=120)
        assert {loc["state"] for loc in status["locations"].values()} == {"ready"}, up.output()
        [row] = env_list(ws)
        assert row["in_use"] is True
        users = {(u["workspace"], u["location"]): u for u in row["used_by"]}
        assert {k: u["running"] for k, u in users.items()} == {
            (f"workspace:{running}", "one"): True,
            (f"workspace:{running}", "two"): True,
            (f"workspace:{other}", "three"): False,
        }
        assert all(isinstance(u["last_used"], float) for u in users.values())
        table = ws.run("env", "list").stdout
        # grouped by workspace: other.yaml's path sorts before workspace.yaml's
        users_text = (
            "three in other.yaml; one in workspace.yaml (running); two in workspace.yaml (running)"
        )
        assert table.splitlines()[1].endswith("  " + users_text), table
        # no record of users in the cache (a read-only one cannot take it): what the running
        # manager says it runs is still shown
        (ws.root / ".wsm-cache" / "envs" / ".usage" / f"{row['key']}.json").unlink()
        [row] = env_list(ws)
        assert [(u["location"], u["running"], u["last_used"]) for u in row["used_by"]] == [
            ("one", True, None),
            ("two", True, None),
        ]
        # a reload that removes `two`: it runs on the env no more
        workspace(["one"], "workspace.yaml")
        done = ws.run("reload", "-w", str(running), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        [row] = env_list(ws)
        assert [(u["location"], u["running"]) for u in row["used_by"]] == [("one", True)]
        up.stop()
    [row] = env_list(ws)
    assert row["in_use"] is False and row["used_by"] == []
    assert ws.run("env", "build", "-w", str(running)).returncode == 0  # reused: records users
    [row] = env_list(ws)
    assert [(u["location"], u["running"]) for u in row["used_by"]] == [("one", False)]


def test_sources_from_records(tmp_path: Path) -> None:
    """Each source kind as the build's record gives it, and a record older than projects."""
    lock = {"source": "uv.lock", "lock": "/w/mono/uv.lock", "project": "/w/mono/one"}
    assert source_of(dict(lock, inputs={"extras": ["x"], "groups": ["dev"]})) == {
        "kind": "uv.lock",
        "path": "/w/mono/uv.lock",
        "project": "/w/mono/one",
        "requirements": [],
        "extras": ["x"],
        "groups": ["dev"],
    }
    assert source_of({"source": "pylock", "lock": "/p/pylock.toml"})["path"] == "/p/pylock.toml"
    unlocked = source_of({"source": "project", "project": "/p", "requirements": ["/p"]})
    assert (unlocked["kind"], unlocked["path"]) == ("project", "/p")
    with_file = {"source": "requirements", "requirements_file": "/r.txt", "requirements": ["a"]}
    assert source_of(with_file)["kind"] == "requirements_file"
    old = {"requirements": ["six"], "requirements_file": None}  # no "source": an older wsm
    assert source_of(old) == {
        "kind": "requirements",
        "path": None,
        "project": None,
        "requirements": ["six"],
        "extras": [],
        "groups": [],
    }


def test_measure_counts_each_inode_once_and_links_outside_as_shared(tmp_path: Path) -> None:
    """The rules of envs/usage.py on a hand-made tree: two names of one file in one env count
    once and are not shared; a file linked from a cache outside is shared (with no env); a
    file linked into another env is shared with it; the total counts every inode once."""
    cache, one, two = tmp_path / "cache", tmp_path / "one", tmp_path / "two"
    for folder in (cache, one / "sub", two):
        folder.mkdir(parents=True)

    def write(path: Path, size: int) -> Path:
        path.write_bytes(os.urandom(size))
        return path

    alone = write(one / "alone", 10_000)
    twice = write(one / "twice", 20_000)
    os.link(twice, one / "sub" / "twice-again")
    cached = write(cache / "cached", 30_000)
    os.link(cached, one / "from-cache")
    both = write(one / "both", 40_000)
    os.link(both, two / "both")
    os.symlink("/usr/bin/env", one / "python")  # not followed
    usage = measure({"one": one, "two": two, "gone": tmp_path / "missing"})

    def blocks(path: Path) -> int:
        return os.lstat(path).st_blocks * 512

    folders = sum(blocks(p) for p in (one, one / "sub"))
    u1 = usage.envs["one"]
    assert (
        u1.size_bytes
        == du(one)[0]
        == folders + sum(blocks(p) for p in (alone, twice, cached, both, one / "python"))
    )
    assert u1.shared_bytes == blocks(cached) + blocks(both)
    assert u1.own_bytes == du(cache, two, one)[2]
    assert u1.shared_with == ("two",)
    u2 = usage.envs["two"]
    assert (u2.size_bytes, u2.shared_bytes, u2.shared_with) == (du(two)[0], blocks(both), ("one",))
    assert usage.envs["gone"].size_bytes == 0
    assert usage.total_bytes == sum(du(one, two)) < usage.sum_bytes


def test_listing_imports_nothing_of_the_build_side(tmp_path: Path) -> None:
    """`wsm env list` reads records and stats files: no event loop, no thread pool, no key or
    build code (it used to import envs/service.py and asyncio: ~3x its start-up)."""
    code, modules = wsm_modules(tmp_path, "env", "list")
    assert code == 0
    heavy = ("asyncio", "concurrent", "virtualenv", "filelock", "workspace_manager.envs.service")
    assert modules_in(modules, (*heavy, "workspace_manager.envs.key", "yaml")) == []
