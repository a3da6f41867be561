"""The argv and SDK directory the manager starts loaders with."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from workspace_manager.loader.launch import bootstrap_argv, make_sdk_dir, package_dir


def test_make_sdk_dir_links_the_package_privately_and_idempotently(tmp_path):
    sdk = make_sdk_dir(str(tmp_path))
    assert sdk == str(tmp_path / "sdk")
    assert stat.S_IMODE(os.stat(sdk).st_mode) == 0o700
    link = os.path.join(sdk, "workspace_manager")
    assert os.readlink(link) == package_dir()
    assert os.listdir(sdk) == ["workspace_manager"]
    assert make_sdk_dir(str(tmp_path)) == sdk
    os.unlink(link)
    os.symlink("/nonexistent", link)  # a stale link from another installation is replaced
    make_sdk_dir(str(tmp_path))
    assert os.readlink(link) == package_dir()


def test_bootstrap_argv_puts_only_the_sdk_dir_first(tmp_path):
    sdk = make_sdk_dir(str(tmp_path))
    argv = bootstrap_argv(sys.executable, sdk)
    assert argv[0] == sys.executable and argv[1] == "-c"
    assert "from workspace_manager.loader.main import main; main()" in argv[2]
    probe = argv[2].replace(
        "from workspace_manager.loader.main import main; main()",
        "import workspace_manager; print(sys.path[0]); print(workspace_manager.__file__)",
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    first, module_file = out.stdout.splitlines()
    assert first == sdk
    assert module_file.startswith(sdk + os.sep)


def test_sdk_dir_with_quotes_in_its_path(tmp_path):
    odd = tmp_path / 'it\'s "odd"'
    odd.mkdir()
    sdk = make_sdk_dir(str(odd))
    probe = bootstrap_argv(sys.executable, sdk)[2].replace(
        "from workspace_manager.loader.main import main; main()", "print(sys.path[0])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == sdk
