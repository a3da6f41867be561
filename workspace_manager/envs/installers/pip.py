"""pip, run as ``<env>/bin/python -m pip`` (the env's own pip, seeded by virtualenv)."""

from __future__ import annotations

from typing import List, Sequence


class PipInstaller:
    name = "pip"

    def available(self) -> bool:
        return True  # virtualenv seeds pip into every env from its embedded wheels

    def command(self, python: str, args: Sequence[str]) -> List[str]:
        return [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *args]
