"""Where the environment cache lives on disk, and its layout.

``<cache>/envs/<key>`` is a symlink to the real environment in ``<cache>/envs/.builds/``:
a virtualenv cannot be renamed after it is built (pip's console scripts carry absolute
shebangs), so a finished build is published by atomically replacing that symlink instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from workspace_manager.private_files import private_dir

MARKER = "wsm-env.json"  # written inside a build when it is complete, before it is published


def default_cache_dir() -> Path:
    """``$WSM_CACHE_DIR``, else ``$XDG_CACHE_HOME/wsm``, else ``~/.cache/wsm``."""
    override = os.environ.get("WSM_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "wsm"
    return Path.home() / ".cache" / "wsm"


@dataclass(frozen=True)
class CacheLayout:
    root: Path

    @classmethod
    def at(cls, root: Optional[Path] = None) -> CacheLayout:
        return cls(Path(os.path.abspath(root if root is not None else default_cache_dir())))

    @property
    def envs(self) -> Path:
        return self.root / "envs"

    @property
    def builds(self) -> Path:
        return self.envs / ".builds"

    @property
    def locks(self) -> Path:
        return self.envs / ".locks"

    @property
    def usage(self) -> Path:
        return self.envs / ".usage"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def app_data(self) -> Path:
        """virtualenv's app-data (its unpacked embedded wheels), kept with our cache."""
        return self.root / "virtualenv"

    @property
    def interpreters(self) -> Path:
        return self.root / "interpreters.json"

    @property
    def lock_parts(self) -> Path:
        """A uv.lock's parts by project, by the lock's content (envs/lockpart.py)."""
        return self.root / "lock-parts"

    @property
    def py_info(self) -> Path:
        return self.root / "py_info"

    def private(self, folder: Path) -> Path:
        """Make ``folder`` (under the root) and the root 0700, tightening them if an older
        wsm made them looser; raises OSError."""
        return private_dir(folder, self.root)

    def env(self, key: str) -> Path:
        """The published name of an environment (a symlink once it is complete)."""
        return self.envs / key

    def python(self, key: str) -> Path:
        return self.env(key) / "bin" / "python"

    def marker(self, key: str) -> Path:
        return self.env(key) / MARKER

    def lock(self, key: str) -> Path:
        return self.locks / f"{key}.lock"

    def log(self, key: str) -> Path:
        return self.logs / f"{key}.log"

    def usage_file(self, key: str) -> Path:
        return self.usage / f"{key}.json"

    def is_complete(self, key: str) -> bool:
        """One stat: the marker is reachable through the published name only when complete."""
        return os.path.isfile(self.marker(key))
