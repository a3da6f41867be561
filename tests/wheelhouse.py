"""A wheelhouse and uv projects made in a test, offline: wheels written by hand (PEP 427),
projects that name them as path sources, locks made by the real `uv lock` with UV_OFFLINE=1.
Shared by the tests of environments built from projects and locks (issue 12)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

from workspace_manager.envs.installers.uv import find_uv

UV = find_uv()

# The interpreter the tests' environments are made from: the one running the tests.
PYTHON = Path(os.path.realpath(sys.executable))


def make_wheel(
    dest: Path,
    name: str,
    version: str,
    requires: List[str] = (),
    scripts: Optional[Dict[str, str]] = None,
) -> Path:
    """A pure-Python wheel of module ``name`` whose VALUE is "name version", made by hand (a
    wheel is a zip with a dist-info: PEP 427), so no build backend or index is needed.
    ``scripts``: console scripts, {command: "module:main"}; the installer writes them."""
    dest.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files: Dict[str, str] = {
        f"{name}/__init__.py": f'VALUE = "{name} {version}"\n',
        f"{dist}/METADATA": "Metadata-Version: 2.1\n"
        f"Name: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    if scripts:  # each script's target is main(), which prints VALUE
        files[f"{name}/__init__.py"] += "\n\ndef main():\n    print(VALUE)\n"
        files[f"{dist}/entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{command} = {target}\n" for command, target in scripts.items()
        )
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def pyproject(
    folder: Path,
    name: str,
    deps: List[str],
    sources: Dict[str, Path],
    extra: str = "",
) -> Path:
    """A project without a build system: uv treats it as virtual (its code is not installed,
    the loader imports it from the working directory), so no build backend is needed."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "[project]",
        f'name = "{name}"',
        'version = "0"',
        'requires-python = ">=3.9"',
        f"dependencies = {json.dumps(deps)}",
        extra,
    ]
    if sources:
        lines.append("[tool.uv.sources]")
        for dist, wheel in sources.items():
            rel = os.path.relpath(wheel, folder)
            lines.append(f'{dist} = {{ path = "{rel}" }}')
    path = folder / "pyproject.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def offline_env(cache: Path) -> Dict[str, str]:
    env = dict(os.environ, UV_OFFLINE="1", UV_CACHE_DIR=str(cache), UV_NO_PROGRESS="1")
    env.pop("VIRTUAL_ENV", None)
    return env


def run_uv(folder: Path, cache: Path, *args: str) -> None:
    """`uv ARGS --python PYTHON` in ``folder``, offline with ``cache``; asserts it succeeded."""
    assert UV is not None
    done = subprocess.run(
        [UV, *args, "--python", str(PYTHON)],
        cwd=folder,
        env=offline_env(cache),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def uv_lock(folder: Path, cache: Path) -> Path:
    run_uv(folder, cache, "lock")
    return folder / "uv.lock"


def code_location(name: str, workdir: str, **environment: object) -> Dict[str, object]:
    """A workspace.yaml location: `WORKDIR/repo.py`, run from WORKDIR, with ``environment``."""
    return {
        "python_file": {
            "relative_path": f"{workdir}/repo.py",
            "location_name": name,
            "working_directory": workdir,
            "environment": environment,
        }
    }


def uv_workspace(root: Path, wheels: Path, cache: Path) -> Dict[str, Path]:
    """A uv workspace with two members on one lock: `one` needs tinya 1.0 (and tinyc in its
    `dev` group), `two` needs tinyb. Each member folder also holds its location's code."""
    tinya = make_wheel(wheels, "tinya", "1.0")
    tinyb = make_wheel(wheels, "tinyb", "1.0")
    tinyc = make_wheel(wheels, "tinyc", "1.0")
    (root).mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "monorepo"
            version = "0"
            requires-python = ">=3.9"

            [tool.uv.workspace]
            members = ["members/*"]
            """
        )
    )
    one = root / "members" / "one"
    two = root / "members" / "two"
    pyproject(
        one,
        "one",
        ["tinya"],
        {"tinya": tinya, "tinyc": tinyc},
        extra='[dependency-groups]\ndev = ["tinyc"]\n',
    )
    pyproject(two, "two", ["tinyb"], {"tinyb": tinyb})
    uv_lock(root, cache)
    return {"one": one, "two": two}
