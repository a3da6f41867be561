"""What the SDK asks of a user's function, its parameters and its docstring, without
importing `inspect` when the SDK is imported.

`inspect` (with ast, dis, tokenize, linecache, re) was most of what importing the SDK cost
(docs/architecture.md, "What a location imports"). A plain function, what nearly every
definition wraps, is read here from its code object with the answers `inspect.signature`
and `inspect.getdoc` give (CPython 3.9 to 3.13: `inspect._signature_from_function`,
`inspect.getdoc`, `inspect.cleandoc`); anything else (a `functools.partial`, a callable
object, a builtin, a function carrying `__wrapped__` or `__signature__`) goes to `inspect`
itself, imported then (tests/sdk_callables_test.py compares the two).
"""

from __future__ import annotations

import sys
from types import FunctionType

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import List, Optional, Tuple


#: `co_flags` bit of a function taking `*args` (`inspect.CO_VARARGS`, the same value since
#: CPython 2: Include/cpython/code.h)
CO_VARARGS = 0x04

#: Attributes through which `inspect.signature` answers other than from the code object:
#: functools.wraps' `__wrapped__`, an explicit `__signature__`, partialmethod's marker.
_SIGNATURE_HOOKS = frozenset(
    ("__wrapped__", "__signature__", "_partialmethod", "__partialmethod__")
)


def _is_plain(fn: object) -> bool:
    return type(fn) is FunctionType and not (fn.__dict__.keys() & _SIGNATURE_HOOKS)


def required_parameters(fn: object) -> Tuple[List[str], List[str], bool]:
    """(positional parameters without a default, keyword-only ones without a default,
    whether it takes `*args`), as `inspect.signature(fn)` tells them.

    TypeError or ValueError when `fn` has no signature (some builtins), as
    `inspect.signature` raises them.
    """
    if _is_plain(fn):
        code = fn.__code__  # type: ignore[attr-defined]
        names = code.co_varnames
        count = code.co_argcount
        defaults = fn.__defaults__  # type: ignore[attr-defined]
        positional = list(names[: count - (len(defaults) if defaults else 0)])
        kwdefaults = fn.__kwdefaults__ or {}  # type: ignore[attr-defined]
        keyword = [n for n in names[count : count + code.co_kwonlyargcount] if n not in kwdefaults]
        return positional, keyword, bool(code.co_flags & CO_VARARGS)
    import inspect

    params = list(inspect.signature(fn).parameters.values())  # type: ignore[arg-type]
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return (
        [p.name for p in params if p.kind in kinds and p.default is p.empty],
        [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty],
        any(p.kind is p.VAR_POSITIONAL for p in params),
    )


def getdoc(fn: object) -> Optional[str]:
    """`inspect.getdoc(fn)`: its docstring, cleaned up, or None."""
    if type(fn) is FunctionType:
        doc = fn.__doc__
        if isinstance(doc, str):
            return cleandoc(doc)
        if doc is None and "." not in fn.__qualname__:
            return None  # getdoc looks for an inherited docstring only on a class's methods
    import inspect

    return inspect.getdoc(fn)


def cleandoc(doc: str) -> str:
    """`inspect.cleandoc`: tabs expanded, the indentation common to the lines after the
    first removed, the first line's leading whitespace and blank lines around removed."""
    lines = doc.expandtabs().split("\n")
    margin = sys.maxsize
    for line in lines[1:]:
        content = len(line.lstrip())
        if content:
            margin = min(margin, len(line) - content)
    if lines:
        lines[0] = lines[0].lstrip()
    if margin < sys.maxsize:
        for i in range(1, len(lines)):
            lines[i] = lines[i][margin:]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)
