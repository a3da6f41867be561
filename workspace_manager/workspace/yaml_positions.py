"""Load YAML into plain Python data while remembering where every node sits in the file.

PyYAML's `safe_load` forgets positions; error messages need `LINE:COLUMN` for any value
(and for the key that holds it), so we compose the node graph and convert it ourselves.
Duplicate keys, which `safe_load` silently lets the last one win, are reported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple, Union

import yaml

from .errors import Problem

PathItem = Union[str, int]
YamlPath = Tuple[PathItem, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
# Aliases are expanded (each use gets its own positions), so nested aliases could make a
# small file expand exponentially ("billion laughs"); no real workspace comes near this.
MAX_VALUES = 100_000


@dataclass(frozen=True)
class NodeInfo:
    """Where one value sits: its own start, and the start of the mapping key that holds it."""

    line: int  # 1-based
    column: int  # 1-based
    key_line: Optional[int] = None
    key_column: Optional[int] = None
    text: Optional[str] = None  # the scalar as written (e.g. "3.10" that YAML read as 3.1)
    quoted: bool = False
    empty: bool = False  # `key:` with nothing after it


@dataclass
class Document:
    """Plain data (dicts, lists, scalars) plus a position for every path into it."""

    path: str
    data: Any
    nodes: Dict[YamlPath, NodeInfo] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Nothing but comments, blank lines or a bare `---`."""
        root = self.nodes.get(())
        return self.data is None and (root is None or root.empty)

    def info(self, path: YamlPath) -> Optional[NodeInfo]:
        """The node at `path`, or at its nearest recorded ancestor."""
        path = tuple(path)
        while path not in self.nodes and path:
            path = path[:-1]
        return self.nodes.get(path)

    def position(self, path: YamlPath, at_key: bool = False) -> Tuple[int, int]:
        """1-based (line, column) of the value at `path`, or of its key when `at_key`.

        A value that is empty (`python_file:` and nothing else) points at its key,
        since the spot after the colon means nothing to a reader.
        """
        info = self.info(path)
        if info is None:
            return (1, 1)
        exact = tuple(path) in self.nodes
        if exact and (at_key or info.empty) and info.key_line is not None:
            return (info.key_line, info.key_column or 1)
        return (info.line, info.column)

    def problem(self, path: YamlPath, message: str, at_key: bool = False) -> Problem:
        line, column = self.position(path, at_key)
        return Problem(self.path, line, column, message)


def _mark_problem(path: str, mark: Any, message: str) -> Problem:
    if mark is None:
        return Problem(path, None, None, message)
    return Problem(path, mark.line + 1, mark.column + 1, message)


def yaml_error_problem(path: str, error: yaml.YAMLError) -> Problem:
    """Turn a PyYAML error into one Problem at the spot PyYAML blames, in its words,
    plus the line where the construct it was reading began."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return Problem(path, None, None, f"invalid YAML: {error}")
    what = (error.problem or "invalid YAML").removeprefix("but ")
    context, context_mark = error.context, error.context_mark
    if context and context_mark is not None and context.startswith("while "):
        what += f" ({context} that began on line {context_mark.line + 1})"
    elif context:
        what += f" ({context})"
    if "'\\t'" in what:
        what = "a tab character; YAML indents with spaces only"
    return _mark_problem(path, error.problem_mark or context_mark, f"invalid YAML: {what}")


class _Converter:
    def __init__(self, doc: Document, loader: yaml.SafeLoader) -> None:
        self.doc = doc
        self.loader = loader
        self.problems: List[Problem] = []
        self._active: Set[int] = set()

    def convert(self, node: yaml.Node, path: YamlPath, key_node: Optional[yaml.Node] = None) -> Any:
        start = node.start_mark
        if len(self.doc.nodes) >= MAX_VALUES:
            raise yaml.constructor.ConstructorError(
                None, None, f"more than {MAX_VALUES} values (aliases used too often?)", start
            )
        key_line = key_node.start_mark.line + 1 if key_node is not None else None
        key_col = key_node.start_mark.column + 1 if key_node is not None else None
        if isinstance(node, yaml.ScalarNode):
            empty = node.tag == _NULL_TAG and node.value == "" and node.style is None
            self.doc.nodes[path] = NodeInfo(
                start.line + 1,
                start.column + 1,
                key_line,
                key_col,
                text=node.value,
                quoted=node.style in ("'", '"'),
                empty=empty,
            )
            return self.loader.construct_object(node, deep=True)
        self.doc.nodes[path] = NodeInfo(start.line + 1, start.column + 1, key_line, key_col)
        if node.tag not in (_SEQ_TAG, _MAP_TAG):
            # As safe_load would: never construct `!!python/...` and other custom tags.
            raise yaml.constructor.ConstructorError(
                None, None, f"could not determine a constructor for the tag {node.tag!r}", start
            )
        if id(node) in self._active:
            self.problems.append(
                _mark_problem(self.doc.path, start, "a YAML alias refers to itself")
            )
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return None
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: YamlPath) -> Dict[str, Any]:
        seen: Dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node)
            if key is None:
                continue
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.problems.append(
                    _mark_problem(
                        self.doc.path,
                        key_node.start_mark,
                        f"duplicate key '{key}' (first given on line {first})",
                    )
                )
            else:
                seen[key] = key_node
        # Merge keys (`<<: *base`): PyYAML puts the merged pairs first, so own keys win.
        self.loader.flatten_mapping(node)
        result: Dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, report=False)
            if key is None:
                continue
            result[key] = self.convert(value_node, path + (key,), key_node)
        return result

    def _key(self, key_node: yaml.Node, report: bool = True) -> Optional[str]:
        if not isinstance(key_node, yaml.ScalarNode):
            if report:
                self.problems.append(
                    _mark_problem(self.doc.path, key_node.start_mark, "a key must be a plain word")
                )
            return None
        # A key YAML reads as a number or boolean (`1:`, `on:`) is kept as written.
        value = self.loader.construct_object(key_node, deep=True)
        return value if isinstance(value, str) else str(key_node.value)


def load_yaml(text: str, path: str) -> Tuple[Optional[Document], List[Problem]]:
    """Parse `text` (the content of the file shown as `path`).

    Returns (None, problems) when the YAML cannot be read at all, else the document and
    any problems that still left usable data (duplicate keys: the last one wins).
    An empty document yields a Document whose data is None.
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
            doc = Document(path, None)
            if root is None:
                return doc, []
            converter = _Converter(doc, loader)
            doc.data = converter.convert(root, ())
            return doc, sorted(converter.problems, key=Problem.sort_key)
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        return None, [yaml_error_problem(path, error)]
