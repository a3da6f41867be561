"""Two members of one uv workspace share its uv.lock, but each one's environment key depends
only on the part of the lock it installs (envs/lockpart.py): re-locking for one member does
not rebuild the other. Offline: wheels made in the test, locks made by the real `uv lock`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Dict

import pytest
from wheelhouse import UV, make_wheel, pyproject, uv_lock, uv_workspace

from workspace_manager.envs import lockpart
from workspace_manager.envs.interpreters import Interpreter
from workspace_manager.envs.key import make_recipe
from workspace_manager.envs.service import EnvironmentService
from workspace_manager.workspace.model import (
    CodeTarget,
    EnvironmentSpec,
    LocationConfig,
    Supervision,
)

pytestmark = pytest.mark.skipif(UV is None, reason="uv is a test dependency (.[test])")
PY = Interpreter("/usr/bin/python3.11", "3.11.2", "CPython")


def location(project: Path, **kw: object) -> LocationConfig:
    return LocationConfig(
        name=project.name,
        target=CodeTarget("python_file", project, python_file=project / "repo.py"),
        supervision=Supervision(),
        environment=EnvironmentSpec(project=project, **kw),  # type: ignore[arg-type]
    )


def keys(members: Dict[str, Path], **kw: object) -> Dict[str, str]:
    out = {}
    for name, folder in members.items():
        loc = location(folder, **kw)
        assert loc.environment is not None
        out[name] = make_recipe(loc, loc.environment, PY, "uv").key
    return out


def test_relocking_for_one_member_keeps_the_other_members_key(tmp_path: Path) -> None:
    """The issue's case: member `two` gains a dependency and the shared lock is re-made; `one`
    (which does not reach it) keeps its key, with and without its group, while `two`'s key
    changes. A change to what `one` reaches (the wheel behind tinya) changes `one`'s key."""
    wheels, cache = tmp_path / "wheels", tmp_path / "uv-cache"
    members = uv_workspace(tmp_path / "mono", wheels, cache)
    lock = tmp_path / "mono" / "uv.lock"
    before, before_dev = keys(members), keys(members, groups=("dev",))
    old_lock = lock.read_text()
    tinyb = wheels / "tinyb-1.0-py3-none-any.whl"
    tinyd = make_wheel(wheels, "tinyd", "1.0")
    pyproject(members["two"], "two", ["tinyb", "tinyd"], {"tinyb": tinyb, "tinyd": tinyd})
    uv_lock(tmp_path / "mono", cache)
    assert lock.read_text() != old_lock and "tinyd" in lock.read_text()
    after, after_dev = keys(members), keys(members, groups=("dev",))
    assert after["one"] == before["one"] and after_dev["one"] == before_dev["one"]
    assert after["two"] != before["two"]

    # a new member of the workspace (the manifest's member list changes): `one` is unaffected
    pyproject(tmp_path / "mono" / "members" / "three", "three", [], {})
    uv_lock(tmp_path / "mono", cache)
    assert '"three"' in lock.read_text()
    assert keys(members)["one"] == before["one"]

    # what `one` installs changes (its locked tinya is another archive, needing tinyc)
    make_wheel(wheels, "tinya", "1.0", requires=["tinyc"])
    uv_lock(tmp_path / "mono", cache)
    assert keys(members)["one"] != before["one"]


def test_a_lock_without_the_projects_entry_is_keyed_whole(tmp_path: Path) -> None:
    """A lock where the project has no entry (not written by uv as this reads it): the part
    cannot be told, so any change to the lock changes the key, as before this fix."""
    project = tmp_path / "team"
    pyproject(project, "team", [], {})
    (project / "uv.lock").write_text('version = 1\n\n[[package]]\nname = "other"\n')
    assert lockpart.project_part(project / "uv.lock", project) is None
    first = keys({"team": project})["team"]
    (project / "uv.lock").write_text('version = 1\n\n[[package]]\nname = "other2"\n')
    assert keys({"team": project})["team"] != first


def test_a_member_is_reused_after_the_lock_is_remade_for_its_neighbour(tmp_path: Path) -> None:
    """Across two managers on one cache (two services): after `two`'s dependencies change and
    the lock is re-made, `one`'s environment is reused and only `two`'s is built."""
    wheels, cache = tmp_path / "wheels", tmp_path / "uv-cache"
    members = uv_workspace(tmp_path / "mono", wheels, cache)
    locs = {name: location(folder) for name, folder in members.items()}

    def ensure_all() -> Dict[str, bool]:
        svc = EnvironmentService(tmp_path / "cache")
        try:
            return {name: asyncio.run(svc.ensure(loc)).built for name, loc in locs.items()}
        finally:
            svc.close()

    assert ensure_all() == {"one": True, "two": True}
    tinyd = make_wheel(wheels, "tinyd", "1.0")
    tinyb = wheels / "tinyb-1.0-py3-none-any.whl"
    pyproject(members["two"], "two", ["tinyb", "tinyd"], {"tinyb": tinyb, "tinyd": tinyd})
    uv_lock(tmp_path / "mono", cache)
    assert ensure_all() == {"one": False, "two": True}


def test_a_lock_is_parsed_once_for_all_its_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 members of one lock of 2,000 entries: the lock is parsed once for all of them (its
    content is the cache's key), and parsed again once it changes."""
    parsed = []

    class Counting(lockpart._Lock):
        def __init__(self, text: str) -> None:
            parsed.append(1)
            super().__init__(text)

    monkeypatch.setattr(lockpart, "_Lock", Counting)
    lock = tmp_path / "uv.lock"
    blocks = ['version = 1\nrequires-python = ">=3.9"\n']
    for i in range(2000):
        blocks.append(
            f'[[package]]\nname = "p{i}"\nversion = "1.0"\nsource = {{ registry = "x" }}\n'
            f'dependencies = [\n    {{ name = "p{(i + 1) % 2000}" }},\n]\n'
        )
    for m in range(20):
        blocks.append(
            f'[[package]]\nname = "m{m}"\nversion = "0"\nsource = {{ virtual = "m{m}" }}\n'
            f'dependencies = [\n    {{ name = "p{m * 100}" }},\n]\n'
        )
    lock.write_text("\n".join(blocks))
    parts = [lockpart.project_part(lock, tmp_path / f"m{m}") for m in range(20)]
    assert len(set(parts)) == 20 and None not in parts  # each member's own entry differs
    assert [lockpart.project_part(lock, tmp_path / f"m{m}") for m in range(20)] == parts
    assert len(parsed) == 1
    # a comment or a new layout is no change; p7's version is
    text = lock.read_text()
    lock.write_text("# edited\n" + text.replace(" = ", "   =   "))
    assert [lockpart.project_part(lock, tmp_path / f"m{m}") for m in range(20)] == parts
    assert len(parsed) == 2
    lock.write_text(text.replace('name = "p7"\nversion = "1.0"', 'name = "p7"\nversion = "1.1"'))
    changed = [lockpart.project_part(lock, tmp_path / f"m{m}") for m in range(20)]
    assert len(parsed) == 3
    assert len(set(changed)) == 20 and not set(changed) & set(
        parts
    )  # p7 is reachable from every member (the chain is a ring)


def test_the_header_counts_but_the_member_list_does_not(tmp_path: Path) -> None:
    """The lock's header (requires-python, options, constraints...) is in every member's part;
    only `[manifest] members`, in either of its TOML forms, is left out."""
    entry = '[[package]]\nname = "one"\nversion = "0"\nsource = { virtual = "one" }\n'
    lock = tmp_path / "uv.lock"

    def part(header: str) -> object:
        lock.write_text(header + "\n" + entry)
        return lockpart.project_part(lock, tmp_path / "one")

    plain = 'version = 1\nrequires-python = ">=3.9"\n\n[manifest]\n'
    constraint = 'constraints = [\n    { name = "x", specifier = "<2" },\n]\n'
    first = part(plain + 'members = [\n    "one",\n]\n' + constraint)
    assert first is not None
    assert part(plain + 'members = [\n    "one",\n    "two",\n]\n' + constraint) == first
    assert part(plain + 'members = ["one", "two"]\n' + constraint) == first
    assert part(plain + 'members = ["one"]\n' + constraint.replace("<2", "<3")) != first
    assert part(plain.replace("3.9", "3.10") + constraint) != first


def test_a_warm_start_reads_the_parts_and_parses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts of a lock content are kept in the cache's `lock-parts`: a later process (here:
    the in-process parse dropped) answers from that record, without the TOML parse a large
    lock costs (~250 ms a MiB); a frozen start writes no record; a damaged one is redone."""
    lock = tmp_path / "uv.lock"
    lock.write_text(
        'version = 1\nrequires-python = ">=3.9"\n\n'
        '[[package]]\nname = "one"\nversion = "0"\nsource = { virtual = "one" }\n'
        'dependencies = [{ name = "dep" }]\n\n'
        '[[package]]\nname = "dep"\nversion = "1.0"\nsource = { registry = "x" }\n'
    )
    store = tmp_path / "cache" / "lock-parts"
    frozen = lockpart.project_part(lock, tmp_path / "one", store, writable=False)
    assert frozen is not None and not store.exists()
    first = lockpart.project_part(lock, tmp_path / "one", store)
    assert first == frozen
    [record] = store.iterdir()
    assert json.loads(record.read_text()) == {"one": first}
    assert record.stat().st_mode & 0o777 == 0o600

    class NoParse(lockpart._Lock):
        def __init__(self, text: str) -> None:
            raise AssertionError("parsed again")

    monkeypatch.setattr(lockpart, "_parsed", {})
    monkeypatch.setattr(lockpart, "_Lock", NoParse)
    assert lockpart.project_part(lock, tmp_path / "one", store) == first
    monkeypatch.undo()
    monkeypatch.setattr(lockpart, "_parsed", {})
    record.write_text("{not json")
    assert lockpart.project_part(lock, tmp_path / "one", store) == first
    assert json.loads(record.read_text()) == {"one": first}
