"""The loader's half of a local location's heartbeat: a counter in a page of shared memory.

The manager keeps one heartbeat file in its private runtime folder and gives each local
loader one page of it (bootstrap ``heartbeat``: path, byte offset, seconds). The loader maps
only that page (mmap(2), MAP_SHARED) and its server loop adds one to the counter at least
every ``seconds`` (loader/server.py); the manager reads every counter on one timer per
period (supervisor/heartbeats.py). A loader that is stopped (SIGSTOP), or whose interpreter
is held by a thread that never lets go of the GIL, stops counting and misses its heartbeats,
as it stopped answering pings; an idle one costs a wake-up of its main thread per period
instead of a ping's receive, decode, answer and send in both processes.

Standard library only, CPython >= 3.9, like the rest of the loader.
"""

from __future__ import annotations

import mmap
import os

#: The counter wraps: the manager only asks whether it changed.
MASK = 0xFFFFFFFF


class Beat:
    """One location's counter: the first 4 bytes of its own page of the heartbeat file."""

    def __init__(self, path: str, offset: int) -> None:
        """Map the page at byte `offset` of `path` (a multiple of the page size). Raises
        OSError or ValueError when it cannot (the bootstrap is then bad)."""
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._map = mmap.mmap(fd, mmap.ALLOCATIONGRANULARITY, offset=offset)
        finally:
            os.close(fd)  # the mapping keeps the page; mmap keeps its own descriptor
        self._words = memoryview(self._map).cast("I")
        self._count = self._words[0]

    def bump(self) -> None:
        """One more turn of the server loop: visible to the manager at once."""
        self._count = (self._count + 1) & MASK
        self._words[0] = self._count
