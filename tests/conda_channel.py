"""A conda environment made offline: a local conda channel of packages written by the test,
installed into a prefix by rattler (py-rattler: the solver and installer pixi is built on).

conda-forge is out of reach here, so the channel's `python` package is made from the CPython
install running the tests: its interpreter binary copied into the package, its standard
library and libpython linked (conda "softlink" entries), and an empty `site-packages`. In
the prefix this is a CPython prefix install, as conda's own `python` package is: `sys.prefix`
is the conda prefix and its `site-packages` is the environment's. Beside it, a `noarch:
python` package with a console script; the installer writes the script into `bin/` and the
records into `conda-meta/`, as for any conda package.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Dict, Optional

SUBDIR = "linux-64"


def conda_package(
    channel: Path,
    subdir: str,
    index: Dict[str, object],
    files: Dict[str, bytes],
    links: Dict[str, str],
    link_json: Optional[Dict[str, object]] = None,
) -> Path:
    """A conda package (the .tar.bz2 format: `info/index.json`, `info/paths.json`,
    `info/files`, then the files) in ``channel/subdir``. ``links``: {path: symlink target}."""
    folder = channel / subdir
    folder.mkdir(parents=True, exist_ok=True)
    index = dict(index, subdir=subdir, build_number=0, timestamp=int(time.time() * 1000))
    paths = [
        {
            "_path": p,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        for p, data in sorted(files.items())
    ]
    paths += [{"_path": p, "path_type": "softlink", "size_in_bytes": 0} for p in sorted(links)]
    meta = {
        "info/index.json": json.dumps(index).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}).encode(),
        "info/files": ("\n".join(sorted([*files, *links])) + "\n").encode(),
    }
    if link_json is not None:
        meta["info/link.json"] = json.dumps(link_json).encode()
    path = folder / f"{index['name']}-{index['version']}-{index['build']}.tar.bz2"
    with tarfile.open(path, "w:bz2") as tf:
        for name, data in [*meta.items(), *files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tf.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


def python_package(channel: Path) -> None:
    """`python` X.Y.Z from the CPython install running the tests (see the module's text)."""
    base = Path(sys.base_prefix)
    ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stdlib = base / "lib" / f"python{ver}"
    files = {
        f"bin/python{ver}": (base / "bin" / f"python{ver}").read_bytes(),
        f"lib/python{ver}/site-packages/README.txt": b"the environment's packages\n",
    }
    links = {"bin/python": f"python{ver}", "bin/python3": f"python{ver}"}
    for entry in sorted(os.listdir(stdlib)):
        if entry != "site-packages":
            links[f"lib/python{ver}/{entry}"] = str(stdlib / entry)
    for entry in sorted(os.listdir(base / "lib")):
        if entry.startswith("libpython"):  # a shared-libpython build finds it beside the prefix
            links[f"lib/{entry}"] = str(base / "lib" / entry)
    version = ".".join(map(str, sys.version_info[:3]))
    conda_package(
        channel,
        SUBDIR,
        {"name": "python", "version": version, "build": "wsmtest_0", "depends": []},
        files,
        links,
    )


def noarch_tool_package(channel: Path, name: str, command: str) -> None:
    """A `noarch: python` package: module ``name`` (VALUE, main() printing it) and console
    script ``command``, which the installer writes into the prefix's `bin/`."""
    code = f'VALUE = "{name} 1.0"\n\n\ndef main():\n    print(VALUE)\n'
    conda_package(
        channel,
        "noarch",
        {
            "name": name,
            "version": "1.0",
            "build": "py_0",
            "depends": ["python"],
            "noarch": "python",
        },
        {f"site-packages/{name}/__init__.py": code.encode()},
        {},
        link_json={
            "noarch": {"type": "python", "entry_points": [f"{command} = {name}:main"]},
            "package_metadata_version": 1,
        },
    )


def conda_env(prefix: Path, work: Path, tool: str, command: str) -> Path:
    """A conda environment at ``prefix`` holding `python` and package ``tool`` (with console
    script ``command``), solved and installed by rattler from a channel in ``work``, offline.
    Returns the prefix's `bin/python`."""
    from rattler import Channel, install, solve
    from rattler.index import index_fs

    channel = work / "channel"
    python_package(channel)
    noarch_tool_package(channel, tool, command)

    async def make() -> None:
        await index_fs(channel, write_zst=False, write_shards=False)
        records = await solve(
            sources=[Channel(str(channel))],
            specs=["python", tool],
            platforms=[SUBDIR, "noarch"],
            virtual_packages=[],
        )
        await install(records, target_prefix=prefix, cache_dir=work / "pkgs", show_progress=False)

    asyncio.run(make())
    python = prefix / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", f"import sys, {tool}; print(sys.prefix)"],
        capture_output=True,
        text=True,
    )
    if probe.stdout.strip() != str(prefix):
        # e.g. Debian's python3, whose site.py never adds <prefix>/lib/pythonX.Y/site-packages
        import pytest

        pytest.skip(f"{sys.base_prefix}'s CPython does not relocate into a conda prefix: {probe}")
    return python
