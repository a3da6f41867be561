"""A `python_file` is imported under its own module name, its file stem (SPEC section 6, as
Dagster does), so multiprocessing's spawn, pickle and child processes can import what it
defines; a stem that already names another module is a clear load error, not a silent mix-up."""

from __future__ import annotations

import os
import sys
import textwrap

import interpreters
import pytest

from workspace_manager.loader.harness import LoaderProcess, file_target
from workspace_manager.protocol import messages

INTERPRETERS = interpreters.params("wsm-python", "python3.9")

REPO = textwrap.dedent(
    """
    import multiprocessing, pickle, subprocess, sys
    from workspace_manager import job, repository

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    def square(n):
        return n * n

    @job
    def spawned():
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            return pool.map(square, [1, 2, 3])

    @job
    def pickled():
        data = pickle.dumps(Point(3, 4))
        here = pickle.loads(data)
        # a fresh interpreter in the location's working directory imports `team_repo` by name
        child = subprocess.run(
            [sys.executable, "-c",
             "import pickle, sys; p = pickle.loads(sys.stdin.buffer.read()); print(p.x + p.y)"],
            input=data, capture_output=True, check=True,
        )
        return {"module": Point.__module__, "here": [here.x, here.y],
                "child": int(child.stdout), "repr": repr(Point)}

    @repository
    def files():
        return [spawned, pickled]
    """
)


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _load(python: str, path: str, rundir: str, attribute: str = None) -> LoaderProcess:
    loader = LoaderProcess(python, file_target(path, attribute), rundir, env=_env())
    loader.first_event = loader.start()  # type: ignore[attr-defined]
    return loader


@pytest.mark.parametrize("python", INTERPRETERS)
def test_spawn_and_pickle_find_what_the_file_defines(tmp_path, python) -> None:
    path = tmp_path / "code" / "team_repo.py"
    path.parent.mkdir()
    path.write_text(REPO)
    loader = _load(python, str(path), str(tmp_path / "run"))
    try:
        assert loader.first_event[1] == "loaded", loader.stderr_text()  # type: ignore
        with loader.client(timeout=60) as client:
            assert client.call("execute_job", {"job": "spawned"})["result"] == [1, 4, 9]
            result = client.call("execute_job", {"job": "pickled"})["result"]
        assert result == {
            "module": "team_repo",
            "here": [3, 4],
            "child": 7,
            "repr": "<class 'team_repo.Point'>",
        }
    finally:
        loader.stop()


def test_errors_name_the_users_module_and_file(tmp_path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    bad = code / "orders.py"
    bad.write_text("class Order:\n    pass\n\nraise TypeError(f'{Order} is not ready')\n")
    loader = _load(sys.executable, str(bad), str(tmp_path / "run"))
    try:
        error = messages.parse(loader.first_event).params["error"]  # type: ignore[attr-defined]
        assert error["message"] == "TypeError: <class 'orders.Order'> is not ready"
        assert "__wsm_file" not in error["message"] + error["traceback"]
    finally:
        loader.stop()

    good = code / "billing.py"
    good.write_text("from workspace_manager import job, repository\n\n@job\ndef j():\n    pass\n")
    loader = _load(sys.executable, str(good), str(tmp_path / "run"), attribute="nope")
    try:
        error = messages.parse(loader.first_event).params["error"]  # type: ignore[attr-defined]
        assert str(good) in error["message"] and "'billing'" in error["message"]
        assert "__wsm_file" not in error["message"]
    finally:
        loader.stop()


@pytest.mark.parametrize(
    "stem", ["json", "workspace_manager", "socket", "sys", "logging", "typing", "re"]
)
def test_a_stem_naming_another_module_is_a_clear_load_error(tmp_path, stem) -> None:
    code = tmp_path / "code"
    code.mkdir()
    path = code / f"{stem}.py"
    path.write_text("from workspace_manager import job, repository\n")
    loader = _load(sys.executable, str(path), str(tmp_path / "run"))
    try:
        event = messages.parse(loader.first_event)  # type: ignore[attr-defined]
        assert event.event == "load_error"
        message = event.params["error"]["message"]
        assert f"cannot import {path} as module {stem!r}: that name is already" in message
        assert "rename the file" in message
        assert loader.wait(10) == 4
    finally:
        loader.stop()


def test_a_package_of_the_same_name_in_the_folder_is_a_clash(tmp_path) -> None:
    code = tmp_path / "code"
    (code / "etl").mkdir(parents=True)
    (code / "etl" / "__init__.py").write_text("")
    path = code / "etl.py"  # `import etl` means the package: importing the file as etl would lie
    path.write_text("from workspace_manager import job, repository\n")
    loader = _load(sys.executable, str(path), str(tmp_path / "run"))
    try:
        message = messages.parse(loader.first_event).params["error"]["message"]  # type: ignore
        assert "as module 'etl'" in message and os.path.join("etl", "__init__.py") in message
    finally:
        loader.stop()


def test_the_file_importing_itself_by_name_gets_the_same_module(tmp_path) -> None:
    """Dagster code often does `from my_repo import thing`: one module, not a second copy."""
    code = tmp_path / "code"
    code.mkdir()
    path = code / "selfref.py"
    path.write_text(
        "from workspace_manager import job, repository\n"
        "LOADS = globals().setdefault('LOADS', 0) + 1\n\n"
        "@job\ndef same():\n    import selfref\n    return [selfref.same is same, selfref.LOADS]\n\n"
        "@repository\ndef r():\n    return [same]\n"
    )
    loader = _load(sys.executable, str(path), str(tmp_path / "run"))
    try:
        assert loader.first_event[1] == "loaded", loader.stderr_text()  # type: ignore
        with loader.client(timeout=30) as client:
            assert client.call("execute_job", {"job": "same"})["result"] == [True, 1]
    finally:
        loader.stop()
