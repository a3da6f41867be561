"""How much disk the cached environments take, and how much of it they share.

uv installs a package by hard-linking its files from uv's cache (``<cache>/uv``, on the same
file system as the envs), so two envs that lock the same wheel hold the same inodes, and the
sum of their sizes overstates what they take. What is measured, for each environment:

- **size**: the blocks allocated (``st_blocks`` x 512, what ``du`` counts) to every distinct
  inode under the environment's folder (files, folders, symlinks; a file with two names in
  the env counted once). Symlinks are not followed: a virtualenv's ``bin/python`` is a link
  to its base interpreter, which is not part of the env.
- **shared**: the part of the size in files that also have a name outside this environment,
  i.e. whose hard-link count (``st_nlink``) exceeds the names the walk found inside it: a
  link in uv's cache, in another environment, or anywhere else on that file system. Removing
  the environment does not free them.
- **own** (size minus shared): what removing the environment frees.
- **shared with**: the other measured environments holding a name of one of its inodes.

Across all of them, ``total_bytes`` counts each inode once: the disk they take together
(uv's cache not included), against ``sum_bytes``, the sum of their sizes.

Cost: one ``lstat`` per entry, about 5 µs in Python (a 7,500-file env: ~40 ms on this
machine); the walk reads nothing inside files. Threads make it slower (the GIL), so it is one
walk after the other. Reads only: nothing is written, so it works on a read-only cache.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

_Inode = Tuple[int, int]  # (st_dev, st_ino)
_BLOCK = 512  # st_blocks' unit on Linux and macOS (POSIX leaves it open; both use 512)


@dataclass(frozen=True)
class DiskUsage:
    """One environment's disk use, in bytes of allocated blocks (see the module's text)."""

    size_bytes: int
    shared_bytes: int
    entries: int  # files, folders and symlinks walked
    shared_with: Tuple[str, ...]  # keys of the other measured envs holding one of its inodes

    @property
    def own_bytes(self) -> int:
        """What removing the environment frees."""
        return self.size_bytes - self.shared_bytes


@dataclass(frozen=True)
class CacheUsage:
    envs: Dict[str, DiskUsage]
    total_bytes: int  # every inode under every measured env counted once

    @property
    def sum_bytes(self) -> int:
        return sum(u.size_bytes for u in self.envs.values())


@dataclass
class _Walk:
    single_bytes: int = 0  # inodes with one name (or folders): this env's alone
    entries: int = 0
    # inodes with several names: [st_nlink, blocks, names found in this env]
    linked: Dict[_Inode, List[int]] = field(default_factory=dict)


def _walk(root: Path) -> _Walk:
    """Every entry under ``root`` (which may itself be a symlink to the real folder); entries
    that vanish or cannot be read meanwhile (a prune, a permission) are skipped."""
    out = _Walk()
    try:
        top = os.stat(root)
    except OSError:
        return out
    out.single_bytes += top.st_blocks * _BLOCK
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    out.entries += 1
                    if stat.S_ISDIR(st.st_mode):
                        # a folder's link count is its subfolders, not other names
                        out.single_bytes += st.st_blocks * _BLOCK
                        stack.append(entry.path)
                    elif st.st_nlink > 1:
                        seen = out.linked.get((st.st_dev, st.st_ino))
                        if seen is None:
                            inode = (st.st_dev, st.st_ino)
                            out.linked[inode] = [st.st_nlink, st.st_blocks * _BLOCK, 1]
                        else:
                            seen[2] += 1
                    else:
                        out.single_bytes += st.st_blocks * _BLOCK
        except OSError:
            continue
    return out


def measure(envs: Mapping[str, Path]) -> CacheUsage:
    """Disk use of each environment in ``envs`` (key -> folder), and of all together.

    A folder that does not exist measures 0. Never raises for what it cannot read.
    """
    walks = {key: _walk(Path(path)) for key, path in envs.items()}
    owners: Dict[_Inode, List[str]] = {}
    total = 0
    for key, walk in walks.items():
        total += walk.single_bytes
        for inode, (_nlink, blocks, _names) in walk.linked.items():
            holders = owners.setdefault(inode, [])
            if not holders:
                total += blocks
            holders.append(key)
    usage: Dict[str, DiskUsage] = {}
    for key, walk in walks.items():
        shared = 0
        size = walk.single_bytes
        others = set()
        for inode, (nlink, blocks, names) in walk.linked.items():
            size += blocks
            if nlink > names:
                shared += blocks
            others.update(owners[inode])
        others.discard(key)
        usage[key] = DiskUsage(size, shared, walk.entries, tuple(sorted(others)))
    return CacheUsage(usage, total)
