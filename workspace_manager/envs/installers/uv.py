"""uv (``uv pip install --python <env python>``), when the ``uv`` executable is on PATH."""

from __future__ import annotations

import shutil
from typing import List, Optional, Sequence


class UvInstaller:
    name = "uv"

    def __init__(self) -> None:
        self._exe: Optional[str] = shutil.which("uv")

    def available(self) -> bool:
        return self._exe is not None

    def command(self, python: str, args: Sequence[str]) -> List[str]:
        assert self._exe is not None
        return [self._exe, "pip", "install", "--python", python, *args]
