"""Per-location log files: size-capped, rotated, kept after shutdown for `wsm logs`.

A log never stops a location: when a write, an open or a rotation fails (a full disk, a
quota, an I/O error, a read-only remount), the line is dropped and counted, the manager is
told once, and writing is tried again at the next line after `RETRY_SECONDS`. The pipes
are drained all along, so the location never blocks in `print`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Optional

from workspace_manager.private_files import open_private, private_dir
from workspace_manager.workspace.names import checked_name

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3
#: After a failed write, lines are dropped without a system call for this long.
RETRY_SECONDS = 1.0


def state_root() -> Path:
    """``$WSM_STATE_DIR``, else ``$XDG_STATE_HOME/wsm``, else ``~/.local/state/wsm``."""
    override = os.environ.get("WSM_STATE_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "wsm"


def log_dir(key: str) -> Path:
    return state_root() / key / "logs"


def log_path(key: str, location: str) -> Path:
    """The log file of `location`; UnsafeNameError for a name that is not a plain file name
    (workspace validation refuses those first; this keeps any other path out of the folder)."""
    return log_dir(key) / f"{checked_name(location)}.log"


class LocationLog:
    """Appends lines; when the file passes ``max_bytes`` it becomes ``.1`` and older ones shift.

    ``write`` never raises. ``dropped`` counts the lines lost to failed writes;
    ``on_trouble(text)`` hears of the first failure of a spell and of the recovery.
    Folders are made 0700 and files 0600 (see `workspace_manager.private_files`).
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        on_trouble: Optional[Callable[[str], None]] = None,
        clock: Callable[[], float] = time.monotonic,
        root: Optional[Path] = None,
    ) -> None:
        self.path = path
        self.root = root  # wsm's own folder above the log's: made and kept 0700 as well
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped = 0  # lines lost since this log was made
        self._on_trouble = on_trouble or (lambda text: None)
        self._clock = clock
        self._fd: Optional[int] = None
        self._size = 0
        self._failing: Optional[str] = None  # the reason, while writes fail
        self._dropped_in_spell = 0
        self._retry_at = 0.0
        self._partial = False  # a failed write left half a line in the file

    def prepare(self) -> None:
        """Open the file now, e.g. in a worker thread before the location's first line, so
        the event loop never waits for its folder and file to be made (~1-5 ms each, on
        the loop at each of 100 starts). Never raises: a failure is left to the next write,
        which reports it. Call it while nothing else writes to this log."""
        try:
            self._open()
        except OSError:
            pass

    def _open(self) -> int:
        if self._fd is None:
            private_dir(self.path.parent, self.root)
            fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(fd).st_size
            self._fd = fd
            _tighten_backups(self.path, self.backups)
        return self._fd

    def write(self, data: bytes) -> bool:
        """Append ``data`` (whole lines); False when it was dropped."""
        if self._failing is not None and self._clock() < self._retry_at:
            self._drop()
            return False
        try:
            if self._failing is not None:
                self._append(self._recovery_note())
                self._recovered()
            self._append(data)
        except OSError as exc:
            self._fail(exc)
            self._drop()
            return False
        if self._size >= self.max_bytes:
            try:
                self._rotate()
            except OSError as exc:  # the line is in; the next open retries the rotation
                self._fail(exc)
        return True

    def _append(self, data: bytes) -> None:
        fd = self._fd if self._fd is not None else self._open()
        if self._partial:
            data = b"\n" + data
        n = os.write(fd, data)  # one call for a whole line, but for a short write
        self._size += n
        if n < len(data):
            view = memoryview(data)[n:]
            while view:
                try:
                    n = os.write(fd, view)
                except OSError:
                    self._partial = True  # half a line is in the file
                    raise
                self._size += n
                view = view[n:]
        self._partial = False

    def _recovery_note(self) -> bytes:
        return f"--- wsm: {self._dropped_in_spell} line(s) dropped: {self._failing}\n".encode()

    def _drop(self) -> None:
        self.dropped += 1
        self._dropped_in_spell += 1

    def _fail(self, exc: OSError) -> None:
        self._retry_at = self._clock() + RETRY_SECONDS
        self.close()  # reopened on retry: the folder may have been replaced meanwhile
        if self._failing is None:
            self._failing = exc.strerror or str(exc)
            self._on_trouble(
                f"cannot write {self.path}: {self._failing}; "
                "dropping its lines (counted) until it can"
            )

    def _recovered(self) -> None:
        self._on_trouble(
            f"writing {self.path} again; {self._dropped_in_spell} line(s) were dropped"
        )
        self._failing = None
        self._dropped_in_spell = 0

    def _rotate(self) -> None:
        self.close()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def _tighten_backups(path: Path, backups: int) -> None:
    """Backups rotated by an older wsm may be 0644: make them 0600 like the live file."""
    for i in range(1, backups + 1):
        try:
            backup = path.with_name(f"{path.name}.{i}")
            if backup.stat().st_mode & 0o077:
                os.chmod(backup, 0o600)
        except OSError:
            pass
