"""uv (``uv pip install --python <env python>``), when the ``uv`` executable is installed
beside wsm's interpreter (``pip install uv``) or on PATH."""

from __future__ import annotations

import os
import shutil
import sys
from typing import List, Optional, Sequence


def find_uv() -> Optional[str]:
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "uv")
    return beside if os.access(beside, os.X_OK) else shutil.which("uv")


class UvInstaller:
    name = "uv"

    def __init__(self) -> None:
        self._exe: Optional[str] = find_uv()

    def available(self) -> bool:
        return self._exe is not None

    def command(self, python: str, args: Sequence[str]) -> List[str]:
        assert self._exe is not None
        return [self._exe, "pip", "install", "--python", python, *args]
