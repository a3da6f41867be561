"""When a schedule ticks: pure functions of (cron expression, time zone, instants).

A cron expression matches wall-clock times in the schedule's `execution_timezone`
(SPEC section 7). cronsim walks *naive* local wall times (so it never applies its own DST
rules); each wall time is then mapped to an instant with zoneinfo:

- a wall time that exists once is that instant;
- a wall time that occurs twice (the clocks go back) is its first occurrence (fold=0), and
  the second occurrence never fires: every wall time fires at most once;
- a wall time that does not exist (the clocks go forward) fires at the end of the gap, the
  first valid instant after it; several wall times in one gap (and a match at the gap's
  end) are one tick.

So tick instants are strictly increasing, and a day never loses a daily schedule: this is
what Dagster and cron users expect of "time that does not exist fires at the first valid
time after it, a time that occurs twice fires once".

All instants are Unix seconds (float, UTC). Nothing here reads the clock.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from typing import Iterator, List, Optional
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from workspace_manager.sdk.cron import MACROS

#: The default `execution_timezone` (SPEC section 7).
DEFAULT_TIMEZONE = "UTC"
#: A wall time is never more than this far from its instant's wall time across a DST change
#: (real offsets change by at most 2 h; the margin is for historical oddities).
_SHIFT = timedelta(hours=3)
#: How far ahead a match is looked for: a yearly schedule on Feb 29 needs 8 years at most.
_HORIZON_SECONDS = 9 * 366 * 86400


def expand_cron(expression: str) -> str:
    """The five-field form of `expression`: macros (`@daily`, ...) as sdk/cron.MACROS says."""
    text = expression.strip()
    return MACROS.get(text.lower(), text)


@functools.lru_cache(maxsize=256)
def zone(name: Optional[str]) -> ZoneInfo:
    """The time zone of a schedule; None or "" is UTC. Raises ZoneInfoNotFoundError."""
    return ZoneInfo(name or DEFAULT_TIMEZONE)


def instant(wall: datetime, tz: ZoneInfo) -> float:
    """The instant a naive wall time `wall` in `tz` fires at (see the module's rules)."""
    first = wall.replace(tzinfo=tz, fold=0)
    if _exists(first):
        return first.timestamp()
    return _gap_end(wall, tz)


def next_tick(cron: str, tz: Optional[str], after: float) -> Optional[float]:
    """The first tick strictly after the instant `after`, or None if the expression never
    matches again (e.g. `0 0 30 2 *`)."""
    for t in _ticks_from(cron, zone(tz), after):
        return t
    return None


def ticks_between(cron: str, tz: Optional[str], start: float, end: float) -> List[float]:
    """Every tick in the half-open interval (start, end], in order."""
    out = []
    for t in _ticks_from(cron, zone(tz), start):
        if t > end:
            break
        out.append(t)
    return out


def last_ticks(cron: str, tz: Optional[str], after: float, until: float, n: int) -> List[float]:
    """The latest `n` ticks in (after, until], oldest first, without walking every tick of a
    long interval (a minutely schedule down for a year): cronsim walks backwards."""
    if n <= 0 or until <= after:
        return []
    tzinfo = zone(tz)
    # Start late enough that a wall time of the first occurrence (fold=0) that maps before
    # `until` is not missed when `until` is in the second occurrence of a repeated hour.
    start = _local_naive(until, tzinfo) + _SHIFT
    found: List[float] = []
    try:
        walls = CronSim(expand_cron(cron), start, reverse=True)
        for wall in walls:
            t = instant(wall, tzinfo)
            if t <= after:
                break  # the mapping is monotonic: every earlier wall time is earlier too
            if t > until or (found and t >= found[-1]):
                continue  # later than asked, or a second wall time in one gap
            found.append(t)
            if len(found) == n:
                break
    except (CronSimError, StopIteration):
        pass
    return found[::-1]


def due_ticks(
    cron: str,
    tz: Optional[str],
    last_tick_time: Optional[float],
    now: float,
    max_catchup_runs: int = 1,
) -> List[float]:
    """The ticks a schedule should fire now, oldest first.

    `last_tick_time` is the last tick the schedule handled (or, for a schedule never
    ticked, the time it was first seen running: it never fires for the past). After
    downtime only the latest `max_catchup_runs` of the missed ticks fire (SPEC section 7,
    as Dagster's `max_catchup_runs`); the older ones are skipped. None: nothing is due."""
    if last_tick_time is None:
        return []
    return last_ticks(cron, tz, last_tick_time, now, max(0, max_catchup_runs))


def _ticks_from(cron: str, tz: ZoneInfo, after: float) -> Iterator[float]:
    """Tick instants strictly after `after`, increasing, without duplicates."""
    try:
        # A wall time at or before the local time of `after` maps at or before `after`
        # (the mapping is monotonic), so the walk may start there.
        walls = CronSim(expand_cron(cron), _local_naive(after, tz))
    except CronSimError:
        return  # a day that no month has: validated at load, it simply never fires
    last = after
    horizon = after + _HORIZON_SECONDS
    while True:
        try:
            wall = next(walls)
        except StopIteration:
            return
        t = instant(wall, tz)
        if t > horizon:
            return
        if t > last:  # skips the second wall time of one gap, and walls before `after`
            last = t
            yield t


def _local_naive(t: float, tz: ZoneInfo) -> datetime:
    """The naive wall time in `tz` at instant `t`, to the second (cronsim's resolution)."""
    return datetime.fromtimestamp(int(t // 1), tz).replace(tzinfo=None)


def _exists(aware: datetime) -> bool:
    """Whether an aware wall time is real (not in a spring-forward gap)."""
    back = aware.astimezone(timezone.utc).astimezone(aware.tzinfo)
    return back.replace(tzinfo=None) == aware.replace(tzinfo=None)


def _gap_end(wall: datetime, tz: ZoneInfo) -> float:
    """The instant a spring-forward gap containing the naive `wall` ends: the transition.

    In a gap, fold=1 reads `wall` with the offset after the change and fold=0 with the
    one before, so the transition T lies in (wall - after, wall - before]; zoneinfo's
    transitions are whole seconds, found by bisection."""
    low = int(wall.replace(tzinfo=tz, fold=1).timestamp())  # before the transition
    high = int(wall.replace(tzinfo=tz, fold=0).timestamp())  # at or after it
    after_offset = datetime.fromtimestamp(high, tz).utcoffset()
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after_offset:
            high = mid
        else:
            low = mid
    return float(high)
