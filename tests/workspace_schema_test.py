"""The JSON Schema itself, and how its errors become one plain message at the right spot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator, List

import jsonschema
import pytest

import workspace_manager
from workspace_manager.workspace.model import EnvironmentSpec, RemoteTarget, Supervision
from workspace_manager.workspace.schema import (
    _Explainer,
    describe,
    name_of,
    schema_issues,
    workspace_schema,
)
from workspace_manager.workspace.yaml_positions import Document, load_yaml

# The file beside the package that is imported (the checkout, or an installed wheel).
SCHEMA_FILE = Path(workspace_manager.__file__).parent / "schemas" / "workspace.schema.json"


def subschemas(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from subschemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from subschemas(value)


def doc_of(text: str) -> Document:
    doc, problems = load_yaml(text, "w.yaml")
    assert doc is not None and not problems
    return doc


def messages(text: str) -> List[str]:
    return [str(issue.problem) for issue in schema_issues(doc_of(text))]


def test_schema_is_valid_draft_2020_12_and_packaged() -> None:
    schema = workspace_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    # importlib.resources serves the very file in workspace_manager/schemas/.
    assert schema == json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def test_every_mapping_rejects_unknown_keys() -> None:
    for node in subschemas(workspace_schema()):
        if "properties" in node:
            assert node.get("additionalProperties") is False, sorted(node["properties"])


def test_every_ref_resolves() -> None:
    defs = workspace_schema()["$defs"]
    refs = {n["$ref"] for n in subschemas(workspace_schema()) if "$ref" in n}
    assert refs == {f"#/$defs/{name}" for name in defs}  # all used, none dangling


def test_schema_matches_the_model() -> None:
    defs = workspace_schema()["$defs"]
    fields = {f.name for f in dataclasses.fields(Supervision)}
    assert set(defs["supervision"]["properties"]) == fields
    assert set(defs["environment"]["properties"]) == {
        f.name for f in dataclasses.fields(EnvironmentSpec)
    }
    remote = {f.name for f in dataclasses.fields(RemoteTarget) if f.init}
    assert set(defs["grpcServer"]["properties"]) == remote | {"location_name"}
    assert defs["supervision"]["properties"]["restart"]["enum"] == ["always", "on-failure", "never"]


def test_dagster_keys_are_all_accepted() -> None:
    """Every key of Dagster's own workspace schema is a key here too."""
    defs = workspace_schema()["$defs"]
    python_target = {"attribute", "location_name", "working_directory", "executable_path"}
    for name, main in [
        ("pythonFile", "relative_path"),
        ("pythonModule", "module_name"),
        ("pythonPackage", "package_name"),
    ]:
        assert python_target | {main} <= set(defs[name]["else"]["properties"])
    assert {"host", "socket", "port", "location_name", "ssl"} <= set(
        defs["grpcServer"]["properties"]
    )


def test_valid_documents_have_no_issues() -> None:
    assert (
        messages("load_from:\n  - python_file: a.py\n  - python_module: {module_name: m}\n") == []
    )
    assert (
        messages("load_from:\n  - grpc_server: {port: 1}\nsupervision: {memory_limit_mb: null}\n")
        == []
    )


def test_names_and_descriptions() -> None:
    assert name_of(()) == "the workspace file"
    assert name_of(("load_from", 0)) == "load_from entry 1"
    assert name_of(("load_from", 0, "python_module", "environment", "pip_args", 2)) == (
        "item 3 of pip_args"
    )
    assert name_of(("load_from", 0, "python_file", "env_vars", "TEAM")) == "env_vars.TEAM"
    assert [describe(v) for v in (None, True, 3, "x", [], {})] == [
        "null",
        "true",
        "the number 3",
        "the string 'x'",
        "a list",
        "a mapping",
    ]


def test_one_message_per_mistake() -> None:
    # A short form plus a stray sibling key: the unknown key explains the second key.
    assert messages("load_from:\n  - python_file: a.py\n    attribute: x\n") == [
        "w.yaml:3:5: unknown key 'attribute' in load_from entry 1 (allowed: python_file, "
        "python_module, python_package, grpc_server); indent it under python_file"
    ]
    # A wrong type is one message, not one per branch of the short/long form.
    assert messages("load_from:\n  - python_module: true\n") == [
        "w.yaml:2:20: python_module must be a string or a mapping, not true; "
        'put it in quotes: python_module: "true"'
    ]


def test_all_problems_are_collected() -> None:
    text = (
        "load_from:\n"
        "  - python_file: {relative_path: a.py, x: 1}\n"
        "  - grpc_server: {port: 0}\n"
        "supervision: {restart: 1, max_restarts: -1}\n"
        "y: 2\n"
    )
    assert [m.split(": ", 1)[0] for m in messages(text)] == [
        "w.yaml:2:40",
        "w.yaml:3:25",
        "w.yaml:4:24",
        "w.yaml:4:41",
        "w.yaml:5:1",
    ]


# The choice among anyOf / oneOf branches, on a schema of our own.

BRANCHY = {
    "type": "object",
    "properties": {
        "target": {
            "anyOf": [
                {"type": "string", "minLength": 3},
                {
                    "type": "object",
                    "properties": {"path": {"type": "string"}},
                    "required": ["path"],
                    "additionalProperties": False,
                },
            ]
        },
        "size": {"oneOf": [{"type": "integer"}, {"type": "null"}]},
    },
}


def explain(text: str) -> List[str]:
    doc = doc_of(text)
    validator = jsonschema.Draft202012Validator(BRANCHY)
    return [
        str(issue.problem)
        for error in validator.iter_errors(doc.data)
        for issue in _Explainer(doc).explain(error)
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        # The mapping branch is the one meant: report its complaint, not the string's.
        (
            "target: {path: a.py, extra: 1}\n",
            "w.yaml:1:22: unknown key 'extra' in target (allowed: path)",
        ),
        ("target: {pth: a.py}\n", "w.yaml:1:9: target needs the key 'path'"),
        # The string branch is the one meant.
        ("target: ab\n", "w.yaml:1:9: target must be at least 3 characters long"),
        # No branch fits the type: say which types would.
        ("target: [a]\n", "w.yaml:1:9: target must be a string or a mapping, not a list"),
        ("size: 1.5\n", "w.yaml:1:7: size must be a whole number or null, not the number 1.5"),
    ],
)
def test_best_branch(text: str, expected: str) -> None:
    assert expected in explain(text)
    assert not any("is not valid under any of the given schemas" in m for m in explain(text))
