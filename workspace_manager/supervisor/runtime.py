"""The private runtime directory: where a manager keeps its sockets and how the CLI finds it.

Layout: ``<root>/<key>/`` per manager, ``key`` a short hash of what the manager runs, so
several managers for different workspaces coexist on one machine.

Every CLI command that looks for a manager imports this module (`wsm status`, `logs`, `down`
...), so it imports little at the top: what writes records (`private_files`), the process
table and pathlib are imported by the functions that need them. Finding a manager reads one
file with os.path (pathlib costs ~5 ms to import, more than the lookup).
"""

from __future__ import annotations

import json
import os
import stat
from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING; type checkers take any name TYPE_CHECKING as true
if TYPE_CHECKING:  # typing too: every command that looks for a manager imports this module
    from pathlib import Path
    from typing import Any, Dict, Iterator, NamedTuple, Optional, Union

    #: what names a folder: a Path from the manager's side, a str from the CLI's (for the
    #: type checkers only: a Union with a forward reference compiles it, ~1 ms at import)
    Folder = Union[str, os.PathLike[str]]

RECORD_NAME = "manager.json"


class RuntimeDirError(Exception):
    """The runtime directory is unsafe to use (owned by someone else, or open to others)."""


def runtime_root() -> Path:
    """``$XDG_RUNTIME_DIR/wsm`` when set (systemd's per-user tmpfs), else ``/tmp/wsm-<uid>``."""
    from pathlib import Path

    return Path(_root())


def _root() -> str:
    """`runtime_root()` as a str, without pathlib."""
    override = os.environ.get("WSM_RUNTIME_DIR")
    if override:
        return override
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "wsm")
    import tempfile  # here: most machines have XDG_RUNTIME_DIR

    return os.path.join(tempfile.gettempdir(), f"wsm-{os.getuid()}")


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` 0700, or check an existing one is ours and closed to others."""
    if not os.path.lexists(path):
        from workspace_manager.private_files import private_dir

        private_dir(path.parent)  # missing parents 0700 too, not 0777 & umask
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeDirError(f"{path}: not a directory")
    if st.st_uid != os.getuid():
        raise RuntimeDirError(f"{path}: owned by uid {st.st_uid}, not by us ({os.getuid()})")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def manager_key(identity: str) -> str:
    """A short, stable name for a manager; ``identity`` is e.g. the workspace file's absolute
    path. The first 12 hex digits of its SHA-256 (FIPS 180-4)."""
    from workspace_manager.digest import sha256  # hashlib would load OpenSSL (~5 ms)

    return sha256(identity.encode()).hexdigest()[:12]


def identity_target(identity: str) -> Dict[str, Any]:
    """What a manager identity names, in plain words for people and JSON: ``{"workspace":
    path}``, ``{"python_file": path, "attribute": str|None}`` or ``{"module_name", "attribute",
    "working_directory"}``; ``{"list": ...}`` (the same, under ``list``) for a one-shot
    `wsm list`, and ``{"serve": LISTEN, ...}`` for `wsm serve`. The identity strings are made
    by `cli.targets.identity` (and prefixed by `wsm list` and `wsm serve`)."""
    kind, _, rest = identity.partition(":")
    if kind == "workspace":
        return {"workspace": rest}
    if kind == "file":
        path, _, attribute = rest.rpartition("#")
        return {"python_file": path, "attribute": attribute or None}
    if kind == "module":
        name, _, rest = rest.partition("#")
        attribute, _, cwd = rest.partition("@")
        return {"module_name": name, "attribute": attribute or None, "working_directory": cwd}
    if kind == "list":
        inner, _, _pid = rest.rpartition(":")
        return {"list": identity_target(inner)}
    if kind == "serve":  # serve:LISTEN:IDENTITY, and LISTEN has colons of its own
        for marker in (":workspace:", ":file:", ":module:"):
            at = rest.rfind(marker)
            if at >= 0:
                return {"serve": rest[:at], **identity_target(rest[at + 1 :])}
    return {"identity": identity}


def manager_dir(key: str) -> Path:
    return runtime_root() / key


def _manager_dir(key: str) -> str:
    """`manager_dir(key)` as a str, without pathlib."""
    return os.path.join(_root(), key)


if TYPE_CHECKING:

    class _RecordFields(NamedTuple):
        pid: int
        key: str
        identity: str
        control: str  # "unix:PATH"
        secret: str
        started_at: float
        version: str
        health: Optional[str] = None

else:  # the same tuple at run time, without typing (~5 ms of every command's start)
    _RecordFields = namedtuple(
        "_RecordFields",
        "pid key identity control secret started_at version health",
        defaults=(None,),
    )


class ManagerRecord(_RecordFields):
    """What ``manager.json`` says about a running manager; the CLI's way in.

    A named tuple, not a dataclass: every command that looks for a manager reads one, and
    importing `dataclasses` (it imports `inspect`) costs ~10 ms."""

    __slots__ = ()

    def write(self, directory: Path) -> None:
        """Replace the record atomically (0600); RuntimeDirError when it cannot be written
        (a full or read-only filesystem), naming the file."""
        from workspace_manager.private_files import write_private

        path = directory / RECORD_NAME
        try:
            write_private(path, json.dumps(self._asdict()))
        except OSError as exc:
            raise RuntimeDirError(f"cannot write {path}: {exc.strerror or exc}") from None

    @classmethod
    def read(cls, directory: Folder) -> Optional[ManagerRecord]:
        try:
            with open(os.path.join(directory, RECORD_NAME), encoding="utf-8") as f:
                data = json.load(f)
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def is_alive(self) -> bool:
        """The manager's process runs (a zombie does not)."""
        from workspace_manager.loader import proctable

        alive = proctable.alive(self.pid)  # /proc: the CLI needs no psutil (~17 ms import)
        if alive is not None:
            return alive
        import psutil

        try:
            proc = psutil.Process(self.pid)
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def running_managers() -> Iterator[ManagerRecord]:
    """Every manager whose record names a live process; stale directories are removed."""
    root = _root()
    try:
        names = sorted(os.listdir(root))
    except OSError:  # none yet, or not a folder
        return
    for name in names:
        entry = os.path.join(root, name)
        if name == "sdk" or not os.path.isdir(entry):
            continue
        record = ManagerRecord.read(entry)
        if record is None:
            continue
        if record.is_alive():
            yield record
        else:
            import shutil

            shutil.rmtree(entry, ignore_errors=True)


def find_manager(key: str) -> Optional[ManagerRecord]:
    record = ManagerRecord.read(_manager_dir(key))
    if record is not None and record.is_alive():
        return record
    return None


class ManagerLock:
    """An exclusive lock on ``<dir>/manager.lock`` held for a manager's whole life, so two
    `wsm up` started at once for one workspace cannot both run (the record alone races)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "manager.lock"
        self._fd: Optional[int] = None

    def acquire(self, patience: float = 1.0) -> bool:
        """Take the lock; False when a manager holds it. A `wsm state prune` holds it shared
        for the moment it removes a folder, so a busy lock is retried for ``patience`` seconds
        before a live record says another manager runs."""
        import fcntl
        import time

        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                record = ManagerRecord.read(self.path.parent)
                if time.monotonic() > deadline or (record is not None and record.is_alive()):
                    os.close(fd)
                    return False
                time.sleep(0.05)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
