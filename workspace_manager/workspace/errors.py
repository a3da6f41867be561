"""Problems found in a workspace file, reported as `PATH:LINE:COLUMN: message`.

One exception carries every problem at once, so `wsm validate` can show them all in one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workspace; line and column are 1-based, None when unknown."""

    path: str
    line: Optional[int]
    column: Optional[int]
    message: str

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}:{self.column or 1}: {self.message}"

    def sort_key(self) -> Tuple[str, int, int, str]:
        return (self.path, self.line or 0, self.column or 0, self.message)


class WorkspaceError(Exception):
    """The workspace cannot be used; `problems` lists every reason found, in file order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: List[Problem] = sorted(set(problems), key=Problem.sort_key)
        super().__init__("\n".join(str(p) for p in self.problems))
