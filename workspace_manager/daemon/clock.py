"""The daemon's clock: wall time and sleeping until a wall time. Tests replace it with a
fake one, so schedules and sensors are tested without waiting."""

from __future__ import annotations

import asyncio
import time

#: A sleep is cut in pieces this long, so a wall clock set forward (NTP, a suspended
#: laptop) is noticed within this many seconds, not after a whole old delay.
MAX_NAP = 60.0


class Clock:
    """The real clock (Unix seconds)."""

    def time(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        """Return at wall time `when` (at once if it is past)."""
        while True:
            delay = when - time.time()
            if delay <= 0:
                return
            await asyncio.sleep(min(delay, MAX_NAP))
