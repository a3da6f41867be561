"""Build one environment: lock, re-check, virtualenv (offline), install, mark, publish.

Runs in a worker thread. Under the key's file lock it re-checks whether another process
finished the same env meanwhile (then it is reused as is), removes leftovers of builds
that died, builds into a fresh folder, and publishes it only when everything succeeded.
A failed build is deleted at once; one killed mid-way is deleted by the next build.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Deque, Dict, FrozenSet, List, Optional, Sequence, Tuple

import filelock

from workspace_manager.envs import guard, store
from workspace_manager.envs.cancel import Cancel
from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.installers import Installer, uv
from workspace_manager.envs.key import EnvRecipe, seed_version
from workspace_manager.envs.lock import key_lock
from workspace_manager.envs.paths import CacheLayout
from workspace_manager.envs.progress import BuildReporter, emit
from workspace_manager.private_files import open_private
from workspace_manager.redact import redact, redact_argv, redact_data
from workspace_manager.version import __version__

TAIL_LINES = 25
_SCRUBBED_ENV = ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")


class _Progress:
    def __init__(self, reporter: BuildReporter, key: str, locations: Sequence[str]) -> None:
        self.reporter, self.key, self.locations = reporter, key, locations
        self.started = time.monotonic()

    def __call__(self, kind: str, text: str = "") -> None:
        emit(self.reporter, self.key, list(self.locations), kind, text, self.started)


def build_env(
    recipe: EnvRecipe,
    layout: CacheLayout,
    installer: Installer,
    reporter: BuildReporter,
    locations: Sequence[str] = (),
    warning: Optional[str] = None,
    cancel: Optional[Cancel] = None,
    hidden_env: FrozenSet[str] = frozenset(),
) -> bool:
    """Make the env for ``recipe`` exist; True when this call built it, False when reused.

    ``locations`` may grow while the build runs (locations joining it); progress shows them.
    Raises EnvBuildError with the installer's last lines and the log's path.
    """
    key = recipe.key
    if layout.is_complete(key):
        return False
    progress = _Progress(reporter, key, locations)
    progress("start")
    if warning:
        progress("warning", warning)
    try:
        lock = key_lock(layout, key, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:  # another process builds this env now
            progress("step", "waiting for another wsm building this env")
            lock = key_lock(layout, key)
            lock.acquire()
    except OSError as exc:  # the lock cannot be made: a full or read-only cache
        reason = _cannot_write(layout, exc)
        progress("failed", reason)
        raise EnvBuildError(reason, (), None, key) from None
    try:
        if layout.is_complete(key):
            progress("done", "built by another wsm, reused")
            return False
        store.clean_stale_builds(layout, holding_key=key)
        try:
            _build_locked(recipe, layout, installer, progress, cancel or Cancel(), hidden_env)
        except OSError as exc:  # the cache is full or read-only: its log included
            raise EnvBuildError(_cannot_write(layout, exc), (), None, key) from None
        progress("done", "built")
        return True
    except EnvBuildError as exc:
        progress("failed", exc.reason)
        raise
    finally:
        lock.release()


def _cannot_write(layout: CacheLayout, exc: OSError) -> str:
    """One line for a cache that cannot be written (full, read-only, no permission)."""
    where = exc.filename or layout.root
    return f"cannot write the environment cache: {where}: {exc.strerror or exc}"


def _build_locked(
    recipe: EnvRecipe,
    layout: CacheLayout,
    installer: Installer,
    progress: _Progress,
    cancel: Cancel,
    hidden_env: FrozenSet[str] = frozenset(),
) -> None:
    layout.private(layout.logs)
    layout.private(layout.app_data)
    log_path = layout.log(recipe.key)
    build_dir = store.new_build_dir(layout, recipe.key)
    try:
        log_fd = open_private(log_path, os.O_WRONLY | os.O_TRUNC)
        with open(log_fd, "w", encoding="utf-8", errors="replace") as log:
            log.write(f"wsm {__version__}: building env {recipe.key} in {build_dir}\n")
            log.write(f"interpreter: {recipe.interpreter.path} ({recipe.interpreter.version})\n")
            progress("step", "creating virtualenv")
            _create_virtualenv(recipe, layout, build_dir, log, log_path)
            python = str(build_dir / "bin" / "python")
            if recipe.locked:
                progress("step", recipe.install_step())
                argv, extra_env = _locked_command(recipe, layout, python, build_dir)
                _install(
                    recipe,
                    installer,
                    python,
                    log,
                    log_path,
                    progress,
                    cancel,
                    hidden_env,
                    argv=argv,
                    extra_env=extra_env,
                )
            elif recipe.requirement_count or recipe.inputs["requirements_file"]:
                progress("step", recipe.install_step())
                _install(recipe, installer, python, log, log_path, progress, cancel, hidden_env)
            progress("step", "finishing")
            marker = {
                "key": recipe.key,
                "created": time.time(),
                "interpreter": recipe.interpreter.identity(),
                "requirements": redact_data(recipe.inputs["requirements"]),
                "requirements_file": recipe.inputs["requirements_file"],
                "pip_args": redact_data(recipe.inputs["pip_args"]),
                "installer": recipe.installer,
                "source": recipe.source,
                "project": str(recipe.project) if recipe.project else None,
                "lock": str(recipe.lock) if recipe.lock else None,
                "inputs": redact_data(recipe.inputs),
                "build_seconds": round(time.monotonic() - progress.started, 3),
                "size_bytes": store.dir_size(build_dir),
                "wsm_version": __version__,
            }
            store.publish(layout, recipe.key, build_dir, marker)
            log.write("complete\n")
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise


class _ThreadLogHandler(logging.Handler):
    """virtualenv logs through `logging`; keep this thread's records in this build's log."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(logging.DEBUG)
        self._stream = stream
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            self._stream.write(f"virtualenv: {redact(record.getMessage())}\n")


# A requirements env gets pip and setuptools from virtualenv's embedded wheels (pip installs
# into it). An env from a lock holds exactly the locked set: no seed packages, uv installs.
_SEED_BUNDLED = ("--pip", "bundle", "--setuptools", "bundle")
_SEED_NONE = ("--no-seed",)


def _create_virtualenv(
    recipe: EnvRecipe, layout: CacheLayout, dest: Path, log: IO[str], log_path: Path
) -> None:
    """virtualenv's Python API, offline: pip and setuptools from its embedded wheels."""
    import virtualenv

    argv = [
        str(dest),
        "--python",
        recipe.interpreter.path,
        "--no-download",
        "--no-periodic-update",
        "--app-data",
        str(layout.app_data),
        *(_SEED_NONE if recipe.locked else _SEED_BUNDLED),
        "--activators",
        "bash,python",
        "--no-vcs-ignore",
    ]
    log.write(f"virtualenv {seed_version()} {' '.join(redact_argv(argv))}\n")
    log.flush()
    handler = _ThreadLogHandler(log)
    logger = logging.getLogger("virtualenv")
    logger.addHandler(handler)
    try:
        virtualenv.cli_run(argv, setup_logging=False)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        text = redact(str(exc)).strip().splitlines()
        reason = text[-1] if text else type(exc).__name__
        log.write(f"virtualenv failed: {redact(repr(exc))}\n")
        raise EnvBuildError(
            f"creating the virtualenv failed: {reason}", text[-TAIL_LINES:], log_path, recipe.key
        ) from None
    finally:
        logger.removeHandler(handler)


def _locked_command(
    recipe: EnvRecipe, layout: CacheLayout, python: str, build_dir: Path
) -> Tuple[List[str], Dict[str, str]]:
    """uv's argv and variables for an exact install from a lock into ``build_dir``."""
    tool = uv.UvInstaller()
    if not tool.available():
        raise EnvBuildError(
            f"{recipe.lock} needs uv to install it exactly, and uv is not installed "
            "(pip install uv, beside wsm)",
            (),
            None,
            recipe.key,
        )
    assert recipe.project is not None and recipe.lock is not None
    if recipe.source == "uv.lock":
        argv = tool.sync_command(python, recipe.project, recipe.extras, recipe.groups)
    else:
        argv = tool.pylock_command(python, recipe.lock, recipe.extras, recipe.groups)
    env = {
        # uv's project environment is the build folder, never the team's `.venv`.
        "UV_PROJECT_ENVIRONMENT": str(build_dir),
        "UV_PYTHON_DOWNLOADS": "never",
        "NO_COLOR": "1",
    }
    if not os.environ.get("UV_CACHE_DIR"):
        # uv links installed files from its cache: one cache beside the envs lets them share
        # disk (hard links need one file system).
        env["UV_CACHE_DIR"] = str(layout.private(layout.root / "uv"))
    return argv, env


def _installer_env(hidden: FrozenSet[str] = frozenset()) -> dict:
    """wsm's environment for pip, without what would leak wsm's own packages and without
    wsm's secrets (``hidden``): a build runs the setup code of every requirement."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV and k not in hidden}
    env.update(PIP_NO_INPUT="1", PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _install(
    recipe: EnvRecipe,
    installer: Installer,
    python: str,
    log: IO[str],
    log_path: Path,
    progress: _Progress,
    cancel: Cancel,
    hidden_env: FrozenSet[str] = frozenset(),
    argv: Optional[List[str]] = None,
    extra_env: Optional[Dict[str, str]] = None,
) -> None:
    if cancel.event.is_set():
        raise EnvBuildError("build cancelled: wsm is shutting down", (), log_path, recipe.key)
    name = "uv" if argv is not None else installer.name
    if argv is None:
        argv = installer.command(python, recipe.install_args)
    env = _installer_env(hidden_env)
    env.update(extra_env or {})
    log.write("$ " + " ".join(redact_argv(argv)) + f"\n  (in {recipe.cwd})\n")
    log.flush()
    tail: Deque[str] = collections.deque(maxlen=TAIL_LINES)
    errors: List[str] = []
    diagnostics: List[str] = []  # uv's error, cause and hint lines, made into one line
    # The installer runs under the guard (envs/guard.py): it and the build backends it
    # starts die with the manager, even when the manager is SIGKILLed mid-install. The
    # guard's lifeline is this pipe's read end; only we hold the write end.
    lifeline_r, lifeline_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", guard.__file__, str(lifeline_r), "--", *argv],
            cwd=str(recipe.cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            pass_fds=(lifeline_r,),
        )
    except OSError as exc:
        os.close(lifeline_w)
        raise EnvBuildError(
            f"{name} could not start: {redact(str(exc))}", (), log_path, recipe.key
        ) from None
    finally:
        os.close(lifeline_r)
    assert proc.stdout is not None
    cancel.track(proc)
    try:
        with proc:
            for line in proc.stdout:
                line = redact(line)  # pip masks its own index URLs, not every error it quotes
                log.write(line)
                text = line.rstrip()
                if text:
                    tail.append(text)
                    if text.lstrip().startswith(("ERROR:", "error:", "×")):
                        errors.append(text.strip())
                    if name == "uv" and text.lstrip().startswith(uv.DIAGNOSTIC_PREFIXES):
                        diagnostics.append(text)
                    progress("output", text)
            status = proc.wait()
    finally:
        os.close(lifeline_w)  # the guard, if still running, kills its tree now
    cancel.untrack(proc)
    if cancel.event.is_set():
        log.write("cancelled\n")
        raise EnvBuildError(
            "build cancelled: wsm is shutting down", tuple(tail), log_path, recipe.key
        )
    log.write(f"{name} exited with status {status}\n")
    if status != 0:
        first_error = errors[0] if errors else f"exited with status {status}"
        first_error = uv.reason(diagnostics) or first_error
        raise EnvBuildError(
            f"{name} install failed: {first_error}", tuple(tail), log_path, recipe.key
        )
