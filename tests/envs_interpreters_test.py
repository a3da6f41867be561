"""Interpreter discovery and the on-disk identity cache (a warm start starts no process)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from workspace_manager.envs import interpreters
from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.interpreters import InterpreterCache
from workspace_manager.envs.paths import CacheLayout

OWN = os.path.realpath(sys.executable)
DEBIAN = "/usr/bin/python3"


def fresh(tmp_path: Path) -> InterpreterCache:
    return InterpreterCache(CacheLayout.at(tmp_path / "cache"))


def test_default_is_wsms_own_interpreter(tmp_path: Path) -> None:
    found = fresh(tmp_path).find(None)
    assert found.path == OWN
    assert found.version == ".".join(map(str, sys.version_info[:3]))
    assert found.implementation == "CPython"


def test_version_spec_uses_virtualenv_discovery(tmp_path: Path) -> None:
    spec = ".".join(map(str, sys.version_info[:2]))
    found = fresh(tmp_path).find(spec)
    assert found.version.startswith(spec + ".")
    assert os.path.isabs(found.path) and os.path.realpath(found.path) == found.path


@pytest.mark.skipif(not os.path.exists(DEBIAN), reason="needs Debian's /usr/bin/python3")
def test_path_spec(tmp_path: Path) -> None:
    found = fresh(tmp_path).find(DEBIAN)
    assert found.path == os.path.realpath(DEBIAN)
    assert found.implementation == "CPython"


def test_relative_path_spec_resolves_against_base(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "py").symlink_to(OWN)
    assert fresh(tmp_path).find("bin/py", base=tmp_path).path == OWN


def test_unknown_spec_and_path_are_clear_errors(tmp_path: Path) -> None:
    cache = fresh(tmp_path)
    with pytest.raises(EnvBuildError, match="no interpreter matching '2.1'"):
        cache.find("2.1")
    with pytest.raises(EnvBuildError, match="no such interpreter"):
        cache.find(str(tmp_path / "missing" / "python"))


def test_warm_cache_starts_no_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ".".join(map(str, sys.version_info[:2]))
    first = fresh(tmp_path)
    own, by_spec = first.find(None), first.find(spec)

    def no_process(*_a, **_k):
        raise AssertionError("a warm lookup must not start an interpreter or search PATH")

    monkeypatch.setattr(interpreters, "_probe", no_process)
    monkeypatch.setattr(interpreters, "_discover_uncached", no_process)
    second = fresh(tmp_path)  # a new process would read the same file
    assert second.find(None) == own
    assert second.find(spec) == by_spec


def test_changed_binary_is_probed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "python-copy"
    shutil.copy2(OWN, copy)
    first = fresh(tmp_path).find(str(copy))
    calls = []
    real_probe = interpreters._probe
    monkeypatch.setattr(interpreters, "_probe", lambda p: calls.append(p) or real_probe(p))
    assert fresh(tmp_path).find(str(copy)) == first
    assert calls == []
    os.utime(copy, ns=(0, 0))  # same size, other mtime: maybe another build of Python
    assert fresh(tmp_path).find(str(copy)) == first
    assert calls == [str(copy)]


def test_corrupt_cache_file_is_ignored(tmp_path: Path) -> None:
    layout = CacheLayout.at(tmp_path / "cache")
    layout.root.mkdir(parents=True)
    layout.interpreters.write_text("{not json")
    assert InterpreterCache(layout).find(None).path == OWN
    layout.interpreters.write_text('{"infos": [], "specs": 3}')
    assert InterpreterCache(layout).find(None).path == OWN
