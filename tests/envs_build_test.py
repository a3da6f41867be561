"""Real, offline virtualenv builds: install, reuse without pip, failures, isolation from wsm."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest
from fixtures.envs_support import copy_fixture, location, make_package, run_python

import workspace_manager
from workspace_manager.envs import build as build_module
from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.paths import MARKER
from workspace_manager.envs.progress import RecordingReporter
from workspace_manager.envs.service import EnvironmentService


def service(tmp_path: Path, reporter=None) -> EnvironmentService:
    return EnvironmentService(tmp_path / "cache", reporter=reporter)


def ensure(svc: EnvironmentService, loc):
    return asyncio.run(svc.ensure(loc))


def test_build_then_reuse_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_fixture("wsm_fixture_pkg", tmp_path)
    loc = location(tmp_path, requirements=["./wsm_fixture_pkg"])
    reporter = RecordingReporter()
    svc = service(tmp_path, reporter)
    assert svc.cached(loc) is None
    first = ensure(svc, loc)
    assert first.built and first.python == str(
        tmp_path / "cache" / "envs" / first.key / "bin/python"
    )
    steps = [e.text for e in reporter.events if e.kind == "step"]
    assert steps == ["creating virtualenv", "installing 1 requirement with pip", "finishing"]
    assert [e.kind for e in reporter.events][-1] == "done"
    done = run_python(
        first.python, "import wsm_fixture_pkg, sys; print(wsm_fixture_pkg.VERSION, sys.prefix)"
    )
    assert done.stdout.split() == ["1.0", str(Path(first.python).parent.parent)]
    log = (tmp_path / "cache" / "logs" / f"{first.key}.log").read_text()
    assert "Successfully installed wsm-fixture-pkg-1.0" in log

    def no_process(*_a, **_k):
        raise AssertionError("reuse must not run pip or virtualenv")

    monkeypatch.setattr(build_module.subprocess, "Popen", no_process)
    monkeypatch.setattr(build_module, "_create_virtualenv", no_process)
    again = service(tmp_path, RecordingReporter())  # as a new manager would
    assert again.cached(loc) == first.python
    second = ensure(again, loc)
    assert (second.python, second.key, second.built) == (first.python, first.key, False)
    assert again.reporter.events == []  # type: ignore[attr-defined]


def test_console_scripts_work_after_publishing(tmp_path: Path) -> None:
    """The reason envs are published by symlink, not renamed: absolute shebangs stay valid."""
    pkg = make_package(tmp_path, "wsm-hello", "wsm_hello", "def main():\n    print('hello')\n")
    with open(pkg / "pyproject.toml", "a") as f:
        f.write('\n[project.scripts]\nwsm-hello = "wsm_hello:main"\n')
    result = ensure(service(tmp_path), location(tmp_path, requirements=["./wsm-hello"]))
    script = Path(result.python).parent / "wsm-hello"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "hello\n"), done.stderr


def test_failed_install_reports_pip_tail_and_log(tmp_path: Path) -> None:
    loc = location(tmp_path, requirements=["wsm-no-such-package-anywhere==1.0"])
    svc = service(tmp_path)
    with pytest.raises(EnvBuildError) as caught:
        ensure(svc, loc)
    err = caught.value
    text = str(err)
    assert "\n" not in text
    assert text.startswith("pip install failed: ERROR:")
    assert "wsm-no-such-package-anywhere" in text
    assert err.log_path is not None and str(err.log_path) in text
    assert any("No matching distribution" in line for line in err.tail)
    assert "No matching distribution" in err.log_path.read_text()
    assert err.details().startswith(text + "\n")
    # nothing published, nothing left behind
    assert svc.cached(loc) is None
    assert list((tmp_path / "cache" / "envs" / ".builds").iterdir()) == []


def test_conflicting_local_pins_fail_cleanly(tmp_path: Path) -> None:
    make_package(tmp_path, "wsm-conflict", "wsm_conflict", "")
    with open(tmp_path / "wsm-conflict" / "pyproject.toml", "a") as f:
        f.write('dependencies = ["wsm-absent-dependency>=9"]\n')
    with pytest.raises(EnvBuildError, match="pip install failed: ERROR: .*wsm-absent-dependency"):
        ensure(service(tmp_path), location(tmp_path, requirements=["./wsm-conflict"]))


def test_env_does_not_see_wsms_dependencies(tmp_path: Path) -> None:
    copy_fixture("wsm_fixture_pkg", tmp_path)
    result = ensure(service(tmp_path), location(tmp_path, requirements=["./wsm_fixture_pkg"]))
    import yaml  # noqa: F401  wsm's own interpreter has it

    code = """
    import importlib.util, json
    print(json.dumps({m: importlib.util.find_spec(m) is not None
                      for m in ("yaml", "jsonschema", "psutil", "virtualenv", "workspace_manager")}))
    """
    done = run_python(result.python, code)
    assert json.loads(done.stdout) == {
        "yaml": False,
        "jsonschema": False,
        "psutil": False,
        "virtualenv": False,
        "workspace_manager": False,
    }
    failed = run_python(result.python, "import yaml")
    assert failed.returncode == 1 and "No module named 'yaml'" in failed.stderr


def test_repository_pinning_its_own_msgpack_sees_it_and_the_loader_still_works(
    tmp_path: Path,
) -> None:
    copy_fixture("fake_msgpack", tmp_path)
    result = ensure(service(tmp_path), location(tmp_path, requirements=["./fake_msgpack"]))
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    (sdk / "workspace_manager").symlink_to(Path(workspace_manager.__file__).resolve().parent)
    code = f"""
    import sys, json
    sys.path.insert(0, {str(sdk)!r})
    import msgpack
    from workspace_manager.protocol import codec
    from workspace_manager.protocol.framing import encode_frame
    msg = [1, 7, None, {{"ok": [1, 2.5, "x", b"y"]}}]
    assert codec.unpackb(codec.packb(msg)) == msg
    print(json.dumps({{"msgpack": list(msgpack.version), "fake": msgpack.FAKE,
                      "backend": codec.BACKEND}}))
    """
    done = run_python(result.python, code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"msgpack": [0, 6, 2], "fake": True, "backend": "pure"}


def test_env_without_requirements_runs_no_installer(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    result = ensure(service(tmp_path, reporter), location(tmp_path))
    assert [e.text for e in reporter.events if e.kind == "step"] == [
        "creating virtualenv",
        "finishing",
    ]
    marker = json.loads((Path(result.python).parent.parent / MARKER).read_text())
    assert marker["key"] == result.key and marker["requirements"] == []
    assert marker["size_bytes"] > 0


def test_uv_falls_back_to_pip_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("workspace_manager.envs.installers.uv.find_uv", lambda: None)
    copy_fixture("wsm_fixture_pkg", tmp_path)
    reporter = RecordingReporter()
    svc = service(tmp_path, reporter)
    loc = location(tmp_path, requirements=["./wsm_fixture_pkg"], installer="uv")
    assert svc.recipe(loc).installer == "pip"
    result = ensure(svc, loc)
    warnings = [e.text for e in reporter.events if e.kind == "warning"]
    assert warnings == ["installer: uv requested but uv is not installed; using pip"]
    assert run_python(result.python, "import wsm_fixture_pkg").returncode == 0


def test_uv_installs_offline(tmp_path: Path) -> None:
    copy_fixture("wsm_fixture_pkg", tmp_path)
    loc = location(tmp_path, requirements=["./wsm_fixture_pkg"], installer="uv")
    reporter = RecordingReporter()
    result = ensure(service(tmp_path, reporter), loc)
    assert "installing 1 requirement with uv" in [e.text for e in reporter.events]
    assert run_python(result.python, "import wsm_fixture_pkg").returncode == 0


def test_unknown_interpreter_is_an_env_error(tmp_path: Path) -> None:
    loc = location(tmp_path, python="2.1")
    svc = service(tmp_path)
    assert svc.cached(loc) is None
    with pytest.raises(EnvBuildError, match="no interpreter matching '2.1'"):
        ensure(svc, loc)


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="needs /usr/bin/python3")
def test_env_on_another_interpreter(tmp_path: Path) -> None:
    result = ensure(service(tmp_path), location(tmp_path, python="/usr/bin/python3"))
    done = run_python(result.python, "import sys; print(sys.base_prefix)")
    assert done.stdout.strip() == "/usr"
