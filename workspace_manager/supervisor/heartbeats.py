"""Heartbeats of local locations through shared memory, read on one timer per period.

A ping per location per period cost an idle manager ~107 us of CPU each (a frame out, an
answer in, a loop wake-up, a future) and the location as much again: at 100 locations and
2 s heartbeats, half of the manager's idle CPU and all of the locations'. Instead the
manager keeps one file in its private runtime folder (mode 0600 in a 0700 folder) and gives
each local loader one page of it (bootstrap ``heartbeat``); the loader's server loop adds
one to the counter at the start of that page once a period, half-way between two looks
(loader/heartbeat.py, loader/server.py).
One timer per distinct `heartbeat_seconds` reads every watched counter on a grid of its
period: a counter that did not move since the previous look is a missed heartbeat, and
`MISSED` in a row mean the location hangs (SPEC section 4), as unanswered pings did. A
location whose connection has closed misses its heartbeats too, as its pings failed.

Each loader maps only its own page, so no location's counter can be moved by another's
mistake (processes of one user can always signal or trace each other: the file is not a
security boundary, the runtime folder's mode is). Remote locations, and a local one when the
file cannot be made, keep their pings (supervisor/location.py).

The manager's own stalls cannot be blamed on a location here: the counters move while the
manager is late, and each look compares with the previous one, however long ago it was.
"""

from __future__ import annotations

import asyncio
import math
import mmap
import os
import time
from collections import deque
from typing import Callable, Deque, Dict, List, Tuple

#: Heartbeats a location may miss in a row before it is considered hung (SPEC section 4).
MISSED = 3
#: Bytes of one location's page (mmap offsets must be multiples of it).
PAGE = mmap.ALLOCATIONGRANULARITY
#: Pages mapped at a time; the file grows by this many when they are all taken.
CHUNK_PAGES = 256
#: 4-byte words per page: slot i's counter is word i * WORDS of its chunk.
WORDS = PAGE // 4


class HeartbeatFile:
    """The manager's heartbeat file: one page per local location instance, handed out and
    taken back (`take`, `give_back`), read with `count`."""

    def __init__(self, path: str) -> None:
        """Create (or empty) `path`, mode 0600. Raises OSError."""
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self._maps: List[mmap.mmap] = []
        self._words: List[memoryview] = []
        # freed slots are reused oldest first: a process being killed may still write its
        # page for a moment, and a slot freed long ago is the one least likely to be written
        self._free: Deque[int] = deque()

    def take(self) -> int:
        """A free slot (its page zeroed by the file's growth or reused as it was: only
        changes count). Raises OSError when the file cannot grow."""
        if not self._free:
            chunk = len(self._maps)
            os.ftruncate(self._fd, (chunk + 1) * CHUNK_PAGES * PAGE)
            m = mmap.mmap(self._fd, CHUNK_PAGES * PAGE, offset=chunk * CHUNK_PAGES * PAGE)
            self._maps.append(m)
            self._words.append(memoryview(m).cast("I"))
            self._free.extend(range(chunk * CHUNK_PAGES, (chunk + 1) * CHUNK_PAGES))
        return self._free.popleft()

    def give_back(self, slot: int) -> None:
        self._free.append(slot)

    def offset(self, slot: int) -> int:
        """The byte offset of `slot`'s page, for the loader's bootstrap."""
        return slot * PAGE

    def count(self, slot: int) -> int:
        chunk, page = divmod(slot, CHUNK_PAGES)
        return self._words[chunk][page * WORDS]  # type: ignore[no-any-return]

    def close(self) -> None:
        for words in self._words:
            words.release()
        for m in self._maps:
            m.close()
        self._words, self._maps = [], []
        os.close(self._fd)
        try:
            os.unlink(self.path)
        except OSError:
            pass


class _Watched:
    __slots__ = ("count", "closed", "last", "missed", "hung")

    def __init__(
        self, count: Callable[[], int], closed: Callable[[], bool], hung: asyncio.Future
    ) -> None:
        self.count = count
        self.closed = closed
        self.last = count()
        self.missed = 0
        self.hung = hung


class HeartbeatWatch:
    """Reads the watched counters of each period on one timer of that period."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._watched: Dict[float, Dict[asyncio.Future, _Watched]] = {}
        self._tickers: Dict[float, asyncio.Task] = {}
        self.looks = 0  # timer wake-ups so far (tests guard the count)

    def watch(
        self, count: Callable[[], int], closed: Callable[[], bool], interval: float
    ) -> asyncio.Future:
        """A future that gets the reason (`missed 3 heartbeats (2s each)`) once `count()`
        has not moved, or `closed()` was true, at `MISSED` looks in a row, one look each
        `interval` seconds. Cancel it to stop watching."""
        loop = asyncio.get_running_loop()
        hung = loop.create_future()
        group = self._watched.setdefault(interval, {})
        group[hung] = _Watched(count, closed, hung)
        hung.add_done_callback(lambda fut: self._forget(interval, fut))
        if interval not in self._tickers:
            self._tickers[interval] = loop.create_task(self._tick(interval))
        return hung

    def _forget(self, interval: float, fut: asyncio.Future) -> None:
        group = self._watched.get(interval)
        if group is None:
            return
        group.pop(fut, None)
        if not group:  # nothing to watch at this period: no timer either
            del self._watched[interval]
            ticker = self._tickers.pop(interval, None)
            if ticker is not None:
                ticker.cancel()

    async def _tick(self, interval: float) -> None:
        clock = self.clock
        next_look = on_grid(clock() + interval, interval)
        while True:
            await asyncio.sleep(max(0.0, next_look - clock()))
            self.looks += 1
            self.look(interval)
            next_look += interval
            if next_look < clock():  # late: the next point of the grid, never a burst
                next_look = on_grid(clock(), interval)

    def look(self, interval: float) -> None:
        """One look at every counter watched at `interval`."""
        hung: List[Tuple[asyncio.Future, int]] = []
        for fut, w in list(self._watched.get(interval, {}).items()):
            now = w.count()
            if now != w.last and not w.closed():
                w.last, w.missed = now, 0
                continue
            w.last = now
            w.missed += 1
            if w.missed >= MISSED:
                hung.append((fut, w.missed))
        for fut, missed in hung:
            if not fut.done():
                fut.set_result(f"missed {missed} heartbeats ({interval:g}s each)")

    def close(self) -> None:
        for ticker in self._tickers.values():
            ticker.cancel()
        self._tickers.clear()


def on_grid(t: float, interval: float) -> float:
    """The first multiple of `interval` (seconds) at or after `t`: every timer of one period
    (the looks here, remote locations' pings, status memory samples) fires in the same turn
    of the loop, which wakes once per period for all of them, and a location's first look
    is at most one period after it got ready."""
    if interval <= 0:
        return t
    return math.ceil(t / interval) * interval


def loader_seconds(interval: float) -> float:
    """How often a loader counts when idle: once a period, half-way between two looks
    (loader/server.py), so it wakes as often as it was pinged, and a turn or a look late
    by less than half a period is no miss. A wake-up of an idle process costs ~90 us of CPU
    whatever it does (cold caches): twice a period cost the locations more than pings."""
    return interval


def bootstrap_entry(board: HeartbeatFile, slot: int, interval: float) -> dict:
    """The bootstrap's ``heartbeat`` object (loader/bootstrap.py) for `slot`."""
    return {"path": board.path, "offset": board.offset(slot), "seconds": loader_seconds(interval)}


__all__ = ["MISSED", "HeartbeatFile", "HeartbeatWatch", "bootstrap_entry"]
