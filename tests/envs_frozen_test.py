"""Issue 12, point 4: environments built ahead of time (`wsm env build` in an image's build
step), then `wsm up --frozen-envs` on a cache that may be read-only.

The cache is made truly read-only: tests run as root, whom mode bits do not stop, so `wsm`
runs in a mount namespace of its own (`unshare -m`) where the cache folder is a read-only
bind mount of itself; the kernel refuses every write there (EROFS). Each test also compares
the cache's tree (names, sizes, modes, mtimes, link targets) before and after.

Projects, locks and wheels are made offline as in envs_project_test.py, whose helpers are
used here.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from e2e import WorkspaceDir, WsmUp, wait_for, wsm_argv
from envs_project_test import REPO
from wheelhouse import UV, code_location, make_wheel, pyproject, uv_lock

from workspace_manager.cli.serve import EXIT_LOAD_ERROR
from workspace_manager.envs.frozen import FrozenEnvMissing, build_command
from workspace_manager.envs.service import EnvironmentService
from workspace_manager.workspace.model import (
    CodeTarget,
    EnvironmentSpec,
    LocationConfig,
    Supervision,
)

# The mount is made and checked, then wsm is exec'd in the same process (so WsmUp tracks
# wsm's own tree): `! touch` makes sure a write really fails there before wsm starts.
_READ_ONLY = (
    'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && '
    '! touch "$0/.wsm-write-probe" 2>/dev/null && exec "$@"'
)


def read_only(path: Path) -> List[str]:
    """argv prefix: run a command with ``path`` read-only for it and its children only."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", _READ_ONLY, str(path)]


def _can_make_read_only() -> bool:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        try:
            done = subprocess.run(read_only(Path(folder)) + ["true"], capture_output=True)
        except OSError:
            return False
        return done.returncode == 0 and not os.listdir(folder)


pytestmark = [
    pytest.mark.skipif(UV is None, reason="uv is a test dependency (.[test])"),
    pytest.mark.skipif(
        not _can_make_read_only(), reason="needs unshare -m and mount (root) for a read-only cache"
    ),
]


def tree(root: Path) -> Dict[str, Tuple]:
    """Every path under ``root`` with what a write would change: type, size, mode, mtime
    (a folder's changes when an entry is added or removed), a link's target."""
    out: Dict[str, Tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            target = os.readlink(path) if os.path.islink(path) else None
            size = 0 if os.path.isdir(path) and not target else st.st_size
            out[os.path.relpath(path, root)] = (st.st_mode, size, st.st_mtime_ns, target)
    st = os.lstat(root)
    out["."] = (st.st_mode, 0, st.st_mtime_ns, None)
    return out


def lru_as_one(snapshot: Dict[str, Tuple]) -> Dict[str, Tuple]:
    """``snapshot`` without the mtimes of the verdict cache's entries (their LRU order)."""
    return {
        p: (v[:2] + (None,) + v[3:] if p.startswith("validated" + os.sep) else v)
        for p, v in snapshot.items()
    }


def run_wsm(ws: WorkspaceDir, *args: str, prefix: List[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, *wsm_argv(*args)],
        cwd=ws.root,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def two_projects(ws: WorkspaceDir) -> Path:
    """Locations `a` (locks tinya 1.0) and `b` (locks tinyb 1.0), each a project with its own
    uv.lock, offline; uv compiles bytecode as an image's build step would (so the locations'
    imports have nothing to write either)."""
    ws.env.update(UV_OFFLINE="1", UV_NO_PROGRESS="1", UV_COMPILE_BYTECODE="1")
    ws.env.pop("UV_CACHE_DIR", None)
    wheels = ws.root / "wheels"
    wants = {"a": ("tinya", make_wheel(wheels, "tinya", "1.0"))}
    wants["b"] = ("tinyb", make_wheel(wheels, "tinyb", "1.0"))
    for name, (dist, wheel) in wants.items():
        pyproject(ws.root / name, name, [dist], {dist: wheel})
        uv_lock(ws.root / name, ws.root / "uv-lock-cache")
        ws.file(f"{name}/repo.py", REPO.format(want={dist: f"{dist} 1.0"}))
    return ws.workspace({"load_from": [code_location(n, n, project=".") for n in ("a", "b")]})


def states(up: WsmUp, timeout: float = 120) -> Dict[str, Dict]:
    return up.wait_all_settled(timeout=timeout)["locations"]


def test_built_ahead_then_frozen_start_on_a_read_only_cache(ws: WorkspaceDir) -> None:
    """The image's build step builds every env; at run time, on a read-only cache, `wsm env
    list` shows them and `wsm up --frozen-envs` starts every location from them, building
    nothing and writing nothing to the cache (not even on a writable one)."""
    path = two_projects(ws)
    built = run_wsm(ws, "env", "build", "-w", str(path))
    assert built.returncode == 0, built.stderr
    cache = ws.root / ".wsm-cache"
    before = tree(cache)

    listed = run_wsm(ws, "env", "list", "--json", prefix=read_only(cache))
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    keys = {line.split(": env ")[1].split()[0] for line in built.stdout.splitlines()}
    assert {row["key"] for row in json.loads(listed.stdout)} == keys

    with WsmUp(ws, "-w", str(path), "--frozen-envs", prefix=read_only(cache)) as up:
        locations = states(up)
        assert {n: loc["state"] for n, loc in locations.items()} == {
            "a": "ready",
            "b": "ready",
        }, up.output()
        assert all(loc["environment"].startswith(str(cache / "envs")) for loc in locations.values())
        assert "building" not in up.output() and "cannot record" not in up.output(), up.output()
    assert tree(cache) == before

    # wsm writes nothing there even when it could: no last-used stamps, no locks, no
    # interpreter records. Only the workspace loader's verdict cache (workspace/
    # validation_cache.py) refreshes its entry's mtime, its LRU order, when it may.
    with WsmUp(ws, "-w", str(path), "--frozen-envs") as up:
        assert {loc["state"] for loc in states(up).values()} == {"ready"}, up.output()
    assert lru_as_one(tree(cache)) == lru_as_one(before)


def test_a_missing_env_under_frozen_envs_names_the_build_that_makes_it(ws: WorkspaceDir) -> None:
    """Only `a` was built: under --frozen-envs `b` is in `error`, naming the exact `wsm env
    build` that makes it, and `a` starts. That command, run, makes `b` start too."""
    path = two_projects(ws)
    built = run_wsm(ws, "env", "build", "-w", str(path), "a")
    assert built.returncode == 0, built.stderr
    cache = ws.root / ".wsm-cache"
    before = tree(cache)
    with WsmUp(ws, "-w", str(path), "--frozen-envs", prefix=read_only(cache)) as up:
        locations = states(up)
        assert locations["a"]["state"] == "ready", up.output()
        assert locations["b"]["state"] == "error", up.output()
        error = locations["b"]["error"]
        assert len(error.splitlines()) == 1 and "Traceback" not in up.output(), error
        assert "is not built, and --frozen-envs never builds" in error, error
        command = error.split("run `", 1)[1].split("`", 1)[0]
        assert command == f"wsm env build -w {path} b"
        assert "building" not in up.output(), up.output()
    assert tree(cache) == before

    made = run_wsm(ws, *shlex.split(command)[1:])
    assert made.returncode == 0, made.stderr
    with WsmUp(ws, "-w", str(path), "--frozen-envs", prefix=read_only(cache)) as up:
        assert {loc["state"] for loc in states(up).values()} == {"ready"}, up.output()


def test_a_changed_lock_under_frozen_envs_is_missing_never_rebuilt(ws: WorkspaceDir) -> None:
    """`a`'s lock changed after the image was built (tinya 1.0 -> 2.0): its key changed, so
    under --frozen-envs it is in `error` (the old env is not used, nor a new one built) and
    says the cache holds the env of its old inputs; `b` starts."""
    path = two_projects(ws)
    built = run_wsm(ws, "env", "build", "-w", str(path))
    assert built.returncode == 0, built.stderr
    old_key = built.stdout.split("a: env ", 1)[1].split()[0]
    newer = make_wheel(ws.root / "wheels2", "tinya", "2.0")
    pyproject(ws.root / "a", "a", ["tinya"], {"tinya": newer})
    uv_lock(ws.root / "a", ws.root / "uv-lock-cache")
    cache = ws.root / ".wsm-cache"
    before = tree(cache)
    with WsmUp(ws, "-w", str(path), "--frozen-envs") as up:  # writable: still no build
        locations = states(up)
        assert locations["b"]["state"] == "ready", up.output()
        assert locations["a"]["state"] == "error", up.output()
        error = locations["a"]["error"]
        assert "is not built" in error and f"the cache holds {old_key}" in error, error
        assert f"`wsm env build -w {path} a`" in error, error
        assert "building" not in up.output() and "uv sync" not in up.output(), up.output()
    assert lru_as_one(tree(cache)) == lru_as_one(before)


def test_read_only_cache_without_frozen_envs_is_one_line_not_a_traceback(
    ws: WorkspaceDir,
) -> None:
    """Without --frozen-envs a read-only cache still serves the envs it has; one that must be
    built is its location's error in one line, saying the cache is read-only and what to run;
    `wsm env build` there fails with one line too."""
    path = two_projects(ws)
    built = run_wsm(ws, "env", "build", "-w", str(path), "a")
    assert built.returncode == 0, built.stderr
    cache = ws.root / ".wsm-cache"
    before = tree(cache)
    with WsmUp(ws, "-w", str(path), prefix=read_only(cache)) as up:
        locations = states(up)
        assert locations["a"]["state"] == "ready", up.output()
        assert locations["b"]["state"] == "error", up.output()
        error = locations["b"]["error"]
        assert len(error.splitlines()) == 1, error
        assert f"cache cannot be written: {cache}: Read-only file system" in error, error
        assert f"`wsm env build -w {path} b`" in error and "--frozen-envs" in error, error
        assert "Traceback" not in up.output() and "cannot record" not in up.output()
    build = run_wsm(ws, "env", "build", "-w", str(path), "b", prefix=read_only(cache))
    assert build.returncode == 1
    assert "Traceback" not in build.stderr, build.stderr
    said = [line for line in build.stderr.splitlines() if line.startswith("wsm: b: ")]
    assert len(said) == 1 and "Read-only file system" in said[0], build.stderr
    assert f"`wsm env build -w {path} b`" in said[0], said
    assert tree(cache) == before


def test_an_incomplete_env_is_missing_and_is_only_read(tmp_path: Path) -> None:
    """A published name without its completion marker (a copy cut short, a marker removed)
    is not used under --frozen-envs: the error says incomplete; nothing is written."""
    project = tmp_path / "proj"
    pyproject(project, "proj", [], {})
    uv_lock(project, tmp_path / "uv-cache")
    loc = LocationConfig(
        name="loc",
        target=CodeTarget("python_file", project, python_file=project / "repo.py"),
        supervision=Supervision(),
        environment=EnvironmentSpec(project=project),
    )
    cache = tmp_path / "cache"
    key = EnvironmentService(cache).recipe(loc).key
    (cache / "envs" / ".builds" / "half").mkdir(parents=True)
    (cache / "envs" / key).symlink_to(".builds/half")
    before = tree(cache)
    service = EnvironmentService(cache, frozen=True, identity=f"workspace:{tmp_path}/w.yaml")
    try:
        with pytest.raises(FrozenEnvMissing, match=f"its environment {key} in .* is incomplete"):
            service.lookup(loc)
        service.mark_used(key, "workspace:x", "loc")  # skipped: nothing to record
    finally:
        service.close()
    assert tree(cache) == before


def test_build_command_for_each_kind_of_target() -> None:
    assert build_command("workspace:/app/w s.yaml", "a") == "wsm env build -w '/app/w s.yaml' a"
    assert build_command("file:/app/repo.py#defs", "repo") == (
        "wsm env build -f /app/repo.py -a defs repo"
    )
    assert build_command("module:pkg.defs#@/app", "pkg") == (
        "cd /app && wsm env build -m pkg.defs pkg"
    )
    assert build_command(None, "a") == "wsm env build -w FILE a"


def dockerfile() -> List[str]:
    """The Dockerfile in docs/deployment.md, its continued lines joined."""
    text = (Path(__file__).parent.parent / "docs" / "deployment.md").read_text()
    block = text.split("```dockerfile\n", 1)[1].split("```", 1)[0]
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_dockerfile_builds_the_envs_then_starts_frozen_with_the_same_cache() -> None:
    """docs/deployment.md: the build step runs a valid `wsm env build` of the workspace the
    CMD's valid `wsm up --frozen-envs` starts, as the user the CMD runs as, with
    WSM_CACHE_DIR set before it and never changed after."""
    from workspace_manager.cli.main import build_parser

    lines = dockerfile()
    build = [i for i, line in enumerate(lines) if line.startswith("RUN wsm env build")]
    assert len(build) == 1, lines
    at = build[0]
    cmd = [line for line in lines if line.startswith("CMD ")]
    assert len(cmd) == 1 and lines.index(cmd[0]) > at
    built = build_parser().parse_args(shlex.split(lines[at])[2:])  # RUN wsm ...
    started = build_parser().parse_args(json.loads(cmd[0][len("CMD ") :])[1:])
    assert (built.command, built.env_command) == ("env", "build")
    assert started.command == "up" and started.frozen_envs
    assert built.workspace == started.workspace and built.workspace.startswith("/")
    cache = [i for i, line in enumerate(lines) if "WSM_CACHE_DIR=" in line]
    assert len(cache) == 1 and cache[0] < at, lines
    users = [i for i, line in enumerate(lines) if line.startswith("USER ")]
    assert users and users[-1] < at, "the envs are built by the user that runs them"


def test_frozen_interpreter_lookups_are_kept_in_memory(tmp_path: Path) -> None:
    """Finding `python: "3.X"` and wsm's own interpreter asks the interpreters (and
    python_discovery) without writing interpreters.json or py_info/ into the cache."""
    import sys

    spec = f"{sys.version_info[0]}.{sys.version_info[1]}"
    frozen = EnvironmentService(tmp_path / "frozen", frozen=True)
    writable = EnvironmentService(tmp_path / "writable")
    try:
        for service in (frozen, writable):
            assert service.interpreters.find(spec).version.startswith(spec)
            assert service.interpreters.find(None).path == os.path.realpath(sys.executable)
    finally:
        frozen.close()
        writable.close()
    assert not (tmp_path / "frozen").exists()
    assert (tmp_path / "writable" / "interpreters.json").is_file()  # what is not written


def test_wsm_serve_frozen_envs_exits_as_for_a_load_error_naming_the_build(
    ws: WorkspaceDir,
) -> None:
    """A pod's `wsm serve --frozen-envs` on an image whose env for its location was not built:
    it builds nothing, exits with the load error's status (the orchestrator's restart policy
    sees a bad image at once) and names the `wsm env build` for that location, with the
    workspace file, not the serve identity (which also holds the listen address)."""
    path = two_projects(ws)
    built = run_wsm(ws, "env", "build", "-w", str(path), "a")
    assert built.returncode == 0, built.stderr
    cache = ws.root / ".wsm-cache"
    before = tree(cache)
    ws.env["POD_TOKEN"] = "t" * 32
    listen = f"unix:{ws.root / 'b.sock'}"
    served = run_wsm(
        ws, "serve", "-w", str(path), "b", "--listen", listen, "--frozen-envs",
        "--token-env", "POD_TOKEN", prefix=read_only(cache),
    )  # fmt: skip
    assert served.returncode == EXIT_LOAD_ERROR, served.stdout + served.stderr
    out = served.stdout + served.stderr
    assert f"`wsm env build -w {path} b`" in out, out
    assert "Traceback" not in out and "uv sync" not in out, out
    assert "serving location" not in out, out  # said once it is true, never before
    # the hint names the log's file (`wsm logs` cannot name a serve's), which holds the error
    log = Path(out.split("(see ", 1)[1].split(")", 1)[0])
    assert log.name == "b.log" and "--frozen-envs never builds" in log.read_text(), out
    assert tree(cache) == before
    # the env that was built serves frozen from the read-only cache
    with WsmUp(
        ws, "-w", str(path), "a", "--listen", f"unix:{ws.root / 'a.sock'}", "--frozen-envs",
        "--token-env", "POD_TOKEN", command="serve", prefix=read_only(cache),
    ) as up:  # fmt: skip
        assert up.wait_state("a", "ready", "error", timeout=120)["state"] == "ready", up.output()
        wait_for(lambda: "wsm: serving location a on unix:" in up.output(), 30, "its line")
    assert tree(cache) == before
