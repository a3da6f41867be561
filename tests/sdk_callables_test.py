"""sdk/callables.py answers as `inspect` does, without importing it for a plain function:
the parameters a definition's function requires, and its docstring. Checked against
`inspect` itself under every interpreter a location may name, on plain functions and on
everything `inspect` treats otherwise (wrapped, partial, callable objects, builtins,
methods, explicit signatures)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import interpreters
import pytest

INTERPRETERS = interpreters.params()

PROBE = textwrap.dedent(
    '''
    import functools, json, sys
    sys.path.insert(0, sys.argv[1])
    from workspace_manager.sdk import callables
    assert "inspect" not in sys.modules

    def none(): pass
    def one(context): pass
    def two(a, b): pass
    def defaults(a, b=1, *, c=2): pass
    def kwonly(*, key): pass
    def kwonly_default(a, *, key=3): pass
    def posonly(a, /, b=2): pass
    def star(*args): pass
    def star_kw(*args, **kwargs): pass
    def kw(**kwargs): pass
    def locals_too(a):
        x = 1
        return x
    lam = lambda context=None: None
    lam2 = lambda a, *rest, k: None
    def doc_tabs():
        """First line.
    \tIndented with a tab.
          deeper
        """
    def doc_blank_first():
        """

        Second paragraph only.

        """
    def doc_one(): "One line."
    def no_doc(): pass
    def weird_doc(): pass
    weird_doc.__doc__ = 42
    def outer():
        def inner(): pass
        return inner
    class Base:
        def method(self):
            """Inherited docstring."""
    class Child(Base):
        def method(self): pass
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            return fn(*a, **k)
        return wrapper
    @deco
    def wrapped(context): """Wrapped one."""
    def explicit(a, b): pass
    import inspect as _later  # only to build a __signature__ below, after the check above
    explicit.__signature__ = _later.Signature([_later.Parameter("x", _later.Parameter.POSITIONAL_OR_KEYWORD)])
    class Callable:
        def __call__(self, context): pass
    cases = {
        "none": none, "one": one, "two": two, "defaults": defaults, "kwonly": kwonly,
        "kwonly_default": kwonly_default, "posonly": posonly, "star": star,
        "star_kw": star_kw, "kw": kw, "locals_too": locals_too, "lam": lam, "lam2": lam2,
        "doc_tabs": doc_tabs, "doc_blank_first": doc_blank_first, "doc_one": doc_one,
        "no_doc": no_doc, "weird_doc": weird_doc, "inner": outer(),
        "child_method": Child.method, "bound_method": Child().method, "wrapped": wrapped,
        "explicit": explicit, "partial": functools.partial(two, 1), "callable": Callable(),
        "builtin": len, "class": Base,
    }
    import inspect

    def reference(fn):
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            return "no signature"
        pos = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return [
            [p.name for p in params if p.kind in pos and p.default is p.empty],
            [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty],
            any(p.kind is p.VAR_POSITIONAL for p in params),
        ]

    def ours(fn):
        try:
            return [list(x) if isinstance(x, list) else x for x in callables.required_parameters(fn)]
        except (TypeError, ValueError):
            return "no signature"

    out = {}
    for name, fn in cases.items():
        out[name] = {
            "params": [ours(fn), reference(fn)],
            "doc": [callables.getdoc(fn), inspect.getdoc(fn)],
        }
    texts = ["", "x", "  a\\n   b\\n  c", "a\\n\\tb\\n\\t\\tc\\n", "\\n\\n  x\\n\\n", "a\\n \\n  b"]
    out["cleandoc"] = [[callables.cleandoc(t), inspect.cleandoc(t)] for t in texts]
    print(json.dumps(out))
    '''
)


@pytest.mark.parametrize("python", INTERPRETERS)
def test_answers_match_inspect(python: str, tmp_path: Path) -> None:
    report: Any = json.loads(interpreters.run_isolated(python, PROBE, tmp_path))
    for text_ours, text_inspect in report.pop("cleandoc"):
        assert text_ours == text_inspect
    for name, answers in report.items():
        assert answers["params"][0] == answers["params"][1], name
        assert answers["doc"][0] == answers["doc"][1], name
    assert report["two"]["params"][0] == [["a", "b"], [], False]  # the probe saw real answers
    assert report["child_method"]["doc"][0] == "Inherited docstring."
