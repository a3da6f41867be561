"""Issue 12, points 1 to 3: environments from a team's project and its lock, built exactly.

Everything is offline: the packages are wheels written by the test (`make_wheel`), projects
name them as path sources, and uv runs with UV_OFFLINE=1. Locks are made by the real `uv lock`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest
from cli_up_test import manager_client
from e2e import WorkspaceDir, WsmUp
from wheelhouse import (
    UV,
    code_location,
    make_wheel,
    offline_env,
    pyproject,
    uv_lock,
    uv_workspace,
)

from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.installers import uv
from workspace_manager.envs.interpreters import Interpreter
from workspace_manager.envs.key import make_recipe
from workspace_manager.envs.project import find_source
from workspace_manager.envs.service import EnvironmentService, ResolvedEnv
from workspace_manager.workspace.model import (
    CodeTarget,
    EnvironmentSpec,
    LocationConfig,
    Supervision,
)

assert UV is not None, "uv is a dependency of wsm: it must be beside its interpreter"
PY = Interpreter("/usr/bin/python3.11", "3.11.2", "CPython")


REPO = """
import importlib.metadata
import importlib.util
import sysconfig

from workspace_manager import job, repository

WANT = {want!r}
# exactly the locked set: nothing else in the environment, not even pip or setuptools
site = [sysconfig.get_paths()["purelib"]]
installed = sorted(d.metadata["Name"] for d in importlib.metadata.distributions(path=site))
if installed != sorted(WANT):
    raise RuntimeError(f"installed {{installed}}, expected {{sorted(WANT)}}")
for module in ("tinya", "tinyb", "tinyc"):
    present = importlib.util.find_spec(module) is not None
    if present != (module in WANT):
        raise RuntimeError(f"{{module}} present={{present}}, expected {{sorted(WANT)}}")
if "tinya" in WANT:
    import tinya
    assert tinya.VALUE == WANT["tinya"], tinya.VALUE

@job
def hello(): ...

@repository
def repo():
    return [hello]
"""


def test_two_members_of_one_uv_workspace_are_two_exact_environments(ws: WorkspaceDir) -> None:
    """Point 1: each member gets exactly its part of the shared lock, in wsm's cache, not in
    the team's folders; `groups` chooses a dependency group (uv's default `dev` is not
    installed unless asked); a second manager reuses both environments without building."""
    ws.env.update(UV_OFFLINE="1", UV_NO_PROGRESS="1")
    ws.env.pop("UV_CACHE_DIR", None)
    members = uv_workspace(ws.root / "mono", ws.root / "wheels", ws.root / "uv-lock-cache")
    lock = (ws.root / "mono" / "uv.lock").read_bytes()
    ws.file("mono/members/one/repo.py", REPO.format(want={"tinya": "tinya 1.0"}))
    ws.file("mono/members/two/repo.py", REPO.format(want={"tinyb": "tinyb 1.0"}))
    ws.file("mono/members/one/dev/repo.py", REPO.format(want={"tinya": "tinya 1.0", "tinyc": 1}))
    path = ws.workspace(
        {
            "load_from": [
                code_location("one", "mono/members/one", project="."),
                code_location("two", "mono/members/two", project="."),
                code_location("one_dev", "mono/members/one/dev", project="..", groups=["dev"]),
            ]
        }
    )
    checked = ws.run("validate", "-w", str(path))
    assert checked.returncode == 0 and "warning" not in checked.stderr, checked.stderr
    with WsmUp(ws, "-w", str(path)) as up:
        status = up.wait_all_settled(timeout=240)
        locations = status["locations"]
        assert {n: loc["state"] for n, loc in locations.items()} == {
            "one": "ready",
            "two": "ready",
            "one_dev": "ready",
        }, up.output()
        pythons = {n: loc["environment"] for n, loc in locations.items()}
        assert len(set(pythons.values())) == 3, pythons
        cache = str(ws.root / ".wsm-cache" / "envs")
        assert all(p.startswith(cache) for p in pythons.values()), pythons
        with manager_client(ws) as client:
            snap = client.call("snapshot", {"location": "two"})
            assert snap["repositories"][0]["jobs"][0]["name"] == "hello"
    # nothing was written into the team's folders: no .venv, the lock untouched
    assert (ws.root / "mono" / "uv.lock").read_bytes() == lock
    assert not [p for p in (ws.root / "mono").rglob(".venv")]
    # uv's cache is wsm's, beside the envs (so installed files are links, not copies)
    assert (ws.root / ".wsm-cache" / "uv").is_dir()
    # a second manager decides reuse from disk: no build at all
    with WsmUp(ws, "-w", str(path)) as up:
        status = up.wait_all_settled(timeout=60)
        assert {loc["state"] for loc in status["locations"].values()} == {"ready"}
        assert "uv sync" not in up.output() and "building" not in up.output(), up.output()
    assert members["one"].is_dir()


def test_stale_lock_and_missing_package_are_their_locations_errors(ws: WorkspaceDir) -> None:
    """Point 3: a lock out of date with its pyproject.toml, and a lock naming a file that is
    gone, each put only their own location in `error` with uv's reason in one line and the
    log's path; the location beside them starts."""
    ws.env.update(UV_OFFLINE="1", UV_NO_PROGRESS="1")
    wheels = ws.root / "wheels"
    tinya = make_wheel(wheels, "tinya", "1.0")
    tinyb = make_wheel(wheels, "tinyb", "1.0")
    cache = ws.root / "uv-lock-cache"
    for name in ("good", "stale", "gone"):
        pyproject(ws.root / name, name, ["tinya"], {"tinya": tinya, "tinyb": tinyb})
        uv_lock(ws.root / name, cache)
        ws.file(f"{name}/repo.py", REPO.format(want={"tinya": "tinya 1.0"}))
    # the team added a dependency and did not run `uv lock`
    pyproject(ws.root / "stale", "stale", ["tinya", "tinyb"], {"tinya": tinya, "tinyb": tinyb})
    # the lock names a wheel that nobody can have any more
    gone = make_wheel(ws.root / "gone-wheels", "tinyc", "1.0")
    pyproject(ws.root / "gone", "gone", ["tinya", "tinyc"], {"tinya": tinya, "tinyc": gone})
    uv_lock(ws.root / "gone", cache)
    gone.unlink()
    path = ws.workspace(
        {
            "load_from": [
                code_location("good", "good", project="."),
                code_location("stale", "stale", project="."),
                code_location("gone", "gone", project="."),
            ]
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        status = up.wait_all_settled(timeout=240)
        locations = status["locations"]
        states = {n: loc["state"] for n, loc in locations.items()}
        assert states == {"good": "ready", "stale": "error", "gone": "error"}, up.output()
        stale = locations["stale"]["error"].splitlines()[0]
        assert stale.startswith("uv install failed: The lockfile at `uv.lock` needs to be "), stale
        assert "(To update the lockfile, run `uv lock`)" in stale, stale
        assert "(full log: " in stale and ".wsm-cache/logs/" in stale, stale
        missing = locations["gone"]["error"].splitlines()[0]
        assert missing.startswith("uv install failed: Failed to generate package metadata"), missing
        assert "tinyc-1.0-py3-none-any.whl`: No such file or directory" in missing, missing
        assert "(full log: " in missing, missing
        log = Path(missing.split("(full log: ")[1].rstrip(")"))
        assert "tinyc" in log.read_text(), log.read_text()


def location(workdir: Path, project: Path, **kw: object) -> LocationConfig:
    return LocationConfig(
        name="loc",
        target=CodeTarget("python_file", workdir, python_file=workdir / "repo.py"),
        supervision=Supervision(),
        environment=EnvironmentSpec(project=project, **kw),  # type: ignore[arg-type]
    )


def key(loc: LocationConfig) -> str:
    assert loc.environment is not None
    return make_recipe(loc, loc.environment, PY, "pip").key


def test_the_key_of_a_locked_project(tmp_path: Path) -> None:
    """Point 1's cache key: the lock's content, the pyproject.toml files uv checks it against,
    the member, extras and groups; a lock that changed changes only its own envs' keys."""
    members = uv_workspace(tmp_path / "mono", tmp_path / "wheels", tmp_path / "uv-cache")
    alone = tmp_path / "alone"
    pyproject(alone, "alone", [], {})
    uv_lock(alone, tmp_path / "uv-cache")
    one, two = location(members["one"], members["one"]), location(members["two"], members["two"])
    other = location(alone, alone)
    before = {"one": key(one), "two": key(two), "alone": key(other)}
    assert len(set(before.values())) == 3
    assert find_source(members["one"]).lock == tmp_path / "mono" / "uv.lock"
    assert key(one) == before["one"]  # stable
    assert key(location(members["one"], members["one"], groups=("dev",))) != before["one"]
    assert key(location(members["one"], members["one"], extras=("x",))) != before["one"]
    # the standalone project's lock changes: its key changes, the workspace's do not
    tinyb = tmp_path / "wheels" / "tinyb-1.0-py3-none-any.whl"
    pyproject(alone, "alone", ["tinyb"], {"tinyb": tinyb})
    uv_lock(alone, tmp_path / "uv-cache")
    assert key(other) != before["alone"]
    assert (key(one), key(two)) == (before["one"], before["two"])
    # the workspace root's pyproject.toml is read by uv's check: part of the members' keys
    root = tmp_path / "mono" / "pyproject.toml"
    root.write_text(root.read_text() + "\n# edited\n")
    assert key(one) != before["one"] and key(two) != before["two"]


def test_pylock_installs_exactly_its_packages(tmp_path: Path) -> None:
    """Point 2: a PEP 751 pylock.toml is installed exactly: what pyproject.toml asks for but
    the lock does not name (tinyb) is never installed."""
    wheels = tmp_path / "wheels"
    tinya = make_wheel(wheels, "tinya", "1.0")
    make_wheel(wheels, "tinyb", "1.0")
    project = tmp_path / "team"
    pyproject(project, "team", ["tinya", "tinyb"], {})
    digest = hashlib.sha256(tinya.read_bytes()).hexdigest()
    (project / "pylock.toml").write_text(
        textwrap.dedent(
            f"""
            lock-version = "1.0"
            created-by = "hand"
            requires-python = ">=3.9"

            [[packages]]
            name = "tinya"
            version = "1.0"
            archive = {{ path = "../wheels/{tinya.name}", hashes = {{ sha256 = "{digest}" }} }}
            """
        )
    )
    loc = location(project, project)
    svc = EnvironmentService(tmp_path / "cache")
    try:
        env = asyncio.run(svc.ensure(loc))
    finally:
        svc.close()
    assert env.built
    probe = subprocess.run(
        [
            env.python,
            "-c",
            "import importlib.metadata as m, sysconfig, tinya; print(tinya.VALUE, sorted(d.metadata"
            "['Name'] for d in m.distributions(path=[sysconfig.get_paths()['purelib']])))",
        ],
        capture_output=True,
        text=True,
        env=offline_env(tmp_path / "unused"),
    )
    assert probe.stdout.split("\n")[0] == "tinya 1.0 ['tinya']", probe.stderr
    marker = json.loads((Path(env.python).parent.parent / "wsm-env.json").read_text())
    assert marker["source"] == "pylock" and marker["lock"] == str(project / "pylock.toml")
    assert not (project / ".venv").exists()


def test_validate_project_rules(ws: WorkspaceDir) -> None:
    """A project without a lock is valid with a warning (not reproducible); a project with
    requirements, or extras without a project, is a mistake found before anything starts."""
    ws.file("team/repo.py", "")
    pyproject(ws.root / "team", "team", [], {})
    path = ws.workspace({"load_from": [code_location("team", "team", project=".")]})
    done = ws.run("validate", "-w", str(path))
    assert done.returncode == 0, done.stderr
    assert "has no lock" in done.stderr and "not reproducible" in done.stderr, done.stderr
    assert done.stderr.startswith(f"{path}:"), done.stderr
    (ws.root / "team" / "pylock.toml").write_text('lock-version = "1.0"\n')
    ignored = ws.workspace(
        {"load_from": [code_location("team", "team", project=".", pip_args=["--pre"])]},
        name="ignored.yaml",
    )
    done = ws.run("validate", "-w", str(ignored))
    assert done.returncode == 0 and "pip_args are not used" in done.stderr, done.stderr
    assert "no lock" not in done.stderr, done.stderr
    both = ws.workspace(
        {"load_from": [code_location("team", "team", project=".", requirements=["x"])]},
        name="both.yaml",
    )
    done = ws.run("validate", "-w", str(both))
    assert done.returncode == 2 and "cannot be used together" in done.stderr, done.stderr
    lonely = ws.workspace(
        {"load_from": [code_location("team", "team", extras=["x"])]}, name="lonely.yaml"
    )
    done = ws.run("validate", "-w", str(lonely))
    assert done.returncode == 2 and "add project" in done.stderr, done.stderr
    nothing = ws.workspace(
        {"load_from": [code_location("team", "team", project="nowhere")]}, name="nothing.yaml"
    )
    done = ws.run("validate", "-w", str(nothing))
    assert done.returncode == 2 and "no such folder" in done.stderr, done.stderr


def test_uv_reason_is_one_line() -> None:
    """uv's error, its innermost cause and its hint, as one line (older uv: "Caused by:")."""
    lines = [
        "Resolved 3 packages in 2ms",
        "error: Failed to build `x==1.0`",
        "  Caused by: The build backend returned an error",
        "  Caused by: No module named 'setuptools'",
        "hint: This usually indicates a problem with the package.",
    ]
    assert uv.reason(lines) == (
        "Failed to build `x==1.0`: No module named 'setuptools' "
        "(This usually indicates a problem with the package)"
    )
    assert uv.reason(["error: plain."]) == "plain."
    assert uv.reason(["Resolved 1 package"]) is None


def test_find_source_without_pyproject_is_an_env_error(tmp_path: Path) -> None:
    with pytest.raises(EnvBuildError, match="has no pyproject.toml"):
        find_source(tmp_path)


def hashed_requirements(tmp_path: Path, names: List[str], wheels: Path) -> Path:
    lines = []
    for name in names:
        wheel = wheels / f"{name}-1.0-py3-none-any.whl"
        lines.append(f"{name}==1.0 --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}")
    path = tmp_path / "requirements.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_hashed_requirements_file_is_installed_exactly(tmp_path: Path, installer: str) -> None:
    """Point 2: a requirements file with hashes installs exactly what it lists, with pip and
    with uv (which, unasked, only checks the hashes it is given): a dependency the file does
    not list fails the build instead of being installed unchecked."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinya", "1.0", requires=["tinyb"])
    make_wheel(wheels, "tinyb", "1.0")
    work = tmp_path / "work"
    work.mkdir()
    svc = EnvironmentService(tmp_path / "cache")

    def spec(req: Path) -> LocationConfig:
        return LocationConfig(
            name="loc",
            target=CodeTarget("python_file", work, python_file=work / "repo.py"),
            supervision=Supervision(),
            environment=EnvironmentSpec(
                requirements_file=req,
                pip_args=("--no-index", "--find-links", str(wheels)),
                installer=installer,
            ),
        )

    try:
        full = asyncio.run(
            svc.ensure(spec(hashed_requirements(tmp_path, ["tinya", "tinyb"], wheels)))
        )
        probe = subprocess.run(
            [full.python, "-c", "import tinya, tinyb; print(tinya.VALUE, tinyb.VALUE)"],
            capture_output=True,
            text=True,
        )
        assert probe.stdout.strip() == "tinya 1.0 tinyb 1.0", probe.stderr
        partial = spec(hashed_requirements(tmp_path, ["tinya"], wheels))
        with pytest.raises(EnvBuildError) as failed:
            asyncio.run(svc.ensure(partial))
        assert "hash" in str(failed.value).lower(), failed.value.details()
        assert svc.cached(partial) is None  # nothing published
    finally:
        svc.close()


def test_project_without_a_lock_is_installed_as_a_local_path(tmp_path: Path) -> None:
    """Point 2's last case: no lock, so the project itself is installed (with its extras) like
    a local path requirement; its source tree is in the key, so an edit rebuilds."""
    from fixtures.envs_support import OFFLINE, make_package

    project = make_package(tmp_path, "teamlib", "teamlib", 'VALUE = "one"\n')
    loc = location(project, project, pip_args=OFFLINE)
    svc = EnvironmentService(tmp_path / "cache")
    try:
        env = asyncio.run(svc.ensure(loc))
        probe = subprocess.run(
            [env.python, "-c", "import teamlib; print(teamlib.VALUE)"],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # not the project folder: the import comes from the environment
        )
        assert probe.stdout.strip() == "one", probe.stderr
        marker = json.loads((Path(env.python).parent.parent / "wsm-env.json").read_text())
        assert marker["source"] == "project" and marker["lock"] is None
        before = env.key
        (project / "teamlib" / "__init__.py").write_text('VALUE = "two"\n')
        assert svc.key(loc) != before
    finally:
        svc.close()


def test_a_changed_lock_rebuilds_only_its_own_environment(tmp_path: Path) -> None:
    """The issue's "a lock that changed rebuilds only its own environment", across managers
    (two services on one cache): the other project's environment is reused as it was."""
    wheels = tmp_path / "wheels"
    sources = {
        "tinya": make_wheel(wheels, "tinya", "1.0"),
        "tinyb": make_wheel(wheels, "tinyb", "1.0"),
    }
    lock_cache = tmp_path / "uv-lock-cache"
    projects = {}
    for name in ("first", "second"):
        projects[name] = tmp_path / name
        pyproject(projects[name], name, ["tinya"], sources)
        uv_lock(projects[name], lock_cache)
    locs = {name: location(folder, folder) for name, folder in projects.items()}

    def ensure_all() -> Dict[str, ResolvedEnv]:
        svc = EnvironmentService(tmp_path / "cache")
        try:
            return {name: asyncio.run(svc.ensure(loc)) for name, loc in locs.items()}
        finally:
            svc.close()

    first = ensure_all()
    assert all(env.built for env in first.values())
    pyproject(projects["second"], "second", ["tinya", "tinyb"], sources)
    uv_lock(projects["second"], lock_cache)
    again = ensure_all()
    assert not again["first"].built and again["first"].key == first["first"].key
    assert again["second"].built and again["second"].key != first["second"].key


def test_extras_choose_what_the_lock_installs(tmp_path: Path) -> None:
    """`extras: [...]`: the project's optional dependencies, from the same lock, installed
    only where asked; the two choices are two environments."""
    wheels = tmp_path / "wheels"
    sources = {
        "tinya": make_wheel(wheels, "tinya", "1.0"),
        "tinyb": make_wheel(wheels, "tinyb", "1.0"),
    }
    project = tmp_path / "team"
    pyproject(
        project,
        "team",
        ["tinya"],
        sources,
        extra='[project.optional-dependencies]\nb = ["tinyb"]\n',
    )
    uv_lock(project, tmp_path / "uv-lock-cache")
    svc = EnvironmentService(tmp_path / "cache")
    seen = {}
    try:
        for extras in ((), ("b",)):
            env = asyncio.run(svc.ensure(location(project, project, extras=extras)))
            probe = subprocess.run(
                [
                    env.python,
                    "-c",
                    "import importlib.metadata as m, sysconfig; print(sorted(d.metadata['Name'] "
                    "for d in m.distributions(path=[sysconfig.get_paths()['purelib']])))",
                ],
                capture_output=True,
                text=True,
            )
            seen[extras] = (env.key, probe.stdout.strip())
    finally:
        svc.close()
    assert seen[()][1] == "['tinya']" and seen[("b",)][1] == "['tinya', 'tinyb']", seen
    assert seen[()][0] != seen[("b",)][0]
