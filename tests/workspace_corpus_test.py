"""Every bad workspace in tests/workspace_corpus/ gives exactly its expected problems.

NAME.expected lists the lines `wsm validate -w NAME.yaml` prints (run from the corpus
folder); `{here}` stands for that folder. Each line carries file, line and column.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import List

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from workspace_cli_test import run_validate  # noqa: E402

from workspace_manager.workspace.errors import WorkspaceError  # noqa: E402
from workspace_manager.workspace.load import load_workspace  # noqa: E402

CORPUS = Path(__file__).parent / "workspace_corpus"
CASES = sorted(p.stem for p in CORPUS.glob("*.yaml"))
POSITIONED = re.compile(r"^(?P<file>[\w.]+\.yaml)(:(?P<line>\d+):(?P<column>\d+))?: \S")


def expected_lines(name: str) -> List[str]:
    here = os.path.realpath(CORPUS)
    text = (CORPUS / f"{name}.expected").read_text(encoding="utf-8")
    return [line.replace("{here}", here) for line in text.splitlines() if line.strip()]


def problems_of(name: str) -> List[str]:
    with pytest.raises(WorkspaceError) as info:
        load_workspace(f"{name}.yaml")
    return [str(p) for p in info.value.problems]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One private env cache for the corpus: `python:` specs are looked up through it."""
    return tmp_path_factory.mktemp("wsm-cache")


@pytest.fixture(autouse=True)
def in_corpus(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    monkeypatch.chdir(CORPUS)
    monkeypatch.setenv("WSM_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("WSM_CORPUS_UNSET_MODULE", raising=False)
    monkeypatch.delenv("WSM_CORPUS_UNSET_HOST", raising=False)
    monkeypatch.setenv("WSM_CORPUS_ESCAPING_NAME", "../../../../elsewhere/x")
    monkeypatch.setenv("WSM_CORPUS_SLASHED_HOST", "a/b")
    monkeypatch.setenv("WSM_CORPUS_NOT_A_MODULE", "a-b")
    monkeypatch.setenv("WSM_CORPUS_EMPTY", "")


def test_the_corpus_is_big_enough_and_complete() -> None:
    assert len(CASES) >= 30
    for name in CASES:
        assert (CORPUS / f"{name}.expected").is_file(), f"{name}.yaml has no .expected file"
    stray = {p.stem for p in CORPUS.glob("*.expected")} - set(CASES)
    assert not stray, f".expected files without a workspace: {sorted(stray)}"


@pytest.mark.parametrize("name", CASES)
def test_expected_problems(name: str) -> None:
    expected = expected_lines(name)
    assert expected, f"{name}.expected is empty"
    for line in expected:
        match = POSITIONED.match(line)
        assert match and match.group("file") == f"{name}.yaml", line
        if name != "not_utf8":  # the one problem with no position: the bytes are not text
            assert match.group("line") and match.group("column"), f"no position in: {line}"
    assert problems_of(name) == expected


# A few through the real command: exit status 2, the same lines on stderr, no traceback.
@pytest.mark.parametrize(
    "name",
    [
        "unknown_key_python_file",
        "yaml_syntax_error",
        "duplicate_location_derived",
        "escapes_with_dotdot",
        "top_level_a_list",
        "empty_file",
        # What `wsm validate` once said OK to, and `wsm up` then failed on (issue 8, part 5).
        "validate_said_ok",
        "grpc_server_token_unusable",
        "python_spec_not_found",
        "requirement_not_pep508",
        "requirement_path_missing",
        "executable_path_escapes",
        "location_name_unsafe",
        "env_source_bad_values",
        "yaml_nested_too_deep",
        "yaml_merge_bomb",
    ],
)
def test_command_reports_the_same(name: str) -> None:
    result = run_validate(["-w", f"{name}.yaml"], cwd=CORPUS)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == expected_lines(name)


def test_the_same_problems_from_the_kept_document(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A file that passed the schema is read back from the validation cache, not parsed, the
    second time: its semantic problems are the same, at the same positions."""
    from workspace_manager.workspace import yaml_positions

    monkeypatch.setenv("WSM_CACHE_DIR", str(tmp_path))
    parsed: List[str] = []
    real = yaml_positions.load_yaml

    def counting(text: str, path: str):  # type: ignore[no-untyped-def]
        parsed.append(path)
        return real(text, path)

    monkeypatch.setattr(yaml_positions, "load_yaml", counting)
    from_cache = []
    for name in CASES:
        first = problems_of(name)
        parsed.clear()
        assert problems_of(name) == first, name
        if not parsed:
            from_cache.append(name)
    assert len(from_cache) >= 15, from_cache  # semantic problems only: the schema passed
