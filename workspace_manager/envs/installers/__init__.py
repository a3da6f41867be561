"""Installers that put requirements into a built virtualenv: pip, or uv where it is installed.

Each is a small module satisfying `Installer`; `choose` picks one for an environment and
says why when it cannot honour the request.
"""

from __future__ import annotations

from typing import List, Optional, Protocol, Sequence, Tuple


class Installer(Protocol):
    name: str

    def available(self) -> bool:
        """Whether this installer can run on this machine."""
        ...

    def command(self, python: str, args: Sequence[str]) -> List[str]:
        """The argv that installs ``args`` (requirements and options) into ``python``'s env."""
        ...


def get(name: str) -> Installer:
    from workspace_manager.envs.installers import pip, uv

    if name == "uv":
        return uv.UvInstaller()
    return pip.PipInstaller()


def choose(requested: str) -> Tuple[Installer, Optional[str]]:
    """The installer to use and a warning when it is not the one requested."""
    if requested == "uv":
        uv_installer = get("uv")
        if uv_installer.available():
            return uv_installer, None
        return get("pip"), "installer: uv requested but uv is not installed; using pip"
    return get("pip"), None
