"""How late the manager's own event loop runs: so that its stalls are not blamed on locations.

A probe task asks to wake every `period` seconds and records how late it woke. A deadline
that ran while the loop itself was late (a large frame, a slow disk, the whole manager
stopped by SIGSTOP or a suspended VM) is extended by that lateness: a location is judged only
on the time the manager was actually able to listen to it.

The probe runs only while a wait is under way (`wait_allowing_for_lag`): only pinged
locations (remote ones) wait so; local ones count in shared memory (supervisor/heartbeats.py)
and an idle manager with none to ping is not woken 4 times a second for nothing.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from typing import Any, Awaitable, Deque, Optional, Tuple

#: Lateness (seconds) below this is scheduling noise, not a stall.
NOISE = 0.02

_probes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLag] = weakref.WeakKeyDictionary()


class LoopLag:
    """Records the stalls of the running loop (`start()` from inside it)."""

    def __init__(self, period: float = 0.25, keep: float = 600.0) -> None:
        # seconds between wake-ups: a stall is measured whole whatever the period (it is how
        # late the probe woke), but one that began before the probe's next wake-up is seen
        # from that wake-up on, up to `period` short. Against 2 s heartbeats 0.25 s is
        # plenty, and it is 4 wake-ups a second of an idle manager, not 20.
        self.period = period
        self.keep = keep  # seconds of history kept for `lag_since`
        self.longest = 0.0  # the longest stall seen (seconds)
        self._stalls: Deque[Tuple[float, float]] = deque()  # (monotonic end, seconds late)
        self._expected: Optional[float] = None  # when the probe should next wake
        self._task: Optional[asyncio.Task] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._waits = 0  # waits under way: the probe runs while there is one

    def start(self) -> LoopLag:
        """Make this the running loop's probe for `current()`; it probes while a wait is
        under way (`hold`)."""
        self._loop = asyncio.get_running_loop()
        _probes[self._loop] = self
        return self

    def hold(self) -> None:
        """A wait begins: probe from now on (a stall from now on is measured)."""
        self._waits += 1
        if self._task is None and self._loop is not None:
            self._expected = time.monotonic() + self.period
            self._task = self._loop.create_task(self._run())

    def release(self) -> None:
        """A wait ended; the last one stops the probe."""
        self._waits = max(0, self._waits - 1)
        if not self._waits:
            self._halt()

    def _halt(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._expected = None

    def stop(self) -> None:
        self._waits = 0
        self._halt()
        self._loop = None

    async def _run(self) -> None:
        while True:
            # the first wake-up is due a period after `hold`: a stall between `hold` and
            # this task's first step is measured from there
            if self._expected is None:
                self._expected = time.monotonic() + self.period
            await asyncio.sleep(max(0.0, self._expected - time.monotonic()))
            now = time.monotonic()
            late = now - self._expected
            if late > NOISE:
                self._stalls.append((now, late))
                self.longest = max(self.longest, late)
            while self._stalls and self._stalls[0][0] < now - self.keep:
                self._stalls.popleft()
            self._expected = now + self.period

    def lag_since(self, since: float) -> float:
        """Seconds the loop was late after monotonic time `since`, the stall in progress
        (a deadline firing right after one) included."""
        total = 0.0
        for end, late in reversed(self._stalls):
            if end <= since:
                break
            total += min(late, end - since)
        if self._expected is not None:
            ongoing = time.monotonic() - self._expected
            if ongoing > NOISE:
                total += ongoing
        return total


def current() -> Optional[LoopLag]:
    """The running loop's probe, if one was started."""
    try:
        return _probes.get(asyncio.get_running_loop())
    except RuntimeError:
        return None


async def wait_allowing_for_lag(awaitable: Awaitable[Any], timeout: float) -> Any:
    """Await `awaitable` for `timeout` seconds plus however late the loop ran meanwhile.

    Raises asyncio.TimeoutError (after cancelling it) when it did not finish in that time.
    A future is awaited as it is (no task wraps it).
    Without a probe on the loop this is `asyncio.wait_for`. One timer checks the deadline,
    re-armed by the lag found when it fires: every location's heartbeat goes through here
    (500 a second at 1,000 locations), and a round of `asyncio.wait` per call cost an idle
    manager a future, a timer and callbacks more each time.
    """
    probe = current()
    if probe is None:
        return await asyncio.wait_for(awaitable, timeout)
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    probe.hold()
    task = asyncio.ensure_future(awaitable)
    expired = False
    handle: Optional[asyncio.TimerHandle] = None

    def check() -> None:
        nonlocal expired, handle
        if task.done():
            return
        remaining = start + timeout + probe.lag_since(start) - time.monotonic()
        if remaining <= 0:
            expired = True
            task.cancel()
        else:
            handle = loop.call_later(remaining, check)

    handle = loop.call_later(timeout, check)
    try:
        return await task
    except asyncio.CancelledError:
        current_task = asyncio.current_task()
        asked = getattr(current_task, "cancelling", lambda: 0)()  # our caller's cancel (3.11+)
        if expired and task.cancelled() and not asked:
            raise asyncio.TimeoutError() from None
        raise
    finally:
        probe.release()
        if handle is not None:
            handle.cancel()
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            # We may be cancelled just as it failed (a lost connection): take its error, or
            # asyncio logs "Task exception was never retrieved" with a traceback.
            task.exception()
