"""Load YAML into plain Python data while remembering where every node sits in the file.

PyYAML's `safe_load` forgets positions; error messages need `LINE:COLUMN` for any value
(and for the key that holds it), so we compose the node graph and convert it ourselves.
Duplicate keys, which `safe_load` silently lets the last one win, are reported here.

Hostile input is bounded whatever the PyYAML version: nesting deeper than MAX_DEPTH stops
the (recursive) composer with a positioned error instead of a RecursionError, merge keys
are flattened here once per mapping with each key kept once (PyYAML up to 6.0.3 copies every
merged pair again at each level, so a 400-byte merge-key "billion laughs" takes 20 s), and
all values, merged or aliased, count against MAX_VALUES.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

import yaml

from .document import Document, NodeInfo, YamlPath
from .errors import Problem

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
# Aliases are expanded (each use gets its own positions), so nested aliases could make a
# small file expand exponentially ("billion laughs"); no real workspace comes near this.
MAX_VALUES = 100_000
# A workspace is 6 levels deep (load_from, entry, kind, environment, requirements, item);
# the composer, our converter and jsonschema each recurse per level.
MAX_DEPTH = 32


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


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than MAX_DEPTH, where it stands."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if not self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep", mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _too_many(mark: Any) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(
        None, None, f"more than {MAX_VALUES} values (aliases or merge keys used too often?)", mark
    )


Pair = Tuple[yaml.Node, yaml.Node]


class _Converter:
    def __init__(self, doc: Document, loader: yaml.SafeLoader) -> None:
        self.doc = doc
        self.loader = loader
        self.problems: List[Problem] = []
        self._active: Set[int] = set()
        self._merged: Dict[int, List[Pair]] = {}  # mapping node id -> its pairs, merges done
        self._work = 0  # pairs looked at while merging, against MAX_VALUES

    def convert(self, node: yaml.Node, path: YamlPath, key_node: Optional[yaml.Node] = None) -> Any:
        start = node.start_mark
        if len(self.doc.nodes) >= MAX_VALUES:
            raise _too_many(start)
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
        if len(path) >= MAX_DEPTH:
            # Aliases can stack shallow nodes into a deep value the composer never saw.
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep (through aliases)", start
            )
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
        result: Dict[str, Any] = {}
        for key, (key_node, value_node) in self._pairs(node).items():
            result[key] = self.convert(value_node, path + (key,), key_node)
        return result

    def _pairs(self, node: yaml.MappingNode) -> Dict[str, Pair]:
        """The mapping's pairs by key, merge keys (`<<: *base`, `<<: [*a, *b]`) applied as
        YAML 1.1 says: its own keys win, then the earlier merged mapping over a later one."""
        result: Dict[str, Pair] = {}
        for source in reversed(self._merge_sources(node)):
            for key_node, value_node in self._merged_pairs(source):
                key = self._key(key_node, report=False)
                if key is not None:
                    result[key] = (key_node, value_node)
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, report=False)
            if key is not None:
                result[key] = (key_node, value_node)
        return result

    def _merge_sources(self, node: yaml.MappingNode) -> List[yaml.MappingNode]:
        sources: List[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            items = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for item in items:
                if not isinstance(item, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        "a merge key (<<) takes a mapping or a list of mappings",
                        key_node.start_mark,  # where it is used: the value may be an alias
                    )
                sources.append(item)
        return sources

    def _merged_pairs(self, node: yaml.MappingNode) -> List[Pair]:
        """A merged mapping's own pairs with its merges applied, each key once; computed
        once per mapping, so repeated aliases cost nothing more."""
        known = self._merged.get(id(node))
        if known is not None:
            return known
        if id(node) in self._active:
            raise yaml.constructor.ConstructorError(
                None, None, "a merge key (<<) refers to its own mapping", node.start_mark
            )
        self._active.add(id(node))
        try:
            pairs = list(self._pairs(node).values())
        finally:
            self._active.discard(id(node))
        self._work += len(node.value) + len(pairs)
        if self._work >= MAX_VALUES:
            raise _too_many(node.start_mark)
        self._merged[id(node)] = pairs
        return pairs

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
    loader = _Loader(text)
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
