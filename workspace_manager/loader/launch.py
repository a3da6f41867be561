"""How the manager starts a loader: the argv, and the SDK directory that argv points at.

The child gets `<runtime>/sdk/` on sys.path, holding only a `workspace_manager` symlink to the
installed package, so it can import the SDK, the protocol and the loader, but none of wsm's own
dependencies from the manager's site-packages.
"""

from __future__ import annotations

import os
from typing import List

import workspace_manager

_CODE = "import sys; sys.path.insert(0, {sdk_dir!r}); from workspace_manager.loader.main import main; main()"


def package_dir() -> str:
    """The installed `workspace_manager` package folder (symlinks resolved)."""
    return os.path.dirname(os.path.realpath(workspace_manager.__file__))


def bootstrap_argv(python: str, sdk_dir: str) -> List[str]:
    """`<python> -c "...main()"`; the bootstrap JSON goes to the child's stdin, never argv."""
    return [python, "-c", _CODE.format(sdk_dir=sdk_dir)]


def make_sdk_dir(runtime_dir: str) -> str:
    """Create `<runtime_dir>/sdk/` (0700) holding `workspace_manager -> <package>`; return it.

    Idempotent, and safe against a concurrent caller: the link is made under a temporary
    name and renamed into place.
    """
    sdk_dir = os.path.join(runtime_dir, "sdk")
    os.makedirs(sdk_dir, mode=0o700, exist_ok=True)
    os.chmod(sdk_dir, 0o700)
    target = package_dir()
    link = os.path.join(sdk_dir, "workspace_manager")
    try:
        if os.readlink(link) == target:
            return sdk_dir
    except OSError:
        pass
    tmp = f"{link}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return sdk_dir
