"""The one check every entry makes of a run's config and tags (storage/records.py
`check_run_input`, runs/queue.py `check_tags`), and `finite_json`, which makes any stored
record strict JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workspace_manager.runs.queue import BadTag, check_tags
from workspace_manager.storage.records import (
    MAX_CONFIG_DEPTH,
    BadRunInput,
    check_run_input,
    finite_json,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"a": None, "b": True, "c": -3, "d": 1.5e308, "e": "\u00e9\U0001f600", "f": [], "g": {}},
        {"deep": nested(MAX_CONFIG_DEPTH - 1)},
        {"big": 10**40},  # JSON has no integer limit; the storage keeps it as text
    ],
)
def test_plain_json_is_accepted(config: Any) -> None:
    check_run_input(config, {"team": "data", "": ""})


@pytest.mark.parametrize(
    "config, tags, where",
    [
        ({"a": math.nan}, {}, "run_config.a: NaN"),
        ({"a": {"b": [0, math.inf]}}, {}, "run_config.a.b[1]: Infinity"),
        ({"a": -math.inf}, {}, "run_config.a: -Infinity"),
        ({"a": json.loads("1e400")}, {}, "run_config.a: Infinity"),
        ({1: "x"}, {}, "run_config: a key must be a string"),
        ({"a": b"x"}, {}, "run_config.a: bytes is not a JSON value"),
        ({"a": {1, 2}}, {}, "run_config.a: set"),
        ({"a": json.loads('"\\udc80"')}, {}, "run_config.a: holds U+DC80"),
        ({"deep": nested(MAX_CONFIG_DEPTH + 5)}, {}, "nested more than"),
        ([1], {}, "run_config must be a JSON object"),
        (None, {}, "run_config must be a JSON object"),
        ({}, {"k": 1}, "tags.k: a tag's value must be a string"),
        ({}, {"k": None}, "tags.k"),
        ({}, {1: "v"}, "tags: a key must be a string"),
        ({}, ["k"], "tags must be an object"),
    ],
)
def test_what_is_not_plain_json_is_refused_naming_where(config: Any, tags: Any, where: str) -> None:
    with pytest.raises(BadRunInput) as caught:
        check_run_input(config, tags)
    assert where in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)  # every entry maps ValueError to its refusal


def test_a_config_that_contains_itself_is_refused_not_a_recursion_error() -> None:
    loop: Any = {}
    loop["me"] = loop
    with pytest.raises(BadRunInput, match="nested more than"):
        check_run_input(loop, {})


@pytest.mark.parametrize(
    "tags, words",
    [
        ({"wsm/priority": "high"}, "must be an integer"),
        ({"wsm/priority": str(2**63)}, "must be from"),
        ({"wsm/timeout_seconds": "soon"}, "must be a number"),
        ({"wsm/timeout_seconds": "nan"}, "finite"),
        ({"wsm/timeout_seconds": "-1"}, "negative"),
        ({"wsm/max_retries": "inf"}, "finite"),
    ],
)
def test_bad_wsm_tags_are_one_kind_of_error(tags: dict, words: str) -> None:
    with pytest.raises(BadTag, match=words):
        check_tags(tags)


def test_good_wsm_tags_give_the_priority() -> None:
    tags = {"wsm/priority": " -3 ", "wsm/timeout_seconds": "1.5", "wsm/max_retries": "2"}
    assert check_tags(tags) == -3
    assert check_tags({}) == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_finite_json_always_encodes_strictly(value: Any) -> None:
    text = json.dumps(finite_json(value), allow_nan=False)
    back = json.loads(text)
    if isinstance(value, float) and math.isnan(value):
        assert back == "NaN"
