"""The terminal's width, as `shutil.get_terminal_size()` gives it, without importing shutil.

shutil imports bz2, lzma and zlib (~5 ms), and argparse asks for the width each time an
argument is added (its help formatter checks the argument's nargs): every command would
pay for it before doing anything.
"""

from __future__ import annotations

import argparse
import os
import sys

#: shutil.get_terminal_size's fallback: what a pipe or a file gets
FALLBACK_COLUMNS = 80


def columns() -> int:
    """`shutil.get_terminal_size().columns`: $COLUMNS when set to a positive number, else the
    width of the terminal on stdout, else 80 (the same rules, Python's shutil module)."""
    try:
        value = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        value = 0
    if value > 0:
        return value
    try:
        value = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        # stdout is None, closed, detached or not a terminal
        value = 0
    return value or FALLBACK_COLUMNS


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, its width from `columns()` (argparse: the same less 2)."""

    def __init__(self, prog: str, **kwargs: int) -> None:
        kwargs.setdefault("width", columns() - 2)
        super().__init__(prog, **kwargs)  # type: ignore[arg-type]


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with `HelpFormatter`; the subparsers it makes are of this class too
    (argparse's default for `add_subparsers`), so every command's parser uses it."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
