"""A location's memory and CPU, sampled cheaply enough to do for 100 idle locations.

The number shown (`rss_bytes` in /status, `wsm_location_resident_memory_bytes`, the
`memory_limit_mb` check) is the sum of its processes' PSS (README, "Memory"). Reading a
process's PSS (/proc/PID/smaps_rollup) walks its page tables: ~0.4 ms of CPU for a trivial
loader, so 100 locations sampled every 10 s were a third of an idle manager's CPU. Its
/proc/PID/stat (~30 us) gives RSS and CPU times at once; a process's PSS is read again only
when its RSS moved by more than `PSS_DRIFT_BYTES` since its last PSS (less: that PSS plus
the move), or that PSS is `PSS_REFRESH_SECONDS` old (up to
twice that, spread by pid; the PSS of an unchanged process moves only when processes
sharing its pages come or go).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, Iterable, Optional, Tuple

#: Longest a process's PSS is reused while its RSS stays the same (seconds).
PSS_REFRESH_SECONDS = 60.0
#: How far its RSS may move before its PSS is read again; within this, the last PSS plus
#: the move is shown (an idle loader's RSS moves by a page or two now and then).
PSS_DRIFT_BYTES = 1 << 20

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def stat(pid: int) -> Optional[Tuple[int, float]]:
    """(RSS in bytes, CPU seconds of the process and its waited-for children) from
    /proc/PID/stat (proc(5): fields 14-17 utime, stime, cutime, cstime in clock ticks, 24
    rss in pages); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rfind(b")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        return int(fields[21]) * _PAGE, ticks / _TICKS
    except (OSError, ValueError, IndexError):
        return None


class MemorySampler:
    """One location instance's samples: remembers each process's last PSS and the RSS it
    was read at."""

    def __init__(
        self,
        pss: Callable[[int], Optional[int]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`pss(pid)`: a process's PSS in bytes or None (process.pss_bytes)."""
        self._pss = pss
        self._clock = clock
        self._known: Dict[int, Tuple[int, int, float]] = {}  # pid: (rss, pss, read at)
        self.pss_reads = 0  # how many page-table walks (tests guard the count)

    def sample(self, pids: Iterable[int]) -> Tuple[Optional[int], float]:
        """(sum of the PSS of `pids`, None when none could be read; sum of their CPU
        seconds)."""
        now = self._clock()
        total, cpu = 0, 0.0
        seen: Dict[int, Tuple[int, int, float]] = {}
        for pid in pids:
            st = stat(pid)
            if st is None:
                continue
            rss, seconds = st
            cpu += seconds
            known = self._known.get(pid)
            # up to twice the refresh age, by pid: at 1,000 locations the refreshes are spread
            # over several rounds, not all due in the same one
            max_age = PSS_REFRESH_SECONDS * (1 + (pid % 8) / 8)
            if (
                known is not None
                and abs(rss - known[0]) <= PSS_DRIFT_BYTES
                and now - known[2] < max_age
            ):
                # pages it touched since are its own: they add to its PSS as to its RSS
                pss = known[1] + rss - known[0]
                seen[pid] = known
            else:
                self.pss_reads += 1
                read = self._pss(pid)
                pss = rss if read is None else read
                seen[pid] = (rss, pss, now)
            total += pss
        self._known = seen
        return (total if seen else None), cpu
