"""Checks that keep definitions plain: valid names, str->str tags, wire-safe values.

Everything a definition hands to the loader must survive msgpack and JSON, so it is
reduced here to dicts with str keys, lists, str, bytes, bool, int, float and None.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import DefinitionError

# json (which brings re) is imported for the first tag that is not a str; typing is for type
# checkers only (docs/architecture.md, "What a location imports").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

#: Dagster's name rule `[A-Za-z0-9_]+`, as a set: checking it needs no `re`.
_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_MAX_DEPTH = 100


def check_name(name: object, kind: str) -> str:
    """Return `name` if it is a valid definition name (Dagster's rule: [A-Za-z0-9_]+)."""
    # strip() of the allowed characters leaves nothing exactly when there is no other one
    if not isinstance(name, str) or not name or name.strip(_NAME_CHARS):
        raise DefinitionError(
            f"{kind} name {name!r} is invalid: use only letters, digits and underscores"
        )
    return name


def check_description(description: object, owner: str) -> Optional[str]:
    if description is not None and not isinstance(description, str):
        raise DefinitionError(f"{owner}: description must be a str, got {description!r}")
    return description


def check_tags(tags: object, owner: str) -> Dict[str, str]:
    """Tags as the flat str -> str map the protocol promises its readers.

    A value may be any JSON value: one that is not a str is stored JSON-encoded
    (`{"priority": 1}` -> `{"priority": "1"}`), and must survive the round trip
    (`json.loads(json.dumps(v)) == v`), as Dagster's job and run tags do.
    """
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise DefinitionError(f"{owner}: tags must be a dict, got {tags!r}")
    out: Dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str):
            raise DefinitionError(f"{owner}: tag key {key!r} must be a str")
        # str.__str__: a str subclass (an enum member) becomes the plain str it holds
        out[key] = str.__str__(value) if isinstance(value, str) else _json_tag(key, value, owner)
    return out


def _json_tag(key: str, value: object, owner: str) -> str:
    import json

    try:
        text = json.dumps(value, allow_nan=False)
        same = json.loads(text) == value
    except (TypeError, ValueError, RecursionError):
        same = False
    if not same:
        raise DefinitionError(
            f"{owner}: tag {key!r}: {value!r} is not a str or a JSON value "
            "(dict, list, number, bool or None that json.dumps/json.loads keep as is)"
        )
    return text


def plain_config(config: object, owner: str) -> Dict[str, Any]:
    """A run_config as a fresh plain dict (None means empty)."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise DefinitionError(f"{owner}: run_config must be a dict, got {config!r}")
    result = plain_value(config, owner, "run_config")
    assert isinstance(result, dict)
    return result


def plain_value(value: object, owner: str, where: str, _depth: int = 0) -> Any:
    """A deep copy of `value` made of wire-safe types only, else DefinitionError."""
    if _depth > _MAX_DEPTH:
        raise DefinitionError(f"{owner}: {where} is nested too deeply (or contains itself)")
    if isinstance(value, str):
        return str.__str__(value)  # a str subclass (an enum member) as the plain str it holds
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise DefinitionError(f"{owner}: {where} = {value} does not fit in 64 bits")
        return int(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, Mapping):
        out: Dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise DefinitionError(f"{owner}: {where} has a non-str key {key!r}")
            out[key] = plain_value(item, owner, f"{where}[{key!r}]", _depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [
            plain_value(item, owner, f"{where}[{i}]", _depth + 1) for i, item in enumerate(value)
        ]
    raise DefinitionError(
        f"{owner}: {where} = {value!r} is not a plain value "
        "(dict, list, str, bytes, int, float, bool or None)"
    )


def plain_or_repr(value: object) -> Any:
    """A job's return value as the protocol sends it: plain if possible, else its repr."""
    try:
        return plain_value(value, "result", "result")
    except DefinitionError:
        return repr(value)
