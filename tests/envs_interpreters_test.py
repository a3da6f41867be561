"""Interpreter discovery and the on-disk identity cache (a warm start starts no process)."""

from __future__ import annotations

import os
import re
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
    monkeypatch.setattr(
        interpreters, "_probe", lambda p, shown=None: calls.append(p) or real_probe(p)
    )
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


def _fake(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body)
    path.chmod(0o755)
    return str(path)


OLD_PYTHON = """#!/bin/sh
echo '{"version": "%s", "implementation": "CPython", "sys_version": "%s"}'
"""


@pytest.mark.parametrize("version", ["2.7.18", "3.6.15", "3.8.20"])
def test_check_refuses_a_python_older_than_3_9(tmp_path: Path, version: str) -> None:
    fake = _fake(tmp_path, "python", OLD_PYTHON % (version, version))
    with pytest.raises(EnvBuildError, match=rf"Python {version} is too old: wsm needs 3.9"):
        fresh(tmp_path).check(fake)
    with pytest.raises(EnvBuildError, match=rf"^python: Python {version} is too old"):
        fresh(tmp_path).find(fake)  # an environment built from it


def test_check_accepts_3_9_and_wsms_own(tmp_path: Path) -> None:
    assert fresh(tmp_path).check(_fake(tmp_path, "py", OLD_PYTHON % ("3.9.0", "3.9.0")))
    assert fresh(tmp_path).check(OWN).path == OWN


def test_check_says_what_is_not_a_python(tmp_path: Path) -> None:
    cache = fresh(tmp_path)
    cases = {
        "/bin/true": "/bin/true is not a Python interpreter (asked for its version: no answer)",
        "/bin/false": "/bin/false is not a Python interpreter (asked for its version: exited "
        "with status 1)",
        _fake(tmp_path, "noshebang", "echo hi\n"): "is not a Python interpreter: Exec format",
        _fake(tmp_path, "sh", "#!/bin/sh\necho oops >&2; exit 2\n"): "status 2: oops)",
    }
    for path, message in cases.items():
        with pytest.raises(EnvBuildError, match=re.escape(message)):
            cache.check(path)
    text = tmp_path / "notes.txt"
    text.write_text("just text\n")
    with pytest.raises(EnvBuildError, match="is not a Python interpreter: Permission denied"):
        cache.check(str(text))
    with pytest.raises(EnvBuildError, match="no such interpreter"):
        cache.check(str(tmp_path / "missing"))


def test_a_failed_check_is_not_cached(tmp_path: Path) -> None:
    fake = _fake(tmp_path, "python", "#!/bin/sh\nexit 1\n")
    with pytest.raises(EnvBuildError):
        fresh(tmp_path).check(fake)
    shutil.copy2(OWN, fake)  # fixed in place
    assert fresh(tmp_path).check(fake).version == ".".join(map(str, sys.version_info[:3]))
