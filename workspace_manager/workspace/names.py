"""Which location names are safe: a name becomes part of file names (its log in the state folder).

Checked once the name is final (after `{env: VAR}` is read, or derived from a file, module or
host), and again where a path is built from it, so no name can reach outside its folder.
"""

from __future__ import annotations

from typing import Optional

# A file name is at most 255 bytes on Linux filesystems; the log adds ".log" and a rotation
# suffix (".log.3"), and a name this long is a mistake anyway.
MAX_NAME_BYTES = 200


class UnsafeNameError(ValueError):
    """A location name that must not become part of a path."""


def name_problem(name: str) -> Optional[str]:
    """Why `name` cannot be a location name ("must not contain '/'"), or None when it can.

    Refused: empty, '/' (a path separator), NUL and other control characters, a leading '.'
    (`.` and `..` name folders; a dotted name would hide the log), text that is not UTF-8
    (e.g. undecodable bytes from an environment variable), more than MAX_NAME_BYTES bytes.
    """
    if not name:
        return "must not be empty"
    if "/" in name:
        return "must not contain '/'"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "must not contain control characters (NUL, newline, ...)"
    if name.startswith("."):
        return "must not start with '.'"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be UTF-8 text"
    if size > MAX_NAME_BYTES:
        return f"must not be longer than {MAX_NAME_BYTES} bytes"
    return None


def checked_name(name: str) -> str:
    """`name` itself when it is safe to build a path from; UnsafeNameError otherwise."""
    problem = name_problem(name)
    if problem is not None:
        raise UnsafeNameError(f"location name {name!r} {problem}")
    return name
