"""Schedule tick times (daemon/ticks.py) as pure functions, exhaustively around DST.

Expected instants are written as local times with their UTC offset, so each line says
which occurrence of a wall time fires."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from typing import List, Optional
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workspace_manager.daemon.ticks import (
    due_ticks,
    expand_cron,
    last_ticks,
    next_tick,
    ticks_between,
)
from workspace_manager.sdk.cron import MACROS, parse_cron

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def at(text: str) -> float:
    """An instant from an ISO time with its offset: '2025-03-30T03:00+02:00'."""
    return datetime.fromisoformat(text).timestamp()


def local_day(day: str, tz: str) -> tuple:
    """(start, end) for ticks_between covering one local calendar day [00:00, next 00:00)."""
    d = datetime.fromisoformat(day)
    start = d.replace(tzinfo=ZoneInfo(tz)).timestamp()
    end = (d + timedelta(days=1)).replace(tzinfo=ZoneInfo(tz)).timestamp()
    return start - 0.001, end - 0.001  # (start, end]: 00:00 included, the next 00:00 not


def day_ticks(cron: str, tz: str, day: str) -> List[float]:
    return ticks_between(cron, tz, *local_day(day, tz))


def hours(tz_offsets: List[tuple]) -> List[float]:
    return [at(t) for t in tz_offsets]


# -- the DST days, written out ---------------------------------------------------------------

# (tz, day, cron, expected ticks that day as local times with offsets)
DAILY_CASES = [
    # Berlin 2025: clocks go 02:00 CET -> 03:00 CEST on Mar 30, 03:00 CEST -> 02:00 CET Oct 26
    (BERLIN, "2025-03-30", "30 2 * * *", ["2025-03-30T03:00+02:00"]),
    (BERLIN, "2025-10-26", "30 2 * * *", ["2025-10-26T02:30+02:00"]),
    (BERLIN, "2025-03-30", "30 1 * * *", ["2025-03-30T01:30+01:00"]),
    (BERLIN, "2025-10-26", "30 1 * * *", ["2025-10-26T01:30+02:00"]),
    (BERLIN, "2025-03-30", "0 0 * * *", ["2025-03-30T00:00+01:00"]),
    (BERLIN, "2025-10-26", "0 0 * * *", ["2025-10-26T00:00+02:00"]),
    (BERLIN, "2025-03-30", "@daily", ["2025-03-30T00:00+01:00"]),
    # Berlin 2026: Mar 29 and Oct 25
    (BERLIN, "2026-03-29", "30 2 * * *", ["2026-03-29T03:00+02:00"]),
    (BERLIN, "2026-10-25", "30 2 * * *", ["2026-10-25T02:30+02:00"]),
    (BERLIN, "2026-03-29", "0 2 * * *", ["2026-03-29T03:00+02:00"]),
    (BERLIN, "2026-10-25", "0 2 * * *", ["2026-10-25T02:00+02:00"]),
    # New York 2025: 02:00 EST -> 03:00 EDT on Mar 9, 02:00 EDT -> 01:00 EST on Nov 2
    (NEW_YORK, "2025-03-09", "30 2 * * *", ["2025-03-09T03:00-04:00"]),
    (NEW_YORK, "2025-11-02", "30 2 * * *", ["2025-11-02T02:30-05:00"]),
    (NEW_YORK, "2025-03-09", "30 1 * * *", ["2025-03-09T01:30-05:00"]),
    (NEW_YORK, "2025-11-02", "30 1 * * *", ["2025-11-02T01:30-04:00"]),  # not 01:30 EST
    (NEW_YORK, "2025-11-02", "0 0 * * *", ["2025-11-02T00:00-04:00"]),
    # New York 2026: Mar 8 and Nov 1
    (NEW_YORK, "2026-03-08", "30 2 * * *", ["2026-03-08T03:00-04:00"]),
    (NEW_YORK, "2026-11-01", "30 2 * * *", ["2026-11-01T02:30-05:00"]),
    (NEW_YORK, "2026-11-01", "30 1 * * *", ["2026-11-01T01:30-04:00"]),
    (NEW_YORK, "2026-03-08", "@midnight", ["2026-03-08T00:00-05:00"]),
]


@pytest.mark.parametrize("tz,day,cron,expected", DAILY_CASES)
def test_daily_schedules_fire_once_on_dst_days(tz: str, day: str, cron: str, expected) -> None:
    assert day_ticks(cron, tz, day) == hours(expected)


def _hourly(first: str, last: str, offset: str, day: str) -> List[str]:
    a, b = int(first), int(last)
    return [f"{day}T{h:02d}:00{offset}" for h in range(a, b + 1)]


HOURLY_CASES = [
    # spring: 02:00 does not exist and fires at 03:00 with 03:00's own tick, once: 23 ticks
    (
        BERLIN,
        "2025-03-30",
        _hourly("0", "1", "+01:00", "2025-03-30") + _hourly("3", "23", "+02:00", "2025-03-30"),
    ),
    (
        BERLIN,
        "2026-03-29",
        _hourly("0", "1", "+01:00", "2026-03-29") + _hourly("3", "23", "+02:00", "2026-03-29"),
    ),
    (
        NEW_YORK,
        "2025-03-09",
        _hourly("0", "1", "-05:00", "2025-03-09") + _hourly("3", "23", "-04:00", "2025-03-09"),
    ),
    (
        NEW_YORK,
        "2026-03-08",
        _hourly("0", "1", "-05:00", "2026-03-08") + _hourly("3", "23", "-04:00", "2026-03-08"),
    ),
    # fall: the repeated hour fires once, at its first occurrence: 24 ticks in 25 hours
    (
        BERLIN,
        "2025-10-26",
        _hourly("0", "2", "+02:00", "2025-10-26") + _hourly("3", "23", "+01:00", "2025-10-26"),
    ),
    (
        BERLIN,
        "2026-10-25",
        _hourly("0", "2", "+02:00", "2026-10-25") + _hourly("3", "23", "+01:00", "2026-10-25"),
    ),
    (
        NEW_YORK,
        "2025-11-02",
        _hourly("0", "1", "-04:00", "2025-11-02") + _hourly("2", "23", "-05:00", "2025-11-02"),
    ),
    (
        NEW_YORK,
        "2026-11-01",
        _hourly("0", "1", "-04:00", "2026-11-01") + _hourly("2", "23", "-05:00", "2026-11-01"),
    ),
]


@pytest.mark.parametrize("tz,day,expected", HOURLY_CASES)
@pytest.mark.parametrize("cron", ["0 * * * *", "@hourly"])
def test_hourly_on_dst_days(tz: str, day: str, expected: List[str], cron: str) -> None:
    assert day_ticks(cron, tz, day) == hours(expected)


QUARTER_CASES = [
    # (tz, day, the ticks around the change, written out; the day's count)
    (
        BERLIN,
        "2025-03-30",
        [
            "2025-03-30T01:30+01:00",
            "2025-03-30T01:45+01:00",
            "2025-03-30T03:00+02:00",
            "2025-03-30T03:15+02:00",
            "2025-03-30T03:30+02:00",
        ],
        92,
    ),
    (
        BERLIN,
        "2025-10-26",
        [
            "2025-10-26T02:30+02:00",
            "2025-10-26T02:45+02:00",
            "2025-10-26T03:00+01:00",
            "2025-10-26T03:15+01:00",
            "2025-10-26T03:30+01:00",
        ],
        96,
    ),
    (
        BERLIN,
        "2026-03-29",
        [
            "2026-03-29T01:30+01:00",
            "2026-03-29T01:45+01:00",
            "2026-03-29T03:00+02:00",
            "2026-03-29T03:15+02:00",
            "2026-03-29T03:30+02:00",
        ],
        92,
    ),
    (
        BERLIN,
        "2026-10-25",
        [
            "2026-10-25T02:30+02:00",
            "2026-10-25T02:45+02:00",
            "2026-10-25T03:00+01:00",
            "2026-10-25T03:15+01:00",
            "2026-10-25T03:30+01:00",
        ],
        96,
    ),
    (
        NEW_YORK,
        "2025-03-09",
        [
            "2025-03-09T01:30-05:00",
            "2025-03-09T01:45-05:00",
            "2025-03-09T03:00-04:00",
            "2025-03-09T03:15-04:00",
            "2025-03-09T03:30-04:00",
        ],
        92,
    ),
    (
        NEW_YORK,
        "2025-11-02",
        [
            "2025-11-02T01:30-04:00",
            "2025-11-02T01:45-04:00",
            "2025-11-02T02:00-05:00",
            "2025-11-02T02:15-05:00",
            "2025-11-02T02:30-05:00",
        ],
        96,
    ),
    (
        NEW_YORK,
        "2026-03-08",
        [
            "2026-03-08T01:30-05:00",
            "2026-03-08T01:45-05:00",
            "2026-03-08T03:00-04:00",
            "2026-03-08T03:15-04:00",
            "2026-03-08T03:30-04:00",
        ],
        92,
    ),
    (
        NEW_YORK,
        "2026-11-01",
        [
            "2026-11-01T01:30-04:00",
            "2026-11-01T01:45-04:00",
            "2026-11-01T02:00-05:00",
            "2026-11-01T02:15-05:00",
            "2026-11-01T02:30-05:00",
        ],
        96,
    ),
]


@pytest.mark.parametrize("tz,day,around,count", QUARTER_CASES)
def test_every_15_minutes_on_dst_days(tz: str, day: str, around: List[str], count: int) -> None:
    ticks = day_ticks("*/15 * * * *", tz, day)
    assert len(ticks) == count
    assert_strictly_increasing(ticks)
    expected = hours(around)
    i = ticks.index(expected[0])
    assert ticks[i : i + len(expected)] == expected
    # away from the change, every 15 minutes of real time
    gaps = {b - a for a, b in zip(ticks, ticks[1:])}
    assert gaps <= {900.0, 3600.0 + 900.0}  # the fall-back day has one 75-minute step


def assert_strictly_increasing(ticks: List[float]) -> None:
    assert all(a < b for a, b in zip(ticks, ticks[1:])), ticks


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
@pytest.mark.parametrize(
    "cron", ["30 2 * * *", "0 * * * *", "*/15 * * * *", "0 0 * * *", "30 1 * * *", "* * * * *"]
)
@pytest.mark.parametrize("year", [2025, 2026])
@pytest.mark.parametrize("change", [0, 1])
def test_dst_weeks_with_a_fake_clock(tz: str, cron: str, year: int, change: int) -> None:
    """Walk the week around each change tick by tick, as the daemon does (next_tick from
    the last one): strictly increasing, no duplicates, each matching wall time once, and the
    same as ticks_between over the whole range."""
    around = _transitions(tz, year)[change]
    span = 3 * 3600 if cron == "* * * * *" else 3.5 * 86400
    start, end = around - span, around + span
    walked: List[float] = []
    t: Optional[float] = start
    while True:
        t = next_tick(cron, tz, t)
        assert t is not None
        if t > end:
            break
        walked.append(t)
    assert_strictly_increasing(walked)
    assert walked == ticks_between(cron, tz, start, end)
    walls = [datetime.fromtimestamp(x, ZoneInfo(tz)).replace(tzinfo=None) for x in walked]
    # every wall time fires at most once (a repeated hour's second occurrence never does)
    assert len(set(walls)) == len(walls)


def test_utc_is_the_default_and_has_no_dst() -> None:
    day = datetime(2025, 3, 30, tzinfo=timezone.utc).timestamp()
    ticks = ticks_between("30 2 * * *", None, day - 1, day + 86400)
    assert ticks == [day + 2.5 * 3600]
    assert ticks_between("0 * * * *", "", day - 1, day + 86400 - 1) == [
        day + h * 3600.0 for h in range(24)
    ]


def test_macros_are_expanded() -> None:
    for macro, fields in MACROS.items():
        assert expand_cron(macro) == fields
        assert expand_cron(macro.upper()) == fields
        assert next_tick(macro, BERLIN, 1.7e9) == next_tick(fields, BERLIN, 1.7e9)


def test_next_tick_is_strictly_after() -> None:
    t = at("2025-06-01T12:00+00:00")
    assert next_tick("0 * * * *", None, t) == t + 3600
    assert next_tick("0 * * * *", None, t - 0.5) == t
    assert next_tick("0 * * * *", None, t + 0.5) == t + 3600


def test_a_schedule_that_never_fires() -> None:
    assert next_tick("0 0 30 2 *", BERLIN, 1.7e9) is None
    assert ticks_between("0 0 31 4 *", None, 1.7e9, 1.8e9) == []
    assert due_ticks("0 0 30 2 *", None, 1.7e9, 1.8e9) == []


def test_next_tick_from_inside_the_repeated_hour() -> None:
    # at 01:30 EST (the second 01:30) the repeated wall times already fired an hour ago:
    # the next `*/15` tick is 02:00 EST, not 01:45 EST
    second = at("2025-11-02T01:30-05:00")
    assert next_tick("*/15 * * * *", NEW_YORK, second) == at("2025-11-02T02:00-05:00")
    assert next_tick("0 * * * *", NEW_YORK, second) == at("2025-11-02T02:00-05:00")
    # and from inside the first occurrence, the first occurrence's next
    first = at("2025-11-02T01:30-04:00")
    assert next_tick("*/15 * * * *", NEW_YORK, first) == at("2025-11-02T01:45-04:00")


# -- catch-up ----------------------------------------------------------------------------------


def test_catch_up_fires_the_latest_missed_ticks_only() -> None:
    last = at("2025-06-01T10:00+00:00")
    now = at("2025-06-01T15:30+00:00")  # down 5.5 hours: 11..15 missed
    assert due_ticks("0 * * * *", None, last, now) == [at("2025-06-01T15:00+00:00")]
    assert due_ticks("0 * * * *", None, last, now, max_catchup_runs=3) == hours(
        ["2025-06-01T13:00+00:00", "2025-06-01T14:00+00:00", "2025-06-01T15:00+00:00"]
    )
    assert len(due_ticks("0 * * * *", None, last, now, max_catchup_runs=100)) == 5
    assert due_ticks("0 * * * *", None, last, now, max_catchup_runs=0) == []


def test_nothing_is_due_for_a_schedule_never_ticked_or_up_to_date() -> None:
    now = at("2025-06-01T15:30+00:00")
    assert due_ticks("0 * * * *", None, None, now) == []  # starts from the first tick after
    assert due_ticks("0 * * * *", None, at("2025-06-01T15:00+00:00"), now) == []
    assert due_ticks("0 * * * *", None, now, now) == []


def test_a_tick_exactly_now_is_due() -> None:
    now = at("2025-06-01T15:00+00:00")
    assert due_ticks("0 * * * *", None, now - 1, now) == [now]


def test_catch_up_across_a_year_of_downtime_is_quick() -> None:
    last = at("2024-06-01T00:00+00:00")
    now = at("2025-06-01T00:00:30+00:00")
    ticks = due_ticks("* * * * *", BERLIN, last, now, max_catchup_runs=2)
    assert ticks == [now - 90, now - 30]


def test_catch_up_across_dst_changes() -> None:
    # down over the fall-back night in New York: the repeated 01:00 hour fires once
    last = at("2025-11-02T00:30-04:00")
    now = at("2025-11-02T03:10-05:00")
    expected = hours(["2025-11-02T01:00-04:00", "2025-11-02T02:00-05:00", "2025-11-02T03:00-05:00"])
    assert due_ticks("0 * * * *", NEW_YORK, last, now, max_catchup_runs=10) == expected
    assert last_ticks("0 * * * *", NEW_YORK, last, now, 2) == expected[1:]
    # over the spring-forward night: the missing 02:30 fires at 03:00, with 03:00's own
    last = at("2025-03-09T01:50-05:00")
    now = at("2025-03-09T03:40-04:00")
    assert due_ticks("*/30 * * * *", NEW_YORK, last, now, max_catchup_runs=10) == hours(
        ["2025-03-09T03:00-04:00", "2025-03-09T03:30-04:00"]
    )


# -- properties --------------------------------------------------------------------------------

ZONES = [
    BERLIN,
    NEW_YORK,
    "UTC",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "America/Sao_Paulo",  # DST started at midnight (until 2019): 00:00 did not exist
    "Pacific/Apia",  # skipped all of 2011-12-30
    "Asia/Kolkata",
]
CRONS = [
    "30 2 * * *",
    "0 * * * *",
    "*/15 * * * *",
    "0 0 * * *",
    "30 1 * * *",
    "*/7 1-3 * * *",
    "15,45 0-3 * * *",
    "0 0 * * sun",
    "0 12 1 * *",
    "@hourly",
    "0 0 1 1 mon",
]


@functools.cache
def _transitions(tz: str, year: int) -> List[float]:
    """The instants `tz` changed its offset in `year` (hourly scan, then to the second)."""
    zone = ZoneInfo(tz)
    out = []
    t = datetime(year, 1, 1, tzinfo=timezone.utc).timestamp()
    end = datetime(year + 1, 1, 1, tzinfo=timezone.utc).timestamp()
    prev = datetime.fromtimestamp(t, zone).utcoffset()
    while t < end:
        t2 = t + 3600
        off = datetime.fromtimestamp(t2, zone).utcoffset()
        if off != prev:
            lo, hi = int(t), int(t2)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, zone).utcoffset() == off:
                    hi = mid
                else:
                    lo = mid
            out.append(float(hi))
            prev = off
        t = t2
    return out or [datetime(year, 7, 1, tzinfo=timezone.utc).timestamp()]


def _matches(cron: str, wall: datetime) -> bool:
    """The cron rule, independently of cronsim (Vixie/Debian: day-of-month and day-of-week
    are ANDed when either starts with `*`, else ORed)."""
    sched = parse_cron(cron)
    fields = expand_cron(cron).split()
    dom = wall.day in sched.days_of_month
    dow = (wall.isoweekday() % 7) in sched.days_of_week
    day = (dom and dow) if fields[2].startswith("*") or fields[4].startswith("*") else (dom or dow)
    return (
        wall.second == 0
        and wall.minute in sched.minutes
        and wall.hour in sched.hours
        and wall.month in sched.months
        and day
    )


def _reference(cron: str, tz: str, start: float, end: float) -> List[float]:
    """Brute force over every minute of real time: the rule as SPEC section 7 states it."""
    zone = ZoneInfo(tz)
    out: List[float] = []
    t = (int(start) // 60 + 1) * 60
    while t <= end:
        local = datetime.fromtimestamp(t, zone)
        before = datetime.fromtimestamp(t - 1, zone).utcoffset()
        assert before is not None and local.utcoffset() is not None
        if local.utcoffset() > before:  # type: ignore[operator]
            # the end of a gap: fires if any skipped wall time matched (or its own does)
            first = (local - (local.utcoffset() - before)).replace(tzinfo=None)  # type: ignore[operator]
            wall = first
            while wall <= local.replace(tzinfo=None):
                if _matches(cron, wall):
                    out.append(float(t))
                    break
                wall += timedelta(minutes=1)
        elif _matches(cron, local.replace(tzinfo=None)) and local.fold == 0:
            out.append(float(t))
        t += 60
    return out


@settings(max_examples=60, deadline=None)
@given(
    tz=st.sampled_from(ZONES),
    cron=st.sampled_from(CRONS),
    year=st.sampled_from([2011, 2016, 2018, 2025, 2026]),
    which=st.integers(0, 3),
    shift=st.integers(-36 * 3600, 12 * 3600),
)
def test_ticks_match_a_brute_force_reference(
    tz: str, cron: str, year: int, which: int, shift: int
) -> None:
    """Around a real offset change of the zone: the ticks over two days are exactly the
    instants whose wall time matches (first occurrence) or that end a gap holding a match."""
    transitions = _transitions(tz, year)
    start = transitions[which % len(transitions)] + shift + 0.5
    end = start + 2 * 86400
    ticks = ticks_between(cron, tz, start, end)
    assert_strictly_increasing(ticks)
    assert ticks == _reference(cron, tz, start, end)
    # and the walk the daemon does gives the same
    walked: List[float] = []
    t: Optional[float] = start
    while (t := next_tick(cron, tz, t)) is not None and t <= end:
        walked.append(t)
    assert walked == ticks


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
@pytest.mark.parametrize("cron", ["30 2 * * *", "0 * * * *", "*/15 * * * *", "* * * * *"])
@pytest.mark.parametrize("change", [0, 1])
def test_the_schedule_loops_quick_due_ticks_are_due_ticks(tz: str, cron: str, change: int) -> None:
    """loops._due (two forward steps when one tick came since the last) answers what
    due_ticks answers, around both DST changes, waking at a tick, just after it, or after
    several were missed, for max_catchup_runs 0, 1 and 3."""
    from workspace_manager.daemon.loops import _due

    around = _transitions(tz, 2025)[change]
    span = {"30 2 * * *": 4 * 86400, "0 * * * *": 6 * 3600, "*/15 * * * *": 2 * 3600}.get(
        cron, 1200
    )
    last: Optional[float] = around - span
    ticks = ticks_between(cron, tz, around - span, around + span)
    for i, tick in enumerate(ticks[:-3]):
        for now in (tick, tick + 0.5, ticks[i + 1] - 0.001, ticks[i + 2], ticks[i + 3] + 1):
            for catchup in (0, 1, 3):
                assert _due(cron, tz, last, now, catchup) == due_ticks(
                    cron, tz, last, now, catchup
                ), (last, now, catchup)
        last = tick
