"""Requirement strings: normalised for the key, local paths found and made absolute.

Relative local paths (``./pkg``, ``-e ../lib``, ``name @ file:rel``) are resolved against the
location's working directory, which is also the installer's working directory: the same rule
pip applies to paths written inside a requirements file. Nested ``-r``/``-c`` files resolve
against the file that names them, as pip does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urlparse

# Options whose value (next argument, or after "=") is a local path when it is not a URL.
PATH_OPTIONS = frozenset(
    {
        "-r",
        "--requirement",
        "-c",
        "--constraint",
        "-e",
        "--editable",
        "-f",
        "--find-links",
    }
)
FILE_OPTIONS = frozenset({"-r", "--requirement", "-c", "--constraint"})
_EXTRAS = re.compile(r"^(.*?)(\[[^\]]*\])$")


@dataclass(frozen=True)
class LocalPath:
    """A requirement or option pointing at the disk, and whether its contents matter."""

    path: Path
    hashed: bool  # False for an editable install (changes are live) and find-links folders


def _is_url(text: str) -> bool:
    return "://" in text or text.startswith(("git+", "hg+", "svn+", "bzr+"))


def _file_url_path(text: str) -> Optional[str]:
    if text.startswith("file:"):
        return unquote(urlparse(text).path) or None
    return None


def looks_like_path(text: str) -> bool:
    if _is_url(text):
        return text.startswith("file:")
    return text.startswith((".", "/", "~")) or os.sep in text


def absolute(text: str, base: Path) -> str:
    """``text`` as an absolute path string (a file: URL becomes a plain path)."""
    raw = _file_url_path(text) or text
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = base / path
    return os.path.normpath(path)


def _split_extras(text: str) -> Tuple[str, str]:
    match = _EXTRAS.match(text)
    return (match.group(1), match.group(2)) if match else (text, "")


def normalise_name_spec(text: str) -> str:
    """``Foo_Bar >= 1.0`` and ``foo-bar>=1.0`` give the same string."""
    try:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name
    except ImportError:  # packaging comes with virtualenv; keep a plain rule just in case
        return _simple(text)
    try:
        req = Requirement(text)
    except InvalidRequirement:
        return _simple(text)
    out = str(canonicalize_name(req.name))
    if req.extras:
        out += "[" + ",".join(sorted(canonicalize_name(e) for e in req.extras)) + "]"
    if req.url:
        out += " @ " + req.url
    out += str(req.specifier)
    if req.marker is not None:
        out += "; " + str(req.marker)
    return out


def _simple(text: str) -> str:
    return re.sub(r"\s+", "", text).lower().replace("_", "-")


@dataclass(frozen=True)
class Resolved:
    """One requirement as given to the installer and as it enters the key."""

    args: Tuple[str, ...]  # what the installer gets (absolute paths)
    key: str  # normalised form for the key
    local: Optional[LocalPath] = None


def resolve_requirement(text: str, base: Path) -> Resolved:
    text = text.strip()
    for flag in ("-e", "--editable"):
        if text.startswith(flag + " ") or text.startswith(flag + "="):
            target = text[len(flag) + 1 :].strip()
            if _is_url(target) and not target.startswith("file:"):
                return Resolved(("-e", target), "-e " + target)
            path, extras = _split_extras(target)
            full = absolute(path, base)
            return Resolved(
                ("-e", full + extras), "-e " + full + extras, LocalPath(Path(full), False)
            )
    if text.startswith("-"):
        return Resolved((text,), text)  # an installer option written as a requirement
    name, sep, url = text.partition("@")
    if sep and _file_url_path(url.strip()) is not None:
        full = absolute(url.strip(), base)
        key = normalise_name_spec(name.strip()) + " @ " + full
        return Resolved(
            (f"{name.strip()} @ {Path(full).as_uri()}",), key, LocalPath(Path(full), True)
        )
    if looks_like_path(text):
        path, extras = _split_extras(text)
        full = absolute(path, base)
        return Resolved((full + extras,), full + extras, LocalPath(Path(full), True))
    return Resolved((text,), normalise_name_spec(text))


def resolve_pip_args(args: Sequence[str], base: Path) -> Tuple[Tuple[str, ...], List[LocalPath]]:
    """Installer options with path values made absolute, and the local paths they name."""
    out: List[str] = []
    locals_: List[LocalPath] = []
    expect: Optional[str] = None
    for arg in args:
        if expect is not None:
            value = arg
            if not _is_url(value) or value.startswith("file:"):
                value = absolute(value, base)
                locals_.append(LocalPath(Path(value), expect in FILE_OPTIONS))
            out.append(value)
            expect = None
            continue
        option, eq, value = arg.partition("=")
        if option in PATH_OPTIONS and eq and option.startswith("--"):
            if not _is_url(value) or value.startswith("file:"):
                value = absolute(value, base)
                locals_.append(LocalPath(Path(value), option in FILE_OPTIONS))
            out.append(f"{option}={value}")
        elif arg in PATH_OPTIONS:
            out.append(arg)
            expect = arg
        else:
            out.append(arg)
    return tuple(out), locals_  # a dangling option is kept as written: pip reports it


def logical_lines(text: str) -> Iterator[Tuple[int, str]]:
    """pip's logical lines of a requirements file: comments dropped, a trailing `\\` joins
    the next line; each with the number of its first physical line (for error positions)."""
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        line = re.sub(r"(^|\s)#.*$", "", buf + line).strip()
        buf = ""
        if line:
            yield start, line
    if buf.strip():
        yield start, buf.strip()


def requirement_file_inputs(
    path: Path, base: Path, digest: Callable[[Path], str], _seen: Optional[set] = None
) -> List[Tuple[str, str]]:
    """(name, digest) of a requirements file, of every file it includes, and of every local
    path it names: what makes its content change the key."""
    seen = set() if _seen is None else _seen
    real = os.path.realpath(path)
    if real in seen:
        return []
    seen.add(real)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        from workspace_manager.envs.errors import EnvBuildError

        raise EnvBuildError(f"requirements file {path}: {exc.strerror or exc}") from None
    out = [(f"file {path}", digest(Path(path)))]
    for _, line in logical_lines(text):
        parts = line.split(None, 1)
        head = parts[0]
        option, eq, value = head.partition("=")
        if option in FILE_OPTIONS:
            target = value if eq else (parts[1].strip() if len(parts) > 1 else "")
            if target and not _is_url(target):
                nested = Path(absolute(target, Path(path).parent))
                out += requirement_file_inputs(nested, base, digest, seen)
            continue
        if head.startswith("-") and option not in ("-e", "--editable"):
            continue  # other options are in the file's own digest
        resolved = resolve_requirement(line, base)
        if resolved.local is not None and resolved.local.hashed:
            out.append((f"local {resolved.local.path}", digest(resolved.local.path)))
    return out
