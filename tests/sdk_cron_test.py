from __future__ import annotations

import pytest

from workspace_manager.sdk.cron import MACROS, CronError, is_valid_cron, parse_cron


def test_every_field_star() -> None:
    cron = parse_cron("* * * * *")
    assert cron.minutes == frozenset(range(60))
    assert cron.hours == frozenset(range(24))
    assert cron.days_of_month == frozenset(range(1, 32))
    assert cron.months == frozenset(range(1, 13))
    assert cron.days_of_week == frozenset(range(7))


@pytest.mark.parametrize(
    "expression, field, expected",
    [
        ("*/15 * * * *", "minutes", {0, 15, 30, 45}),
        ("5/20 * * * *", "minutes", {5, 25, 45}),
        ("1-10/3 * * * *", "minutes", {1, 4, 7, 10}),
        ("0,30,59 * * * *", "minutes", {0, 30, 59}),
        ("0 9-17 * * *", "hours", set(range(9, 18))),
        ("0 9-12,14 * * *", "hours", {9, 10, 11, 12, 14}),
        ("0 0 1,15 * *", "days_of_month", {1, 15}),
        ("0 0 * jan,JUL,Dec *", "months", {1, 7, 12}),
        ("0 0 * mar-may *", "months", {3, 4, 5}),
        ("0 0 * * mon-fri", "days_of_week", {1, 2, 3, 4, 5}),
        ("0 0 * * SUN", "days_of_week", {0}),
        ("0 0 * * 7", "days_of_week", {0}),
        ("0 0 * * 5-7", "days_of_week", {5, 6, 0}),
        ("0 0 * * */2", "days_of_week", {0, 2, 4, 6}),
        ("  0   0 * * *  ", "hours", {0}),
    ],
)
def test_valid_fields(expression: str, field: str, expected: set) -> None:
    assert getattr(parse_cron(expression), field) == frozenset(expected)


@pytest.mark.parametrize(
    "macro, equivalent",
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros(macro: str, equivalent: str) -> None:
    assert parse_cron(macro) == parse_cron(equivalent)


def test_all_macros_are_valid() -> None:
    assert all(is_valid_cron(expansion) for expansion in MACROS.values())


@pytest.mark.parametrize(
    "expression, message",
    [
        ("", "expected 5 fields"),
        ("* * * *", "got 4"),
        ("* * * * * *", "got 6"),
        ("60 * * * *", "minute field: 60 is out of range 0-59"),
        ("* 24 * * *", "hour field: 24 is out of range 0-23"),
        ("* * 0 * *", "day of month field: 0 is out of range 1-31"),
        ("* * 32 * *", "out of range 1-31"),
        ("* * * 13 *", "month field: 13 is out of range 1-12"),
        ("* * * * 8", "day of week field: 8 is out of range 0-7"),
        ("*/0 * * * *", "step"),
        ("*/x * * * *", "step"),
        ("10-5 * * * *", "runs backwards"),
        ("1,,2 * * * *", "empty list item"),
        ("a * * * *", "'a'"),
        ("* * * foo *", "'foo'"),
        ("* * * * mon-", "''"),
        ("* * * mon * ", "'mon'"),
        ("* * ? * *", "'?'"),
        ("@every_minute", "unknown macro"),
        ("¹ * * * *", "not a valid value"),
    ],
)
def test_invalid(expression: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expression)
    assert message in str(info.value)
    assert not is_valid_cron(expression)


def test_non_string_is_rejected() -> None:
    with pytest.raises(CronError, match="must be a str"):
        parse_cron(None)
    assert not is_valid_cron(5)


def test_cron_error_is_a_value_error() -> None:
    assert issubclass(CronError, ValueError)
