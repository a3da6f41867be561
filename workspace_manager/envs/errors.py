"""The one error an environment can end in: shown as a location's error, one line plus details."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple


class EnvBuildError(Exception):
    """An environment could not be found or built.

    ``str()`` is one line a person can act on (pip's own last ``ERROR:`` line when there is one,
    and where the full log is); ``tail`` keeps the last lines of the installer's output and
    ``details()`` joins everything for a location's error message.
    """

    def __init__(
        self,
        reason: str,
        tail: Sequence[str] = (),
        log_path: Optional[Path] = None,
        key: Optional[str] = None,
    ) -> None:
        self.reason = reason
        self.tail: Tuple[str, ...] = tuple(tail)
        self.log_path = log_path
        self.key = key
        super().__init__(self._one_line())

    def _one_line(self) -> str:
        line = self.reason
        if self.log_path is not None:
            line += f" (full log: {self.log_path})"
        return line

    def details(self) -> str:
        """The one line, then the installer's last lines: what a location's error shows."""
        if not self.tail:
            return str(self)
        return str(self) + "\n" + "\n".join(self.tail)
