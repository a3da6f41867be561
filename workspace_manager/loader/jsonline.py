"""`json.loads` for a bootstrap line without importing `json`, whose decoder compiles regular
expressions when imported (it brings `re`: ~0.4 MB and a few ms in every location;
docs/architecture.md, "What a location imports").

The parsing is done by the C scanner behind `json.loads` (`_json.make_scanner`, CPython's
Modules/_json.c), given the settings a default `json.JSONDecoder()` gives it; as
`JSONDecoder.decode` does, only JSON whitespace may surround the value. Anything else (a
malformed line, another implementation without `_json`) goes to `json.loads` itself.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple

_WHITESPACE = " \t\n\r"  # JSON's whitespace (RFC 8259, section 2), json.decoder.WHITESPACE


class _Settings:
    """What the C scanner reads from its `context`: json.JSONDecoder()'s defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {
        "-Infinity": float("-inf"),
        "Infinity": float("inf"),
        "NaN": float("nan"),
    }.__getitem__


def _c_scanner() -> Optional[Callable[[str, int], Tuple[Any, int]]]:
    try:
        from _json import make_scanner

        return make_scanner(_Settings())  # type: ignore[arg-type, no-any-return]
    except Exception:  # pragma: no cover - another implementation
        return None


def loads(text: str) -> Any:
    """The JSON value `text` holds, as `json.loads(text)` gives it; json's own ValueError
    (JSONDecodeError) when it holds none or more than one."""
    scanner = _c_scanner()
    if scanner is not None:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = scanner(text, start)
            if not text[end:].strip(_WHITESPACE):
                return value
        except Exception:  # StopIteration, JSONDecodeError, or SystemError on 3.11 (its
            pass  # scanner reports errors through json.decoder only if that is imported)
    import json  # not JSON, or no C scanner: json says why, in its own words

    return json.loads(text)
