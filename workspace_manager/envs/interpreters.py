"""Which interpreter an environment is built from, and its identity, cached on disk.

`environment.python` is None (wsm's own interpreter), a path, or a spec such as "3.11" or
"python3.12" that virtualenv's own discovery (the `python-discovery` package) resolves.
Identity (real path, version, implementation) is what the cache key needs; asking an
interpreter costs a process start, so answers are kept in ``interpreters.json`` keyed by
(real path, mtime, size), and spec lookups by (spec, PATH). A warm start asks no process.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.paths import CacheLayout
from workspace_manager.envs.resolve import own_interpreter
from workspace_manager.private_files import private_dir, write_private

_PROBE = (
    "import json, platform, sys; print(json.dumps({'version': platform.python_version(), "
    "'implementation': platform.python_implementation(), 'sys_version': sys.version}))"
)


@dataclass(frozen=True)
class Interpreter:
    path: str  # real path of the executable
    version: str  # "3.11.7"
    implementation: str  # "CPython"

    def identity(self) -> Dict[str, str]:
        return asdict(self)


def _stat_id(path: str) -> Optional[list]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


class InterpreterCache:
    """Interpreter identities and spec lookups, read once per process, written on change."""

    def __init__(self, layout: CacheLayout) -> None:
        self._layout = layout
        self._lock = threading.Lock()
        self._data: Optional[Dict[str, Any]] = None

    def _load(self) -> Dict[str, Any]:
        if self._data is None:
            try:
                data = json.loads(self._layout.interpreters.read_text())
                if not isinstance(data.get("infos"), dict) or not isinstance(
                    data.get("specs"), dict
                ):
                    raise ValueError("bad shape")
            except (OSError, ValueError, AttributeError):
                data = {"infos": {}, "specs": {}}  # a corrupt cache means ask again, never fail
            self._data = data
        return self._data

    def _save(self) -> None:
        path = self._layout.interpreters
        try:  # only a cache: unwritable (a full disk) means asking the interpreter again
            private_dir(path.parent)
            write_private(path, json.dumps(self._data, sort_keys=True))
        except OSError:
            pass

    def find(self, spec: Optional[str], base: Optional[Path] = None) -> Interpreter:
        """The interpreter for ``environment.python``; ``base`` anchors a relative path."""
        if spec is None:
            return self.identify(own_interpreter())
        text = spec.strip()
        if os.sep in text or text.startswith("~"):
            path = Path(text).expanduser()
            if not path.is_absolute() and base is not None:
                path = base / path
            if not os.access(path, os.X_OK) or path.is_dir():
                raise EnvBuildError(f"python: {spec}: no such interpreter")
            return self.identify(str(path))
        return self.identify(self._discover(text))

    def _discover(self, spec: str) -> str:
        lookup = f"{spec}\0{os.environ.get('PATH', '')}"
        with self._lock:
            known = self._load()["specs"].get(lookup)
        if known and _stat_id(known) is not None:
            return str(known)
        path = _discover_uncached(spec, self._layout.py_info)
        with self._lock:
            self._load()["specs"][lookup] = path
            self._save()
        return path

    def identify(self, path: str) -> Interpreter:
        real = os.path.realpath(path)
        stat_id = _stat_id(real)
        if stat_id is None:
            raise EnvBuildError(f"python: {path}: no such interpreter")
        with self._lock:
            entry = self._load()["infos"].get(real)
        if entry and entry.get("stat") == stat_id:
            return Interpreter(real, entry["version"], entry["implementation"])
        info = _probe(real)
        with self._lock:
            self._load()["infos"][real] = {"stat": stat_id, **info}
            self._save()
        return Interpreter(real, info["version"], info["implementation"])


def _probe(path: str) -> Dict[str, str]:
    try:
        out = subprocess.run(
            [path, "-I", "-S", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        data = json.loads(out)
        return {k: str(data[k]) for k in ("version", "implementation", "sys_version")}
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        raise EnvBuildError(f"python: {path} does not run as a Python interpreter: {exc}") from None


def _discover_uncached(spec: str, py_info_dir: Path) -> str:
    """virtualenv's discovery: the same interpreter `virtualenv -p SPEC` would pick."""
    import python_discovery

    try:
        private_dir(py_info_dir)
    except OSError:
        pass  # python_discovery copes with a cache it cannot write
    cache = python_discovery.DiskCache(py_info_dir)
    try:
        info = python_discovery.get_interpreter(spec, cache=cache)
        if info is None and managed_python_dirs():
            # Not on PATH: also look where pyenv and uv keep the interpreters they manage,
            # as a user of either expects "3.12" to find theirs.
            path = os.pathsep.join([os.environ.get("PATH", ""), *managed_python_dirs()])
            info = python_discovery.get_interpreter(
                spec, cache=cache, env=dict(os.environ, PATH=path)
            )
    except Exception as exc:  # a bad spec string raises from the parser
        raise EnvBuildError(f"python: {spec!r} is not a valid interpreter spec: {exc}") from None
    if info is None:
        raise EnvBuildError(
            f"python: no interpreter matching {spec!r} found on PATH or in pyenv/uv's versions"
        )
    return str(info.system_executable or info.executable)


def managed_python_dirs() -> List[str]:
    """bin folders of interpreters installed by pyenv ($PYENV_ROOT/versions) and uv."""
    roots = [
        Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions",
        Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or Path.home() / ".local/share/uv/python"),
    ]
    found = []
    for root in roots:
        if root.is_dir():
            found += sorted(str(p / "bin") for p in root.iterdir() if (p / "bin").is_dir())
    return found
