"""Files and folders that only wsm's user may read: folders 0700, files 0600 (SPEC section 6).

Modes are given when a path is created (``mkdir(mode)``, ``open(O_CREAT, mode)``), never set
by a ``chmod`` afterwards, so there is no moment when another user can open what is being
written. The process umask is left alone: a location and the installers inherit it, and the
files they make are theirs to decide. A folder or file of wsm's found looser than that (made
by an older wsm) is tightened when wsm opens it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Optional, Union

DIR_MODE = 0o700
FILE_MODE = 0o600

PathLike = Union[str, "os.PathLike[str]"]


def private_dir(path: PathLike, root: Optional[PathLike] = None) -> Path:
    """Make ``path`` and any missing parent folders 0700; tighten ``path`` itself, and every
    folder from ``root`` down to it, when one exists with group or other bits and is ours.
    Other existing parents (such as ``~/.cache``) are the user's to decide.

    Raises OSError as ``os.mkdir`` does (ENOSPC, EACCES, ...).
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            pass
    chain = [path]
    if root is not None:
        top = Path(root)
        probe = path
        while probe != top and probe != probe.parent and top in probe.parents:
            probe = probe.parent
            chain.append(probe)
    for folder in chain:
        st = os.stat(folder)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.chmod(folder, DIR_MODE)
    return path


def open_private(path: PathLike, flags: int) -> int:
    """``os.open(path, flags | O_CREAT, 0600)``; an existing file of ours with looser bits
    is tightened through the descriptor. Returns the descriptor; raises OSError."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private(path: PathLike, data: Union[str, bytes]) -> None:
    """Replace ``path`` atomically with ``data`` in a 0600 file (temporary name, then
    ``os.replace``). A failed write (a full disk) leaves the old file and no temporary."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
