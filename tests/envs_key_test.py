"""The env key: what changes it (content, options, interpreter) and what must not."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.envs_support import copy_fixture, location

from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.interpreters import Interpreter
from workspace_manager.envs.key import make_recipe
from workspace_manager.envs.requirements import normalise_name_spec, resolve_pip_args

PY = Interpreter("/usr/bin/python3.11", "3.11.2", "CPython")


def recipe(loc, interpreter=PY, installer="pip"):
    return make_recipe(loc, loc.environment, interpreter, installer)


def key(loc, **kw) -> str:
    return recipe(loc, **kw).key


def test_normalised_requirements_share_a_key(tmp_path: Path) -> None:
    a = location(tmp_path, requirements=["Foo_Bar >= 1.0", "baz[Extra2,extra1]==2"])
    b = location(tmp_path, requirements=["baz[extra1,extra2] == 2", "foo-bar>=1.0"])
    assert key(a) == key(b)
    assert normalise_name_spec("Foo_Bar >= 1.0, <2") == "foo-bar<2,>=1.0"
    c = location(tmp_path, requirements=["foo-bar>=1.1", "baz[extra1,extra2]==2"])
    assert key(c) != key(a)


def test_interpreter_identity_and_installer_are_in_the_key(tmp_path: Path) -> None:
    loc = location(tmp_path, requirements=["x"])
    base = key(loc)
    assert key(loc, interpreter=Interpreter(PY.path, "3.11.3", "CPython")) != base
    assert key(loc, interpreter=Interpreter("/opt/py/bin/python3.11", "3.11.2", "CPython")) != base
    assert key(loc, interpreter=Interpreter(PY.path, "3.11.2", "PyPy")) != base
    assert key(loc, installer="uv") != base
    assert key(loc) == base  # and it is stable


def test_pip_args_change_the_key(tmp_path: Path) -> None:
    a = location(tmp_path, requirements=["x"], pip_args=["--no-index"])
    b = location(tmp_path, requirements=["x"], pip_args=["--no-index", "--pre"])
    assert key(a) != key(b)


def test_requirements_file_content_and_includes(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    (tmp_path / "more").mkdir()
    nested = tmp_path / "more" / "base.txt"
    nested.write_text("six==1.16\n")
    req.write_text("# deps\n-r more/base.txt\nattrs==23.1\n")
    loc = location(tmp_path, requirements_file=req)
    first = key(loc)
    assert "-r" in recipe(loc).install_args and str(req) in recipe(loc).install_args
    nested.write_text("six==1.17\n")  # an included file, resolved against the including one
    second = key(loc)
    assert second != first
    req.write_text("# deps, reworded\n-r more/base.txt\nattrs==23.1\n")
    assert key(loc) != second


def test_local_package_content_changes_the_key_but_build_leftovers_do_not(tmp_path: Path) -> None:
    pkg = copy_fixture("wsm_fixture_pkg", tmp_path)
    loc = location(tmp_path, requirements=["./wsm_fixture_pkg"])
    first = recipe(loc)
    assert first.install_args[0] == str(pkg)  # made absolute against the working directory
    for leftover in ("build/lib/x.py", "wsm_fixture_pkg.egg-info/PKG-INFO", "__pycache__/a.pyc"):
        path = pkg / leftover
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("noise")
    assert key(loc) == first.key
    init = pkg / "wsm_fixture_pkg" / "__init__.py"
    init.write_text(init.read_text().replace("1.0", "1.1"))
    assert key(loc) != first.key


def test_local_path_in_requirements_file_is_hashed(tmp_path: Path) -> None:
    pkg = copy_fixture("wsm_fixture_pkg", tmp_path)
    req = tmp_path / "reqs.txt"
    req.write_text("./wsm_fixture_pkg\n")
    loc = location(tmp_path, requirements_file=req)
    first = key(loc)
    (pkg / "wsm_fixture_pkg" / "extra.py").write_text("X = 1\n")
    assert key(loc) != first


def test_editable_paths_are_not_hashed(tmp_path: Path) -> None:
    pkg = copy_fixture("wsm_fixture_pkg", tmp_path)
    loc = location(tmp_path, requirements=["-e ./wsm_fixture_pkg"])
    first = recipe(loc)
    assert first.install_args == ("-e", str(pkg), "--no-index", "--no-build-isolation")
    (pkg / "wsm_fixture_pkg" / "extra.py").write_text("X = 1\n")  # live in an editable install
    assert key(loc) == first.key


def test_same_relative_path_in_other_working_directories_differs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    copy_fixture("wsm_fixture_pkg", tmp_path / "a")
    copy_fixture("wsm_fixture_pkg", tmp_path / "b")
    a = location(tmp_path / "a", requirements=["./wsm_fixture_pkg"])
    b = location(tmp_path / "b", requirements=["./wsm_fixture_pkg"])
    assert key(a) != key(b)  # different paths, even with identical contents


def test_pip_args_paths_are_made_absolute(tmp_path: Path) -> None:
    args, locals_ = resolve_pip_args(
        ["--find-links", "wheels", "-f=https://x/simple", "--find-links=w2", "--pre"], tmp_path
    )
    assert args == (
        "--find-links",
        str(tmp_path / "wheels"),
        "-f=https://x/simple",
        f"--find-links={tmp_path / 'w2'}",
        "--pre",
    )
    assert [str(x.path) for x in locals_] == [str(tmp_path / "wheels"), str(tmp_path / "w2")]


def test_missing_requirements_file_is_a_clear_error(tmp_path: Path) -> None:
    loc = location(tmp_path, requirements_file=tmp_path / "nope.txt")
    with pytest.raises(EnvBuildError, match="requirements file .*nope.txt"):
        recipe(loc)
