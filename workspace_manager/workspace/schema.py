"""Validate a workspace document against schemas/workspace.schema.json, in plain words.

The JSON Schema is the single source of truth for structure; this module only turns
jsonschema's errors into one short message each, placed at the YAML node it is about.
Schema nodes may carry `x-messages: {keyword: text}` when the generic wording would be
obscure (text may use {name}, {value}, {keys}, {count}).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence

from .document import Document, YamlPath
from .errors import Problem

if TYPE_CHECKING:
    import jsonschema
    from jsonschema.exceptions import ValidationError

_TYPE_WORDS = {
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@dataclass(frozen=True)
class Issue:
    """A schema problem and the instance path it is about (to skip dependent checks)."""

    path: YamlPath
    problem: Problem
    keyword: str = ""  # the JSON Schema keyword that failed


#: the package data file (a plain file: importlib.resources' zip support cost ~15 ms of
#: imports at every start, and wsm is never run from a zip)
SCHEMA_PATH = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "schemas", "workspace.schema.json"
)


@functools.cache
def schema_bytes() -> bytes:
    """The schema file, `workspace_manager/schemas/workspace.schema.json` (package data)."""
    with open(SCHEMA_PATH, "rb") as f:
        return f.read()


@functools.cache
def workspace_schema() -> Dict[str, Any]:
    """The parsed schema, from the `workspace_manager.schemas` package data."""
    return json.loads(schema_bytes().decode("utf-8"))


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    # imported here: ~90 ms that a workspace found in the validation cache never pays
    import jsonschema

    return jsonschema.Draft202012Validator(workspace_schema())


def schema_issues(doc: Document) -> List[Issue]:
    """Every structural problem in `doc`, one per mistake, in file order."""
    issues: List[Issue] = []
    for error in _validator().iter_errors(doc.data):
        issues.extend(_Explainer(doc).explain(error))
    return _dedupe(issues)


def _dedupe(issues: List[Issue]) -> List[Issue]:
    """Drop redundant reports: one per (position, message); an unknown key explains a
    'too many keys' in the same mapping; a second type error on one value says nothing new."""
    unknown_in = {i.path[:-1] for i in issues if i.keyword == "additionalProperties"}
    seen = set()
    typed = set()
    result = []
    for issue in sorted(issues, key=lambda i: i.problem.sort_key()):
        if issue.problem in seen:
            continue
        if issue.keyword == "maxProperties" and issue.path in unknown_in:
            continue
        if issue.keyword == "type":
            if issue.path in typed:
                continue
            typed.add(issue.path)
        seen.add(issue.problem)
        result.append(issue)
    return result


def name_of(path: YamlPath) -> str:
    """How a message names the value at `path`: its key, e.g. `restart`, `env_vars.TEAM`."""
    if not path:
        return "the workspace file"
    last = path[-1]
    parent = path[-2] if len(path) > 1 else None
    if isinstance(last, int):
        if parent == "load_from":
            return f"load_from entry {last + 1}"
        return f"item {last + 1} of {parent}"
    if parent == "env_vars":
        return f"env_vars.{last}"
    return str(last)


def describe(value: Any) -> str:
    """A value as a message shows it: the string 'x', the number 3, a list, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {quote(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def quote(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else describe(value)


def _or_list(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


class _Explainer:
    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def explain(self, error: ValidationError) -> List[Issue]:
        path: YamlPath = tuple(error.absolute_path)
        keyword = str(error.validator)
        if "propertyNames" in error.relative_schema_path:
            key_path = path + (error.instance,)
            message = self._custom(error, key_path) or (
                f"key {quote(error.instance)} in {name_of(path)} is not allowed"
            )
            issues = [self._issue(key_path, message, at_key=True)]
        elif hasattr(self, f"_{keyword}"):
            issues = getattr(self, f"_{keyword}")(error, path)
        else:
            custom = self._custom(error, path)
            issues = [self._issue(path, custom or f"{name_of(path)}: {error.message}")]
        return [i if i.keyword else replace(i, keyword=keyword) for i in issues]

    def _issue(self, path: YamlPath, message: str, at_key: bool = False) -> Issue:
        return Issue(path, self.doc.problem(path, message, at_key))

    def _custom(self, error: ValidationError, path: YamlPath) -> Optional[str]:
        messages = error.schema.get("x-messages", {}) if isinstance(error.schema, dict) else {}
        template = messages.get(str(error.validator))
        if template is None:
            return None
        instance = error.instance
        keys = list(instance) if isinstance(instance, dict) else []
        return template.format(
            name=name_of(path),
            value=quote(instance),
            keys=", ".join(keys),
            count=len(keys),
        )

    def _single(self, error: ValidationError, path: YamlPath, message: str) -> List[Issue]:
        return [self._issue(path, self._custom(error, path) or message)]

    # One method per JSON Schema keyword that our schema uses.

    def _type(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        expected = error.validator_value
        expected = [expected] if isinstance(expected, str) else list(expected)
        return [self._issue(path, self._type_message(path, expected, error.instance))]

    def _type_message(self, path: YamlPath, expected: List[str], value: Any) -> str:
        name = name_of(path)
        want = _or_list([_TYPE_WORDS.get(t, t) for t in expected])
        info = self.doc.nodes.get(path)
        if info is not None and info.empty:
            return f"{name} has no value; it must be {want}"
        message = f"{name} must be {want}, not {describe(value)}"
        text = info.text if info is not None else None
        if "string" in expected and text is not None and not isinstance(value, (list, dict)):
            # YAML read an unquoted 3.10 as the number 3.1, yes as true, ...
            key = path[-1] if path and isinstance(path[-1], str) else None
            shown = f'{key}: "{text}"' if key is not None else f'"{text}"'
            message += f"; put it in quotes: {shown}"
        elif "array" in expected and isinstance(value, str) and path:
            message += f'; write {path[-1]}: ["{value}"]'
        elif "array" in expected and isinstance(value, dict) and path == ("load_from",):
            message += "; start each location with '- '"
        return message

    def _additionalProperties(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        instance = error.instance if isinstance(error.instance, dict) else {}
        allowed = list(error.schema.get("properties", {}))
        where = "at the top level" if not path else f"in {name_of(path)}"
        issues = []
        for key in instance:
            if key in allowed:
                continue
            message = f"unknown key {quote(key)} {where} (allowed: {', '.join(allowed)})"
            import difflib  # here: only a file with an unknown key needs it

            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
            belongs = self._belongs_under(instance, key)
            if close:
                message += f"; did you mean {quote(close[0])}?"
            elif belongs:
                message += f"; indent it under {belongs}"
            issues.append(self._issue(path + (key,), message, at_key=True))
        return issues

    def _belongs_under(self, instance: Dict[str, Any], key: str) -> Optional[str]:
        """For `- python_file: x` followed by a sibling `location_name:`: the kind it belongs to."""
        defs = workspace_schema()["$defs"]
        kinds = {
            "python_file": "pythonFile",
            "python_module": "pythonModule",
            "python_package": "pythonPackage",
            "grpc_server": "grpcServer",
        }
        for kind, def_name in kinds.items():
            if kind not in instance:
                continue
            definition = defs[def_name]
            props = definition.get("else", definition).get("properties", {})
            if key in props:
                return kind
        return None

    def _required(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        custom = self._custom(error, path)
        if custom:
            return [self._issue(path, custom)]
        instance = error.instance if isinstance(error.instance, dict) else {}
        missing = [k for k in error.validator_value if k not in instance]
        return [self._issue(path, f"{name_of(path)} needs the key {quote(key)}") for key in missing]

    def _enum(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        choices = _or_list([str(c) for c in error.validator_value])
        value = quote(error.instance)
        info = self.doc.nodes.get(path)
        if info is not None and info.text and not isinstance(error.instance, str):
            value = f"{info.text} (which YAML reads as {describe(error.instance)})"
        message = f"{name_of(path)} must be {choices}, not {value}"
        return self._single(error, path, message)

    def _minimum(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        message = f"{name_of(path)} must be {error.validator_value} or more, not {error.instance}"
        return self._single(error, path, message)

    def _exclusiveMinimum(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        bound = error.validator_value
        message = f"{name_of(path)} must be greater than {bound}, not {error.instance}"
        return self._single(error, path, message)

    def _maximum(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        message = f"{name_of(path)} must be {error.validator_value} or less, not {error.instance}"
        return self._single(error, path, message)

    def _minLength(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        if error.validator_value == 1:
            return self._single(error, path, f"{name_of(path)} must not be empty")
        message = f"{name_of(path)} must be at least {error.validator_value} characters long"
        return self._single(error, path, message)

    def _minItems(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        return self._single(error, path, f"{name_of(path)} must not be empty")

    def _pattern(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        message = f"{name_of(path)} {quote(error.instance)} does not match {error.validator_value}"
        return self._single(error, path, message)

    def _anyOf(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        return self._best_branch(error, path)

    def _oneOf(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        if not error.context:  # more than one branch matched
            return [self._issue(path, f"{name_of(path)} is ambiguous: {error.message}")]
        return self._best_branch(error, path)

    def _best_branch(self, error: ValidationError, path: YamlPath) -> List[Issue]:
        """Explain the branch the user most likely meant, not every branch's complaint.

        A branch whose type fits the value is the one meant; if none fits, say which
        types would.
        """
        branches: Dict[int, List[ValidationError]] = {}
        for sub in error.context or ():
            branches.setdefault(int(sub.relative_schema_path[0]), []).append(sub)

        def type_mismatch(errors: Iterable[ValidationError]) -> bool:
            return any(e.validator == "type" and not e.relative_path for e in errors)

        fitting = [errs for errs in branches.values() if not type_mismatch(errs)]
        if fitting:
            best = min(fitting, key=len)
            return [issue for sub in best for issue in self.explain(sub)]
        expected: List[str] = []
        for errs in branches.values():
            for sub in errs:
                if sub.validator == "type" and not sub.relative_path:
                    value = sub.validator_value
                    for t in [value] if isinstance(value, str) else value:
                        if t not in expected:
                            expected.append(t)
        return [self._issue(path, self._type_message(path, expected, error.instance))]
