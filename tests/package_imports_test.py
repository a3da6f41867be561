"""`import workspace_manager` loads none of the SDK: every wsm command imports the package
first, and the SDK's names (5-14 ms of imports) are loaded on first use (PEP 562). Repository
code, in any interpreter wsm supports, sees the same names as before, and so does mypy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import workspace_manager

#: wsm's own, and the bare interpreters a location may name (as in tests/sdk_seed_test.py)
INTERPRETERS = {
    "wsm": sys.executable,
    "debian": "/usr/bin/python3",
    "cpython39": "/root/.pyenv/versions/3.9.18/bin/python",
}

PROBE = textwrap.dedent(
    """
    import json, sys
    root = sys.argv[1]
    sys.path.insert(0, root)
    import workspace_manager
    report = {
        "version": list(sys.version_info[:2]),
        "after_import": sorted(m for m in sys.modules if m.startswith("workspace_manager")),
        "dir": sorted(n for n in dir(workspace_manager) if not n.startswith("_")),
        "wsm_version": workspace_manager.__version__,
    }
    job = workspace_manager.job  # the first use loads the SDK
    from workspace_manager import RunRequest, repository
    from workspace_manager.sdk import job as sdk_job, RunRequest as SdkRunRequest
    report["same_objects"] = job is sdk_job and RunRequest is SdkRunRequest
    report["sdk_loaded"] = "workspace_manager.sdk" in sys.modules
    star = {}
    exec("from workspace_manager import *", star)
    report["star"] = sorted(n for n in star if n != "__builtins__")
    try:
        workspace_manager.no_such_name
        report["unknown"] = "no error"
    except AttributeError as exc:
        report["unknown"] = str(exc)
    from workspace_manager import cli  # a subpackage is still found by name
    report["subpackage"] = cli.__name__
    print(json.dumps(report))
    """
)


@pytest.mark.parametrize("label", sorted(INTERPRETERS))
def test_the_package_loads_the_sdk_on_first_use(label: str, tmp_path: Path) -> None:
    python = INTERPRETERS[label]
    if not os.access(python, os.X_OK):
        pytest.skip(f"{python} is not installed here")
    package_dir = Path(workspace_manager.__file__).resolve().parent
    (tmp_path / "workspace_manager").symlink_to(package_dir)
    done = subprocess.run(
        [python, "-I", "-S", "-c", PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    if label == "cpython39":
        assert report["version"] == [3, 9]
    assert report["after_import"] == ["workspace_manager", "workspace_manager.version"]
    names = sorted(n for n in workspace_manager.__all__ if not n.startswith("_"))
    assert report["dir"] == sorted([*names, "version"])  # the SDK's names before they load
    assert report["wsm_version"] == workspace_manager.__version__
    assert report["same_objects"] and report["sdk_loaded"]
    assert report["star"] == sorted(workspace_manager.__all__)
    assert report["unknown"] == "module 'workspace_manager' has no attribute 'no_such_name'"
    assert report["subpackage"] == "workspace_manager.cli"


USER_CODE = """
import workspace_manager
from workspace_manager import RunRequest, ScheduleDefinition, job, repository

reveal_type(job)
reveal_type(workspace_manager.RunRequest)
from workspace_manager import jobb
workspace_manager.Schedule
"""


def test_mypy_sees_the_sdk_names(tmp_path: Path) -> None:
    """The names come from `if TYPE_CHECKING:` imports, not from `__getattr__` (which
    would type every name, a misspelt one too, as its return type)."""
    (tmp_path / "user_repo.py").write_text(USER_CODE)
    root = Path(workspace_manager.__file__).resolve().parent.parent
    env = dict(os.environ)
    if "site-packages" not in root.parts:
        # a checkout (an editable install's import hook is not followed by mypy); an installed
        # wheel is found in site-packages through its py.typed marker (PEP 561)
        env["MYPYPATH"] = str(root)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--no-error-summary", "user_repo.py"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    lines = done.stdout.splitlines()
    assert any('user_repo.py:5: note: Revealed type is "def (fn:' in x for x in lines), lines
    assert any('user_repo.py:6: note: Revealed type is "def (' in x for x in lines), lines
    assert any('user_repo.py:7: error: Module "workspace_manager" has no attribute "jobb"' in x
               for x in lines), lines  # fmt: skip
    assert any('user_repo.py:8: error: Module has no attribute "Schedule"' in x for x in lines)
    assert len([x for x in lines if ": error:" in x]) == 2, lines
