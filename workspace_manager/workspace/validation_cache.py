"""Remember which workspace files passed the JSON Schema, so an unchanged one skips it.

Importing jsonschema and building the validator costs ~0.1 s, more than anything else in
`wsm job execute` before the run starts. The schema's verdict is a pure function of the
file's text (yaml_positions reads nothing else), the schema, the jsonschema that checks it
and wsm's own code, so a file that passed once passes again while all four are unchanged.
A pass is kept as one small file `<cache>/validated/<key>` (0600, in wsm's cache dir,
envs.paths.default_cache_dir) whose name and content are the SHA-256 of the four. Only
passes are kept: a file with problems is checked every time, and its messages come from
jsonschema as before. The semantic checks are not cached: they look at the filesystem.

Anything wrong with the cache (missing, unreadable, a corrupted entry or another user's, a
read-only disk) is a miss: the schema is checked and the entry written again if it can be.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Callable, List, Optional

from workspace_manager.version import __version__

from .schema import Issue, schema_bytes
from .yaml_positions import Document

FOLDER = "validated"
#: entries kept; a miss that writes one more removes the least recently used beyond this
KEEP = 256


def cache_folder() -> Path:
    """`<wsm cache dir>/validated` (not created here)."""
    from workspace_manager.envs.paths import default_cache_dir

    return default_cache_dir() / FOLDER


def _checker_identity() -> str:
    """Where jsonschema is and its version of that file, found without importing it: an
    upgrade rewrites its `__init__.py`."""
    spec = importlib.util.find_spec("jsonschema")
    origin = spec.origin if spec is not None else None
    if not origin:
        return "jsonschema:none"
    try:
        st = os.stat(origin)
    except OSError:
        return f"jsonschema:{origin}"
    return f"jsonschema:{origin}:{st.st_size}:{st.st_mtime_ns}"


def verdict_key(text: str) -> str:
    """SHA-256 (hex) of the file's text, the schema, the jsonschema checking it and wsm's
    version: an entry under it means "this text passed this schema"."""
    digest = hashlib.sha256()
    for part in (
        b"wsm workspace schema verdict 1",
        __version__.encode(),
        _checker_identity().encode(),
        schema_bytes(),
        text.encode("utf-8", "surrogatepass"),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _is_pass(entry: Path, key: str) -> bool:
    """The entry is ours (this user's file) and says `key`."""
    try:
        with open(entry, "rb") as f:
            if os.fstat(f.fileno()).st_uid != os.getuid():
                return False
            return f.read(100) == key.encode()
    except (OSError, ValueError):
        return False


def _remember(folder: Path, entry: Path, key: str) -> None:
    from workspace_manager.private_files import private_dir, write_private

    try:
        private_dir(folder)
        write_private(entry, key)
        _trim(folder)
    except OSError:
        pass  # a cache that cannot be written is a cache that misses next time


def _trim(folder: Path) -> None:
    entries = []
    for name in os.listdir(folder):
        try:
            entries.append((os.stat(folder / name).st_mtime_ns, name))
        except OSError:
            continue
    for _, name in sorted(entries)[: max(0, len(entries) - KEEP)]:
        try:
            os.unlink(folder / name)
        except OSError:
            pass


def cached_schema_issues(
    text: str,
    doc: Document,
    check: Callable[[Document], List[Issue]],
    folder: Optional[Path] = None,
) -> List[Issue]:
    """`check(doc)` (schema.schema_issues), or [] at once when `text` passed this schema
    before. A pass is remembered; problems never are."""
    try:
        folder = folder if folder is not None else cache_folder()
        key = verdict_key(text)
    except (OSError, RuntimeError, ValueError):  # no home folder, no cache
        return check(doc)
    entry = folder / key
    if _is_pass(entry, key):
        try:
            os.utime(entry)  # recently used: the last to be trimmed
        except OSError:
            pass
        return []
    issues = check(doc)
    if not issues:
        _remember(folder, entry, key)
    return issues
