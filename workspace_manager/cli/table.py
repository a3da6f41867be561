"""Tables whose columns line up on a terminal, whatever is in them: the run, schedule,
sensor and ticks lists.

A cell's width is what a terminal shows, not its number of code points: an East Asian
wide or fullwidth character takes two columns, a combining mark or a format character
(zero-width space, joiner) none (Unicode Standard Annex #11, East Asian Width, through the
standard library's `unicodedata`; the `wcwidth` package does the same from the same
tables, but costs an import of tens of milliseconds on every command). A character that
would move the cursor or start an escape sequence (C0 and C1 controls, line separators) is
shown escaped (`\\x1b`), so a location name or a skip reason cannot break the table nor
colour the terminal. On a terminal narrower than the table, the columns that may shrink
(names, free text) are cut with `…`, widest first, so no row wraps; in a pipe nothing is
cut, for scripts.
"""

from __future__ import annotations

import unicodedata

# typing for the type checkers only (they take any name TYPE_CHECKING as true): `wsm
# status` imports this module, and typing costs ~5 ms of its start
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Sequence, TextIO

#: Columns that shrink to fit a terminal keep at least this many cells.
MIN_SHRUNK = 8
GAP = "  "
ELLIPSIS = "…"


def char_width(char: str) -> int:
    """0, 1 or 2: the columns a terminal gives `char` (UAX #11; combining and format
    characters are 0)."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    """The columns `text` takes on a terminal (it holds no control characters: `cell`)."""
    if text.isascii():
        return len(text)
    return sum(char_width(c) for c in text)


def cell(value: Any) -> str:
    """`value` as one printable line: whitespace runs become one space, other control
    characters (C0, C1, DEL, line and paragraph separators) their escape."""
    text = " ".join(str(value if value is not None else "-").split())
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` columns, ending in `…` when cut."""
    if width(text) <= limit:
        return text
    out, used = [], 0
    for c in text:
        w = char_width(c)
        if used + w > limit - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + ELLIPSIS


def pad(text: str, columns: int, right: bool = False) -> str:
    """`text` padded with spaces to `columns` terminal columns (on the left if `right`)."""
    fill = " " * max(columns - width(text), 0)
    return fill + text if right else text + fill


def terminal_width(stream: TextIO) -> Optional[int]:
    """The terminal's columns when `stream` is one, else None (a pipe or a file)."""
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    from workspace_manager.cli.terminal import columns

    return columns()


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    columns: Optional[int] = None,
    shrink: Sequence[int] = (),
    right: Sequence[int] = (),
) -> str:
    """Left-aligned columns two spaces apart (the `right` ones aligned right), the last
    one not padded. With `columns` (a terminal's width), the `shrink` columns (indexes;
    the last column always may) give way, widest first, down to MIN_SHRUNK cells, so that
    no line is longer than `columns - 1`."""
    table: List[List[str]] = [[cell(h) for h in headers]]
    table += [[cell(v) for v in row] for row in rows]
    n = len(headers)
    widths = [max(width(r[i]) for r in table) for i in range(n)]
    if columns is not None:
        _fit(widths, [*shrink, n - 1], columns - 1)
    lines = []
    for row in table:
        out = []
        for i, text in enumerate(row):
            text = clip(text, widths[i])
            out.append(text if i == n - 1 and i not in right else pad(text, widths[i], i in right))
        lines.append(GAP.join(out).rstrip())
    return "\n".join(lines) + "\n"


def _fit(widths: List[int], shrink: Sequence[int], room: int) -> None:
    """Narrow the `shrink` columns of `widths`, the widest first, until the line fits
    `room` or none can give more."""
    flexible = sorted(set(shrink))
    total = sum(widths) + len(GAP) * (len(widths) - 1)
    while total > room:
        i = max(flexible, key=lambda k: widths[k])
        if widths[i] <= MIN_SHRUNK:
            return
        widths[i] -= 1
        total -= 1
