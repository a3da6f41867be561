"""A location pays for little beyond its own code: importing the SDK, and a loader that loaded a
trivial repository and answered the manager, import none of the standard library's heavy
modules (inspect, typing, logging, traceback, datetime, ...), under every interpreter a
location may name. The cause of the speed-up is checked here, not its time (bench/ has that).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import List, Set

import interpreters
import pytest

import workspace_manager
from workspace_manager.loader.harness import LoaderProcess, file_target

INTERPRETERS = interpreters.params()

#: What the loader and the SDK used to import at start-up, and need only on some later call
#: (a sensor's context, an error's traceback, a schedule's time zone) or never.
HEAVY = (
    "inspect",
    "ast",
    "dis",
    "tokenize",
    "linecache",
    "traceback",
    "typing",
    "logging",
    "uuid",
    "datetime",
    "zoneinfo",
    "sysconfig",
    "platform",
    "textwrap",
    "string",
    "hashlib",
    "hmac",
    "ssl",
    "asyncio",
    "subprocess",
    "pathlib",
    "ctypes",  # prctl goes through _ctypes (loader/lifeline.py)
    "json",  # the bootstrap line is read by loader/jsonline.py
    "re",
)
#: The SDK alone needs none of what serving a socket needs either.
SDK_HEAVY = (*HEAVY, "threading", "socket", "selectors", "struct", "_ctypes")

REPO = textwrap.dedent(
    '''
    from workspace_manager import RunRequest, ScheduleDefinition, job, repository, sensor


    @job
    def nightly():
        """A job with a docstring."""


    @job(tags={"team": "a"})
    def hourly(context):
        return context.run_config


    nightly_schedule = ScheduleDefinition(job=nightly, cron_schedule="0 3 * * *")


    @sensor(job=hourly, minimum_interval_seconds=60)
    def hourly_sensor(context):
        yield RunRequest(run_key=None, run_config={})


    @repository
    def trivial():
        return [nightly, hourly, nightly_schedule, hourly_sensor]
    '''
)

SDK_PROBE = textwrap.dedent(
    """
    import sys
    bare = sorted(sys.modules)  # what the interpreter imports before any code runs
    sys.path.insert(0, sys.argv[1])
    import workspace_manager.sdk
    sys.path.insert(0, sys.argv[2])
    import repo  # decorators, a cron string, tags: what loading a repository runs
    assert [r.name for r in [repo.trivial]] == ["trivial"]
    modules = sorted(set(sys.modules) - set(bare))
    import json
    print(json.dumps(modules))
    """
)


def _heavy(modules: Set[str], names: tuple) -> List[str]:
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


def _sdk_dir(tmp_path: Path) -> Path:
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    (sdk / "workspace_manager").symlink_to(Path(workspace_manager.__file__).resolve().parent)
    return sdk


@pytest.mark.parametrize("python", INTERPRETERS)
def test_importing_the_sdk_and_loading_definitions_import_nothing_heavy(
    python: str, tmp_path: Path
) -> None:
    (tmp_path / "repo.py").write_text(REPO)
    done = subprocess.run(
        [python, "-I", "-S", "-c", SDK_PROBE, str(_sdk_dir(tmp_path)), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert _heavy(set(json.loads(done.stdout)), SDK_HEAVY) == []


def _imported(stderr: str) -> Set[str]:
    """The modules named by `-X importtime` lines (PYTHONPROFILEIMPORTTIME) in `stderr`."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name)
    return names


@pytest.mark.parametrize("python", INTERPRETERS)
def test_a_loaded_loader_imports_nothing_heavy(python: str, tmp_path: Path) -> None:
    """Over what a bare interpreter imports (site, .pth files), a loader that loaded a
    repository and answered hello, get_snapshot and ping imports none of HEAVY."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    # The loader uses an interpreter's own C msgpack (>= 1.0) when it has one
    # (protocol/codec.py): what that imports (datetime, for its Timestamp) is its price.
    bare = subprocess.run(
        [python, "-c", "try:\n import msgpack\nexcept ImportError:\n pass"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bare.returncode == 0, bare.stderr
    (tmp_path / "repo.py").write_text(REPO)
    loader = LoaderProcess(
        python, file_target(str(tmp_path / "repo.py")), str(tmp_path / "run"), env=env
    )
    try:
        assert loader.start()[1] == "loaded", loader.stderr_text()
        with loader.client() as client:  # what the manager asks of a location that loaded
            assert [r["name"] for r in client.call("get_snapshot")["repositories"]] == ["trivial"]
            assert client.call("ping")["pid"] == loader.pid
    finally:
        assert loader.stop() == 0
    modules = _imported(loader.stderr_text())
    assert "workspace_manager.loader.server" in modules  # the probe sees the loader's imports
    assert _heavy(modules - _imported(bare.stderr), HEAVY) == []


SUBREAPER_REPO = textwrap.dedent(
    """
    import ctypes
    import os
    import sys

    from workspace_manager import job, repository

    flag = ctypes.c_int(-1)  # prctl(PR_GET_CHILD_SUBREAPER) when repository code starts
    ctypes.CDLL(None, use_errno=True).prctl(37, ctypes.byref(flag), 0, 0, 0)
    with open(os.environ["WSM_TEST_REPORT"], "w") as f:
        f.write(str(flag.value))


    @job
    def j():
        pass


    @repository
    def r():
        return [j]
    """
)


@pytest.mark.parametrize("python", INTERPRETERS)
def test_the_loader_is_a_child_subreaper_before_repository_code_runs(
    python: str, tmp_path: Path
) -> None:
    """prctl through `_ctypes` (not ctypes) still makes the loader the subreaper of what
    repository code spawns (docs/architecture.md, "What a location imports")."""
    report = tmp_path / "subreaper"
    (tmp_path / "repo.py").write_text(SUBREAPER_REPO)
    loader = LoaderProcess(
        python,
        file_target(str(tmp_path / "repo.py")),
        str(tmp_path / "run"),
        env=dict(os.environ, WSM_TEST_REPORT=str(report)),
    )
    try:
        assert loader.start()[1] == "loaded", loader.stderr_text()
    finally:
        assert loader.stop() == 0
    assert report.read_text() == "1"


FIRST_USE_PROBE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import workspace_manager.loader.main, workspace_manager.loader.methods
    from workspace_manager.loader.target import IMPORTED_ON_FIRST_USE
    before = set(sys.modules)
    # what the loader side imports on first use (docs/architecture.md)
    import inspect, logging, uuid, datetime, zoneinfo, json, traceback, typing, ctypes, re
    new = {m.split(".")[0] for m in set(sys.modules) - before} - before
    print(" ".join(sorted(m for m in new if not m.startswith("_") and m not in IMPORTED_ON_FIRST_USE)))
    """
)


@pytest.mark.parametrize("python", INTERPRETERS)
def test_a_file_may_not_take_the_name_of_a_module_imported_on_first_use(
    python: str, tmp_path: Path
) -> None:
    """loader/target.py refuses a file whose stem names a module the loader imports later
    (as it refuses one already imported): its list covers all of them."""
    done = subprocess.run(
        [python, "-I", "-S", "-c", FIRST_USE_PROBE, str(_sdk_dir(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
