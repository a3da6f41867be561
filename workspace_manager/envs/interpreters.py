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

# Also valid Python 2, so an old interpreter is named "too old" rather than "not a Python".
_PROBE = (
    "import json, platform, sys; print(json.dumps({'version': platform.python_version(), "
    "'implementation': platform.python_implementation(), 'sys_version': sys.version}))"
)
# -E -s -S rather than -I, which Python 2 refuses ("Unknown option"); run from "/" so the
# empty entry -c puts on sys.path finds no stray json.py.
_PROBE_FLAGS = ("-E", "-s", "-S")

#: The oldest Python the loader and the SDK run on (SPEC section 1).
MIN_VERSION = (3, 9)


@dataclass(frozen=True)
class Interpreter:
    path: str  # real path of the executable
    version: str  # "3.11.7"
    implementation: str  # "CPython"

    def identity(self) -> Dict[str, str]:
        return asdict(self)

    def unsupported(self) -> Optional[str]:
        """Why wsm cannot run a location on this interpreter, or None when it can."""
        try:
            version = tuple(int(part) for part in self.version.split(".")[:2])
        except ValueError:
            return f"{self.path} reports an unknown Python version {self.version!r}"
        if version < MIN_VERSION:
            need = ".".join(map(str, MIN_VERSION))
            return f"Python {self.version} is too old: wsm needs {need} or newer ({self.path})"
        return None


def _stat_id(path: str) -> Optional[list]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


class InterpreterCache:
    """Interpreter identities and spec lookups, read once per process, written on change."""

    def __init__(self, layout: CacheLayout, writable: bool = True) -> None:
        """``writable=False`` (`--frozen-envs`): answers are kept in memory only."""
        self._layout = layout
        self._writable = writable
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
        if not self._writable:
            return
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
            return _supported(self.identify(str(path)), "python: ")
        return _supported(self.identify(self._discover(text)), "python: ")

    def check(self, path: str) -> Interpreter:
        """The identity of the interpreter at ``path``, or EnvBuildError when it is not a
        Python or too old to run wsm's loader. Cached like `identify`: a warm start asks no
        process."""
        return _supported(self.identify(path))

    def _discover(self, spec: str) -> str:
        lookup = f"{spec}\0{os.environ.get('PATH', '')}"
        with self._lock:
            known = self._load()["specs"].get(lookup)
        if known and _stat_id(known) is not None:
            return str(known)
        path = _discover_uncached(spec, self._layout.py_info if self._writable else None)
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
        info = _probe(real, shown=path)
        with self._lock:
            self._load()["infos"][real] = {"stat": stat_id, **info}
            self._save()
        return Interpreter(real, info["version"], info["implementation"])


def _supported(interp: Interpreter, prefix: str = "") -> Interpreter:
    reason = interp.unsupported()
    if reason is not None:
        raise EnvBuildError(prefix + reason)
    return interp


def _probe(path: str, shown: Optional[str] = None) -> Dict[str, str]:
    """Ask the interpreter at ``path`` who it is; errors name it as ``shown`` (the path the
    user wrote, before symlinks were resolved)."""
    try:
        done = subprocess.run(
            [path, *_PROBE_FLAGS, "-c", _PROBE],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60,
            cwd="/",
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvBuildError(f"{shown or path} is not a Python interpreter: {_why(exc)}") from None
    try:
        data = json.loads(done.stdout)
        return {k: str(data[k]) for k in ("version", "implementation", "sys_version")}
    except (ValueError, KeyError, TypeError):
        said = (done.stderr.strip().splitlines() or [""])[-1][:200]
        detail = f"exited with status {done.returncode}" if done.returncode else "no answer"
        raise EnvBuildError(
            f"{shown or path} is not a Python interpreter (asked for its version: {detail}"
            + (f": {said})" if said else ")")
        ) from None


def _why(exc: BaseException) -> str:
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"no answer within {exc.timeout:g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _discover_uncached(spec: str, py_info_dir: Optional[Path]) -> str:
    """virtualenv's discovery: the same interpreter `virtualenv -p SPEC` would pick; with
    ``py_info_dir`` None, python_discovery keeps what it learns in memory only."""
    import python_discovery

    cache: Optional[python_discovery.PyInfoCache] = None
    if py_info_dir is not None:
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
