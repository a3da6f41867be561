"""A workspace.yaml that passed the JSON Schema once skips it (and jsonschema's import) while
the file, the schema, jsonschema and wsm are unchanged; problems are never cached."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import List

import pytest

from workspace_manager.workspace import validation_cache
from workspace_manager.workspace.errors import WorkspaceError
from workspace_manager.workspace.load import load_workspace
from workspace_manager.workspace.schema import schema_issues
from workspace_manager.workspace.yaml_positions import load_yaml

VALID = "load_from:\n  - python_file: repo.py\n"
INVALID = "load_from:\n  - python_file: repo.py\n    restart: sometimes\n"

PROBE = textwrap.dedent(
    """
    import json, sys
    from workspace_manager.workspace.errors import WorkspaceError
    from workspace_manager.workspace.load import load_workspace
    try:
        load_workspace(sys.argv[1])
        problems = []
    except WorkspaceError as exc:
        problems = [str(p) for p in exc.problems]
    print(json.dumps({"jsonschema": "jsonschema" in sys.modules, "problems": problems}))
    """
)


def probe(workspace: Path, cache: Path) -> dict:
    """Load `workspace` in a fresh interpreter with `cache` as wsm's cache dir."""
    env = dict(os.environ, WSM_CACHE_DIR=str(cache))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(workspace)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "repo.py").write_text("")
    path = tmp_path / "workspace.yaml"
    path.write_text(VALID)
    return path


def test_a_hit_does_not_import_jsonschema(workspace: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert probe(workspace, cache) == {"jsonschema": True, "problems": []}
    assert probe(workspace, cache) == {"jsonschema": False, "problems": []}
    (entry,) = (cache / "validated").iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700


def test_an_edited_workspace_is_checked_again(workspace: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    probe(workspace, cache)
    workspace.write_text(INVALID)
    cold = probe(workspace, tmp_path / "cold-cache")
    assert cold["problems"] and "restart" in cold["problems"][0]
    assert probe(workspace, cache) == cold  # the same message as without any cache
    assert probe(workspace, cache) == cold  # problems are never remembered
    workspace.write_text(VALID + "# a comment\n")
    assert probe(workspace, cache) == {"jsonschema": True, "problems": []}


def test_semantic_checks_still_run_on_a_hit(workspace: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    probe(workspace, cache)
    (workspace.parent / "repo.py").unlink()
    result = probe(workspace, cache)
    assert result["jsonschema"] is False
    assert result["problems"] and "repo.py" in result["problems"][0]


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, doc):  # type: ignore[no-untyped-def]
        self.calls += 1
        return schema_issues(doc)


def check_twice(tmp_path: Path, text: str = VALID) -> Counting:
    doc, _ = load_yaml(text, "w.yaml")
    assert doc is not None
    check = Counting()
    for _ in range(2):
        assert validation_cache.cached_schema_issues(text, doc, check, tmp_path / "v") == []
    return check


def test_the_schema_the_checker_and_wsm_are_part_of_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert check_twice(tmp_path).calls == 1
    assert check_twice(tmp_path).calls == 0  # remembered
    schema = validation_cache.schema_bytes()
    monkeypatch.setattr(validation_cache, "schema_bytes", lambda: schema + b" ")
    assert check_twice(tmp_path).calls == 1
    monkeypatch.setattr(validation_cache, "_checker_identity", lambda: "jsonschema:other")
    assert check_twice(tmp_path).calls == 1
    monkeypatch.setattr(validation_cache, "__version__", "99.0")
    assert check_twice(tmp_path).calls == 1


@pytest.mark.parametrize("content", [b"", b"garbage", b"0" * 64, b"\xff" * 200])
def test_a_corrupted_or_foreign_entry_is_a_miss(tmp_path: Path, content: bytes) -> None:
    check_twice(tmp_path)
    (entry,) = (tmp_path / "v").iterdir()
    entry.write_bytes(content)
    assert check_twice(tmp_path).calls == 1
    assert entry.read_text() == entry.name  # written again


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_another_users_entry_is_a_miss(tmp_path: Path) -> None:
    check_twice(tmp_path)
    (entry,) = (tmp_path / "v").iterdir()
    os.chown(entry, 54321, 54321)
    assert check_twice(tmp_path).calls == 1
    assert entry.stat().st_uid == os.getuid()  # replaced by our own


def test_an_unwritable_cache_is_no_cache(tmp_path: Path) -> None:
    (tmp_path / "v").write_text("a file where the folder should be")
    assert check_twice(tmp_path).calls == 2


def test_a_hit_gives_the_same_workspace(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSM_CACHE_DIR", str(tmp_path / "cache"))
    assert load_workspace(workspace) == load_workspace(workspace)
    workspace.write_text(INVALID)
    with pytest.raises(WorkspaceError):
        load_workspace(workspace)


def test_old_entries_are_trimmed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation_cache, "KEEP", 3)
    seen: List[str] = []
    for n in range(5):
        text = VALID + f"# {n}\n"
        check_twice(tmp_path, text)
        key = validation_cache.verdict_key(text)
        os.utime(tmp_path / "v" / key, ns=(n * 10**9, n * 10**9))  # clear order, any clock
        seen.append(key)
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == sorted(seen[-3:])


# -- the parsed document: an unchanged file needs no YAML parser -----------------------------

PARSER_PROBE = PROBE.replace(
    '"jsonschema": "jsonschema" in sys.modules,',
    '"jsonschema": "jsonschema" in sys.modules, "yaml": "yaml" in sys.modules,',
)
SAMPLES = sorted((Path(__file__).parent.parent / "sample_workspaces").glob("*/workspace.yaml"))


def parse_probe(workspace: Path, cache: Path) -> dict:
    env = dict(os.environ, WSM_CACHE_DIR=str(cache))
    done = subprocess.run(
        [sys.executable, "-c", PARSER_PROBE, str(workspace)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_a_hit_imports_no_yaml_parser(workspace: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = {"jsonschema": True, "yaml": True, "problems": []}
    assert parse_probe(workspace, cache) == cold
    assert parse_probe(workspace, cache) == {"jsonschema": False, "yaml": False, "problems": []}
    (workspace.parent / "repo.py").unlink()  # a problem of the semantic checks, placed...
    warm = parse_probe(workspace, cache)
    assert warm["yaml"] is False
    assert warm["problems"] == parse_probe(workspace, tmp_path / "cold")["problems"]  # ...alike


class CountingParser:
    """Wraps yaml_positions.load_yaml (which load.py imports when it needs it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from workspace_manager.workspace import yaml_positions

        self.calls = 0
        real = yaml_positions.load_yaml

        def counting(text: str, path: str):  # type: ignore[no-untyped-def]
            self.calls += 1
            return real(text, path)

        monkeypatch.setattr(yaml_positions, "load_yaml", counting)


@pytest.mark.parametrize("path", SAMPLES, ids=[p.parent.name for p in SAMPLES])
def test_a_sample_workspace_is_the_same_from_the_kept_document(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSM_CACHE_DIR", str(tmp_path / "cache"))
    parser = CountingParser(monkeypatch)
    cold = load_workspace(path)
    assert parser.calls == 1
    assert load_workspace(path) == cold
    assert parser.calls == 1  # read from the cache


def kept(tmp_path: Path, text: str = VALID) -> Path:
    """Check `text` with its document kept; the entry's path."""
    doc, problems = load_yaml(text, "w.yaml")
    assert doc is not None and not problems
    assert (
        validation_cache.cached_schema_issues(
            text, doc, schema_issues, tmp_path / "v", keep_document=True
        )
        == []
    )
    assert validation_cache.cached_document(text, "other.yaml", tmp_path / "v") == replace(
        doc, path="other.yaml"
    )
    return tmp_path / "v" / validation_cache.verdict_key(text)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_damaged_document_is_parsed_again_and_kept_again(tmp_path: Path, damage: str) -> None:
    entry = kept(tmp_path)
    content = entry.read_bytes()
    if damage == "flip":
        content = content[:-1] + bytes([content[-1] ^ 1])
    elif damage == "truncate":
        content = content[:-5]
    else:
        content = content[: len(entry.name) + 1] + b"\x00" * 50
    entry.write_bytes(content)
    assert validation_cache.cached_document(VALID, "w.yaml", tmp_path / "v") is None
    check = check_twice(tmp_path)  # the verdict itself is intact
    assert check.calls == 0
    kept(tmp_path)  # a pass with keep_document writes the document again


def test_another_parser_or_interpreter_is_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept(tmp_path)
    monkeypatch.setattr(validation_cache, "_parser_identity", lambda: "document 1; yaml:other")
    assert validation_cache.cached_document(VALID, "w.yaml", tmp_path / "v") is None
    kept(tmp_path)  # kept again, for this parser


def test_data_marshal_cannot_hold_keeps_the_verdict_alone(tmp_path: Path) -> None:
    """A YAML timestamp (a datetime), as if the schema took any value there: no document
    and no error; the verdict is kept as before."""
    text = "when: 2024-01-01 10:00:00\n"
    doc, _ = load_yaml(text, "w.yaml")
    assert doc is not None and not isinstance(doc.data["when"], str)
    folder = tmp_path / "v"
    assert (
        validation_cache.cached_schema_issues(text, doc, lambda d: [], folder, keep_document=True)
        == []
    )
    entry = folder / validation_cache.verdict_key(text)
    assert entry.read_text() == entry.name
    assert validation_cache.cached_document(text, "w.yaml", folder) is None
