"""YAML with positions: every value's line and column, and its key's, 1-based."""

from __future__ import annotations

from typing import List

import pytest
import yaml

from workspace_manager.workspace import yaml_positions
from workspace_manager.workspace.yaml_positions import MAX_DEPTH, Document, load_yaml

TEXT = """\
load_from:
  - python_file:
      relative_path: repo.py
      env_vars: {TEAM: b, N: "1"}
  - python_module: pkg.mod
  - grpc_server:
      port: 4266
supervision:
  restart: never
  memory_limit_mb:
"""


def parse(text: str) -> Document:
    doc, problems = load_yaml(text, "w.yaml")
    assert doc is not None and problems == []
    return doc


def problems_of(text: str) -> List[str]:
    return [str(p) for p in load_yaml(text, "w.yaml")[1]]


def test_data_is_plain_python() -> None:
    assert parse(TEXT).data == {
        "load_from": [
            {"python_file": {"relative_path": "repo.py", "env_vars": {"TEAM": "b", "N": "1"}}},
            {"python_module": "pkg.mod"},
            {"grpc_server": {"port": 4266}},
        ],
        "supervision": {"restart": "never", "memory_limit_mb": None},
    }


def test_value_and_key_positions() -> None:
    doc = parse(TEXT)
    assert doc.position(()) == (1, 1)
    assert doc.position(("load_from",)) == (2, 3)  # the list starts at its first '-'
    assert doc.position(("load_from",), at_key=True) == (1, 1)
    assert doc.position(("load_from", 0)) == (2, 5)  # an entry: its first key
    assert doc.position(("load_from", 0, "python_file", "relative_path")) == (3, 22)
    assert doc.position(("load_from", 0, "python_file", "relative_path"), at_key=True) == (3, 7)
    assert doc.position(("load_from", 1, "python_module")) == (5, 20)  # short form value
    assert doc.position(("load_from", 2, "grpc_server", "port")) == (7, 13)
    assert doc.position(("supervision", "restart"), at_key=True) == (9, 3)


def test_flow_style_positions() -> None:
    doc = parse(TEXT)
    env_vars = ("load_from", 0, "python_file", "env_vars")
    assert doc.position(env_vars) == (4, 17)
    assert doc.position(env_vars + ("TEAM",), at_key=True) == (4, 18)
    assert doc.position(env_vars + ("TEAM",)) == (4, 24)
    assert doc.position(env_vars + ("N",)) == (4, 30)


def test_empty_value_points_at_its_key() -> None:
    doc = parse(TEXT)
    info = doc.nodes[("supervision", "memory_limit_mb")]
    assert info.empty
    assert doc.position(("supervision", "memory_limit_mb")) == (10, 3)
    explicit = parse("a: null\nb: ~\n")
    assert not explicit.nodes[("a",)].empty
    assert explicit.position(("b",)) == (2, 4)


def test_scalar_text_is_kept() -> None:
    doc = parse('python: 3.10\nquoted: "3.10"\nflag: yes\n')
    assert doc.data == {"python": 3.1, "quoted": "3.10", "flag": True}
    assert doc.nodes[("python",)].text == "3.10"
    assert not doc.nodes[("python",)].quoted
    assert doc.nodes[("quoted",)].quoted
    assert doc.nodes[("flag",)].text == "yes"


def test_unknown_path_falls_back_to_the_nearest_ancestor() -> None:
    doc = parse(TEXT)
    assert doc.position(("load_from", 2, "grpc_server", "no_such_key")) == (7, 7)
    assert doc.problem(("supervision", "restart"), "bad").line == 9


def test_duplicate_keys_are_reported_and_the_last_wins() -> None:
    text = "a: 1\nb:\n  c: 1\n  c: 2\na: 3\n"
    doc, problems = load_yaml(text, "w.yaml")
    assert doc is not None and doc.data == {"a": 3, "b": {"c": 2}}
    assert [str(p) for p in problems] == [
        "w.yaml:4:3: duplicate key 'c' (first given on line 3)",
        "w.yaml:5:1: duplicate key 'a' (first given on line 1)",
    ]


def test_merge_keys_are_not_duplicates() -> None:
    doc = parse(
        "base: &base {restart: never, max_restarts: 1}\nmine:\n  <<: *base\n  restart: always\n"
    )
    assert doc.data["mine"] == {"restart": "always", "max_restarts": 1}
    # A merged key sits where it was written: under the anchor.
    assert doc.position(("mine", "max_restarts")) == (1, 44)
    assert doc.position(("mine", "restart")) == (4, 12)


def test_aliases_and_recursive_aliases() -> None:
    doc = parse("a: &x [1, 2]\nb: *x\n")
    assert doc.data == {"a": [1, 2], "b": [1, 2]}
    assert doc.position(("b", 1)) == (1, 11)
    assert problems_of("a: &x [1, *x]\n") == ["w.yaml:1:4: a YAML alias refers to itself"]


def test_alias_bombs_stop_early() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    doc, problems = load_yaml("\n".join(lines) + "\n", "w.yaml")
    assert doc is None
    assert problems[0].message.startswith("invalid YAML: more than 100000 values")


def test_non_string_keys_are_kept_as_written() -> None:
    doc = parse("1: a\ntrue: b\n")
    assert list(doc.data) == ["1", "true"]
    assert problems_of("? [x]\n: c\n") == ["w.yaml:1:3: a key must be a plain word"]


def test_syntax_errors_have_positions() -> None:
    doc, problems = load_yaml("a: [1, 2\n", "w.yaml")
    assert doc is None
    assert [str(p) for p in problems] == [
        "w.yaml:2:1: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence that began on line 1)"
    ]
    doc, problems = load_yaml("a: b\n  c: d\n", "w.yaml")
    assert doc is None and (problems[0].line, problems[0].column) == (2, 4)


def test_custom_tags_are_never_constructed() -> None:
    for text in ("a: !!python/object/apply:os.getpid []\n", "a: !!python/name:os.getpid\n"):
        doc, problems = load_yaml(text, "w.yaml")
        assert doc is None
        assert problems[0].message.startswith("invalid YAML: could not determine a constructor")
        assert (problems[0].line, problems[0].column) == (1, 4)


def test_empty_documents() -> None:
    for text in ("", "# just a comment\n", "---\n"):
        doc, problems = load_yaml(text, "w.yaml")
        assert doc is not None and doc.empty and problems == []
    assert not parse("~\n").empty


def test_nesting_is_limited_with_a_position_not_a_recursion_error() -> None:
    # 500 deep made PyYAML's recursive composer raise RecursionError (a traceback, exit 1).
    for text in (
        "a: " + "[" * 500 + "]" * 500 + "\n",
        "".join(f"{'  ' * i}k{i}:\n" for i in range(500)),
    ):
        doc, problems = load_yaml(text, "w.yaml")
        assert doc is None
        (problem,) = problems
        assert problem.message == f"invalid YAML: nested more than {MAX_DEPTH} levels deep"
        assert problem.line is not None and problem.column is not None
    deepest = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert load_yaml(deepest, "w.yaml")[1] == []
    # Aliases stack shallow nodes into a deep value: 40 anchors of 30 levels each.
    lines = ["a0: &a0 " + "[" * 30 + "1" + "]" * 30]
    lines += [f"a{i}: &a{i} " + "[" * 30 + f"*a{i - 1}" + "]" * 30 for i in range(1, 40)]
    doc, problems = load_yaml("\n".join(lines) + "\n", "w.yaml")
    assert doc is None
    assert problems[0].message == (
        f"invalid YAML: nested more than {MAX_DEPTH} levels deep (through aliases)"
    )


MERGE_BOMB = (
    "\n".join(
        ["a: &a {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, k8: 8, k9: 9}"]
        + [f"{n}: &{n} {{<<: [{', '.join(['*' + p] * 10)}]}}" for p, n in zip("abcdef", "bcdefg")]
    )
    + "\n"
)


def test_merge_keys_are_flattened_by_wsm_not_pyyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyYAML up to 6.0.3 copies every merged pair at each level: this 450-byte bomb took
    18 s there (bench/yaml_bomb_bench.py). wsm merges each key once, whatever the version."""
    assert len(MERGE_BOMB) < 480

    def refuse(*_args: object) -> None:
        raise AssertionError("PyYAML's flatten_mapping was used")

    monkeypatch.setattr(yaml.SafeLoader, "flatten_mapping", refuse)
    doc = parse(MERGE_BOMB)
    assert doc.data["g"] == {f"k{i}": i for i in range(10)}


def test_merge_key_semantics() -> None:
    doc = parse(
        "one: &one {a: 1, b: 1}\n"
        "two: &two {b: 2, c: 2}\n"
        "both: {<<: [*one, *two], c: 3}\n"  # own keys win, then the earlier mapping
        "nested: {<<: {<<: *two, d: 4}}\n"
    )
    assert doc.data["both"] == {"a": 1, "b": 1, "c": 3}
    assert doc.data["nested"] == {"b": 2, "c": 2, "d": 4}
    assert problems_of("a: &a {<<: *a}\n")[0].endswith("a merge key (<<) refers to its own mapping")
    assert problems_of("a: &a [1]\nb: {<<: *a}\n") == [
        "w.yaml:2:5: invalid YAML: a merge key (<<) takes a mapping or a list of mappings"
    ]


def test_merge_work_counts_against_the_value_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_positions, "MAX_VALUES", 50)
    keys = ", ".join(f"k{i}: {i}" for i in range(30))
    doc, problems = load_yaml(f"a: &a {{{keys}}}\nb: {{<<: *a}}\nc: {{<<: *a}}\n", "w.yaml")
    assert doc is None
    assert problems[0].message.startswith("invalid YAML: more than 50 values")
