"""loader/jsonline.loads gives what json.loads gives, valid or not, without importing json
(nor re) for a valid line, under every interpreter a location may name."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import interpreters
import pytest

INTERPRETERS = interpreters.params()

VALID = [
    '{"location": "team_a", "listen": "unix:/tmp/x.sock", "status_fd": 5, "tls": null,'
    ' "target": {"kind": "python_file", "attribute": null}, "hello_timeout_seconds": 0.5}',
    '  {"a": [1, -2, 3.25e3, true, false, null, "\\u00e9\\ud83d\\ude00", "tab\\t"]}\n',
    '{"big": 18446744073709551615, "neg": -9223372036854775808, "f": 1E-7}',
    '{"nan": NaN, "inf": Infinity, "ninf": -Infinity}',
    '"just a string"',
    "[]",
    "0",
]
INVALID = ["", "   ", "{", '{"a": 1} x', "1 2", '"abc', '{"a": 01}', "{'a': 1}", "\ufeff{}"]

PROBE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from workspace_manager.loader.jsonline import loads
    import cases  # the texts, as Python literals (json or pickle would import re)
    out = {"valid": [loads(text) for text in cases.VALID]}
    out["light"] = not {"json", "re"} & set(sys.modules)
    out["invalid"] = []
    for text in cases.INVALID:
        try:
            out["invalid"].append(["no error", loads(text)])
        except ValueError as exc:
            out["invalid"].append([type(exc).__name__, str(exc)])
    print(repr(out))
    """
)


@pytest.mark.parametrize("python", INTERPRETERS)
def test_loads_is_json_loads(python: str, tmp_path: Path) -> None:
    (tmp_path / "cases.py").write_text(f"VALID = {VALID!r}\nINVALID = {INVALID!r}\n")
    stdout = interpreters.run_isolated(python, PROBE, tmp_path)
    out: Any = eval(stdout, {"nan": float("nan"), "inf": float("inf")})
    assert out["light"]
    expected = [json.loads(text) for text in VALID]
    assert repr(out["valid"]) == repr(expected)  # repr: NaN != NaN
    for text, (kind, message) in zip(INVALID, out["invalid"]):
        with pytest.raises(json.JSONDecodeError) as raised:
            json.loads(text)
        assert (kind, message) == ("JSONDecodeError", str(raised.value)), text
