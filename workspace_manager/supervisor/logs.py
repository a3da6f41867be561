"""Per-location log files: size-capped, rotated, kept after shutdown for `wsm logs`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Optional

from workspace_manager.workspace.names import checked_name

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3


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
    """Appends lines; when the file passes ``max_bytes`` it becomes ``.1`` and older ones shift."""

    def __init__(
        self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._file: Optional[BinaryIO] = None
        self._size = 0

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab", buffering=0)
            self._size = self._file.tell()
        return self._file

    def write(self, data: bytes) -> None:
        f = self._open()
        f.write(data)
        self._size += len(data)
        if self._size >= self.max_bytes:
            self._rotate()

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
        if self._file is not None:
            self._file.close()
            self._file = None
