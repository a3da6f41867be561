"""A workspace file's content as plain data, with where every value sits in the file.

Made by `yaml_positions.load_yaml` from the text, or read back from the validation cache
for a text that passed before (validation_cache.py), so the checks that place their
messages at a value (schema.py, semantic.py) need no YAML parser: importing PyYAML costs
~25 ms at every start of a command that reads the workspace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

from .errors import Problem

PathItem = Union[str, int]
YamlPath = Tuple[PathItem, ...]


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
