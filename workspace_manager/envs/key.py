"""The content-addressed key of an environment, and the recipe that builds it.

The key covers everything that decides what ends up in the env: the interpreter's identity,
the normalised requirements, the contents of requirements files (with their includes) and
of local-path requirements, the installer options, which installer runs, and what wsm
itself puts there. wsm injects no package (the SDK reaches the loader through sys.path,
see docs/architecture.md); what virtualenv seeds (pip, setuptools from its embedded
wheels) is pinned by virtualenv's version, which is part of the key too.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.fingerprint import path_digest
from workspace_manager.envs.interpreters import Interpreter
from workspace_manager.envs.lockpart import project_part
from workspace_manager.envs.project import KIND_PYLOCK, KIND_UV_LOCK, ProjectSource, find_source
from workspace_manager.envs.requirements import (
    requirement_file_inputs,
    resolve_pip_args,
    resolve_requirement,
)
from workspace_manager.workspace.model import CodeTarget, EnvironmentSpec, LocationConfig

#: Bump when what wsm puts into an env, or how it builds one, changes.
ENV_FORMAT = 1
KEY_LENGTH = 20


def _virtualenv_version() -> str:
    # importlib.metadata reads one METADATA file; importing virtualenv costs ~100 ms.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("virtualenv")
    except PackageNotFoundError:
        return "unknown"


_SEED_VERSION: Optional[str] = None


def seed_version() -> str:
    global _SEED_VERSION
    if _SEED_VERSION is None:
        _SEED_VERSION = _virtualenv_version()
    return _SEED_VERSION


@dataclass(frozen=True)
class EnvRecipe:
    """Everything needed to build one environment, and its key."""

    key: str
    interpreter: Interpreter
    install_args: Tuple[str, ...]  # requirements, -r FILE, and pip_args, paths absolute
    requirement_count: int
    cwd: Path  # the installer's working directory: the location's working directory
    installer: str  # the installer that will run: "pip" or "uv"
    requested_installer: str
    inputs: Dict[str, Any] = field(compare=False, hash=False)
    # "requirements", or a project's source (envs/project.py): "uv.lock" | "pylock" | "project"
    source: str = "requirements"
    project: Optional[Path] = None
    lock: Optional[Path] = None
    extras: Tuple[str, ...] = ()
    groups: Tuple[str, ...] = ()

    @property
    def locked(self) -> bool:
        """Installed exactly from a lock (uv.lock or pylock) by uv, not by pip."""
        return self.source in (KIND_UV_LOCK, KIND_PYLOCK)

    def install_step(self) -> str:
        """The progress step for the install: "installing 3 requirements (+ requirements.txt)"."""
        if self.locked and self.lock is not None:
            return f"installing exactly what {self.lock.name} locks with uv"
        n = self.requirement_count
        text = f"installing {n} requirement{'s' if n != 1 else ''}"
        req_file = self.inputs["requirements_file"]
        if req_file:
            text = (
                f"installing from {Path(req_file).name}"
                if not n
                else f"{text} + {Path(req_file).name}"
            )
        return f"{text} with {self.installer}"


def base_dir(location: LocationConfig) -> Path:
    """Relative paths in requirements and pip_args resolve against the working directory."""
    if isinstance(location.target, CodeTarget):
        return location.target.working_directory
    raise EnvBuildError(f"location {location.name} is remote: it has no environment to build")


def _carries_hashes(file_inputs: List[Tuple[str, str]]) -> bool:
    """Whether a requirements file (or one it includes) pins hashes: then every package must
    have one (``--require-hashes``). pip turns that on by itself, uv only verifies the hashes
    it is given (uv's docs, "--require-hashes"); saying it makes both install exactly the
    file, and a dependency it does not list fails the build instead of being installed."""
    for label, _digest in file_inputs:
        if label.startswith("file "):
            try:
                text = Path(label[len("file ") :]).read_text(encoding="utf-8")
            except OSError:
                continue
            if "--hash" in text:
                return True
    return False


_UV_VERSION: Optional[str] = None


def uv_version() -> str:
    """uv's version without starting it (a warm start asks no process): its package's
    metadata when uv was pip-installed beside wsm, else the executable's size and mtime.
    Read once per process, like the seed's version."""
    global _UV_VERSION
    if _UV_VERSION is None:
        _UV_VERSION = _read_uv_version()
    return _UV_VERSION


def _read_uv_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from workspace_manager.envs.installers.uv import find_uv

    try:
        return version("uv")
    except PackageNotFoundError:
        exe = find_uv()
        if exe is None:
            return "missing"
        st = os.stat(exe)
        return f"{exe}:{st.st_size}:{st.st_mtime_ns}"


def _locked_recipe(
    location: LocationConfig,
    spec: EnvironmentSpec,
    interpreter: Interpreter,
    source: ProjectSource,
    digest: Callable[[Path], str],
    store: Tuple[Optional[Path], bool] = (None, True),
) -> EnvRecipe:
    """A project with a lock: the key is the lock's content, the files uv checks it against,
    the project (a uv workspace member picks its own part of a shared lock), the interpreter,
    the extras and groups, and uv's version.

    Of a uv.lock, only the part the project can install counts (envs/lockpart.py): two
    members of one uv workspace share the lock, and re-locking for one must not rebuild the
    other. A pylock, or a uv.lock without an entry for the project, counts whole."""
    assert source.lock is not None
    part: Optional[str] = None
    if source.kind == KIND_UV_LOCK:
        try:
            part = project_part(source.lock, source.project, *store)
        except OSError:
            part = None  # unreadable: digest() says "missing", and the build names the error
    inputs: Dict[str, Any] = {
        "format": ENV_FORMAT,
        "interpreter": interpreter.identity(),
        "source": source.kind,
        "project": str(source.project),
        "lock": str(source.lock),
        "contents": sorted(
            [("lock", part or digest(source.lock))] + [(str(f), digest(f)) for f in source.files]
        ),
        "extras": sorted(spec.extras),
        "groups": sorted(spec.groups),
        "installer": f"uv {uv_version()}",
        "seed": f"virtualenv {seed_version()} --no-seed",
        "injected": [],
        # read by the build's record and progress like a requirements env's
        "requirements": [],
        "requirements_file": None,
        "pip_args": [],
    }
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return EnvRecipe(
        key=hashlib.sha256(blob).hexdigest()[:KEY_LENGTH],
        interpreter=interpreter,
        install_args=(),
        requirement_count=0,
        cwd=source.project,
        installer="uv",
        requested_installer=spec.installer,
        inputs=inputs,
        source=source.kind,
        project=source.project,
        lock=source.lock,
        extras=tuple(spec.extras),
        groups=tuple(spec.groups),
    )


def make_recipe(
    location: LocationConfig,
    spec: EnvironmentSpec,
    interpreter: Interpreter,
    installer: str,
    digest: Callable[[Path], str] = path_digest,
    lock_parts: Optional[Path] = None,
    lock_parts_writable: bool = True,
) -> EnvRecipe:
    """The key and recipe of ``location``'s environment (EnvBuildError, OSError).

    ``lock_parts``: where a uv.lock's per-project parts are kept by its content
    (envs/lockpart.py; the cache's ``lock-parts``), written only if ``lock_parts_writable``."""
    base = base_dir(location)
    source: Optional[ProjectSource] = None
    if spec.project is not None:
        source = find_source(spec.project)
        if source.lock is not None:
            store = (lock_parts, lock_parts_writable)
            return _locked_recipe(location, spec, interpreter, source, digest, store)
        # No lock: the project is a local path requirement, hashed by its source tree.
        extras = f"[{','.join(spec.extras)}]" if spec.extras else ""
        spec = replace(spec, requirements=(str(spec.project) + extras,))
    requirements = [resolve_requirement(r, base) for r in spec.requirements if r.strip()]
    pip_args, pip_locals = resolve_pip_args(spec.pip_args, base)
    contents: List[Tuple[str, str]] = []
    for req in requirements:
        if req.local is not None and req.local.hashed:
            contents.append((f"local {req.local.path}", digest(req.local.path)))
    for local in pip_locals:
        if local.hashed:
            contents += requirement_file_inputs(local.path, base, digest)
    args: List[str] = [a for req in requirements for a in req.args]
    req_file: Optional[str] = None
    require_hashes = False
    if spec.requirements_file is not None:
        req_file = str(spec.requirements_file)
        file_inputs = requirement_file_inputs(spec.requirements_file, base, digest)
        contents += file_inputs
        args += ["-r", req_file]
        require_hashes = _carries_hashes(file_inputs) and "--require-hashes" not in pip_args
    args += pip_args
    if require_hashes:
        args.append("--require-hashes")
    inputs: Dict[str, Any] = {
        "format": ENV_FORMAT,
        "interpreter": interpreter.identity(),
        "requirements": sorted(r.key for r in requirements),
        "requirements_file": req_file,
        "contents": sorted(contents),
        "pip_args": list(pip_args),
        "installer": installer,
        "seed": f"virtualenv {seed_version()}",
        "injected": [],
    }
    # Added only when true, so the key of every other requirements env stays as it was.
    if source is not None:
        inputs["source"] = source.kind
    if require_hashes:
        inputs["require_hashes"] = True
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    key = hashlib.sha256(blob).hexdigest()[:KEY_LENGTH]
    return EnvRecipe(
        key=key,
        interpreter=interpreter,
        install_args=tuple(args),
        requirement_count=sum(
            1 for r in requirements if r.args[0] == "-e" or not r.args[0].startswith("-")
        ),
        cwd=base,
        installer=installer,
        requested_installer=spec.installer,
        inputs=inputs,
        source=source.kind if source is not None else "requirements",
        project=spec.project,
    )
