"""Standard five-field cron expressions: parsed strictly so a typo fails at load time.

Accepted: `minute hour day-of-month month day-of-week`, each field a comma list of
`*`, `N`, `A-B`, with an optional `/STEP` (`*/15`, `1-10/2`, `5/10` = `5-max/10`);
month names `jan`..`dec` and weekday names `sun`..`sat` (any case); weekday 7 is Sunday.
Macros: @yearly @annually @monthly @weekly @daily @midnight @hourly.
"""

from __future__ import annotations

from collections import namedtuple

# typing is for type checkers only: importing it costs more than this module (a NamedTuple
# is a collections.namedtuple at run time; docs/architecture.md, "What a location
# imports").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, FrozenSet, NamedTuple, Optional, Set, Tuple

MACROS: Dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_DAYS = "sun mon tue wed thu fri sat".split()


if TYPE_CHECKING:

    class _Field(NamedTuple):
        name: str
        low: int
        high: int
        names: Optional[Dict[str, int]]

    class CronSchedule(NamedTuple):
        """The sets of values each field matches (day of week: 0-6, Sunday = 0)."""

        minutes: FrozenSet[int]
        hours: FrozenSet[int]
        days_of_month: FrozenSet[int]
        months: FrozenSet[int]
        days_of_week: FrozenSet[int]

else:
    _Field = namedtuple("_Field", "name low high names")
    CronSchedule = namedtuple("CronSchedule", "minutes hours days_of_month months days_of_week")
    CronSchedule.__doc__ = "The sets of values each field matches (day of week: 0-6, Sunday = 0)."


_FIELDS: Tuple[_Field, ...] = (
    _Field("minute", 0, 59, None),
    _Field("hour", 0, 23, None),
    _Field("day of month", 1, 31, None),
    _Field("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    _Field("day of week", 0, 7, {name: i for i, name in enumerate(_DAYS)}),
)


class CronError(ValueError):
    """A cron expression is malformed; the message says which field and why."""


def parse_cron(expression: object) -> CronSchedule:
    """Parse `expression`, or raise CronError saying what is wrong with it."""
    if not isinstance(expression, str):
        raise CronError(f"a cron schedule must be a str, got {expression!r}")
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise CronError(f"unknown macro {text!r} (known: {', '.join(MACROS)})")
        text = MACROS[text.lower()]
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    values = [_parse_field(part, field) for part, field in zip(parts, _FIELDS)]
    values[4] = frozenset(d % 7 for d in values[4])
    return CronSchedule(*values)


def is_valid_cron(expression: object) -> bool:
    try:
        parse_cron(expression)
    except CronError:
        return False
    return True


def _parse_field(text: str, field: _Field) -> FrozenSet[int]:
    result: Set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{field.name} field {text!r} has an empty list item")
        result.update(_parse_item(item, field))
    return frozenset(result)


def _parse_item(item: str, field: _Field) -> range:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _is_number(step_text) or int(step_text) == 0:
            raise CronError(f"{field.name} field: step in {item!r} must be a positive number")
        step = int(step_text)
    if base == "*":
        return range(field.low, field.high + 1, step)
    low_text, dash, high_text = base.partition("-")
    low = _value(low_text, field, item)
    if dash:
        high = _value(high_text, field, item)
        if high < low:
            raise CronError(f"{field.name} field: range {item!r} runs backwards")
    else:
        high = field.high if slash else low  # `5/10` means `5-max/10`, as in Vixie cron
    return range(low, high + 1, step)


def _value(text: str, field: _Field, item: str) -> int:
    if _is_number(text):
        number = int(text)
    elif field.names is not None and text.lower() in field.names:
        number = field.names[text.lower()]
    else:
        raise CronError(f"{field.name} field: {text!r} in {item!r} is not a valid value")
    if not field.low <= number <= field.high:
        raise CronError(f"{field.name} field: {number} is out of range {field.low}-{field.high}")
    return number


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()
