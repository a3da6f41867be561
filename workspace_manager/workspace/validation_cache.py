"""Remember which workspace files passed the JSON Schema, so an unchanged one skips it.

Importing jsonschema and building the validator costs ~0.1 s, more than anything else in
`wsm job execute` before the run starts. The schema's verdict is a pure function of the
file's text (yaml_positions reads nothing else), the schema, the jsonschema that checks it
and wsm's own code, so a file that passed once passes again while all four are unchanged.
A pass is kept as one small file `<cache>/validated/<key>` (0600, in wsm's cache dir,
envs.paths.default_cache_dir) whose name is the SHA-256 of the four and whose content
begins with it (then, optionally, a newline and the parsed document, below). Only
passes are kept: a file with problems is checked every time, and its messages come from
jsonschema as before. The semantic checks are not cached: they look at the filesystem.

A pass also keeps the document parsed from the text (`cached_document`: its values and their
positions, marshalled), so an unchanged file needs no YAML parser either: PyYAML's import
and parse are ~30 ms. The document is a pure function of the text, wsm's code and PyYAML,
so PyYAML's identity and the interpreter's version are checked with it.

Anything wrong with the cache (missing, unreadable, a corrupted entry or another user's, a
read-only disk) is a miss: the schema is checked and the entry written again if it can be.
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

from workspace_manager.digest import sha256
from workspace_manager.version import __version__

from .document import Document, NodeInfo
from .schema import Issue, schema_bytes

FOLDER = "validated"
#: entries kept; a miss that writes one more removes the least recently used beyond this
KEEP = 256


def cache_folder() -> Path:
    """`<wsm cache dir>/validated` (not created here)."""
    from workspace_manager.envs.paths import default_cache_dir

    return default_cache_dir() / FOLDER


def _package_identity(name: str) -> str:
    """Where a package is and its version of that file, found without importing it: an
    upgrade rewrites its `__init__.py`."""
    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec is not None else None
    if not origin:
        return f"{name}:none"
    try:
        st = os.stat(origin)
    except OSError:
        return f"{name}:{origin}"
    return f"{name}:{origin}:{st.st_size}:{st.st_mtime_ns}"


def _checker_identity() -> str:
    return _package_identity("jsonschema")


def _parser_identity() -> str:
    """What besides the text and wsm's code decides the parsed document."""
    return f"document 1; {_package_identity('yaml')}; python {sys.version}; {marshal.version}"


def verdict_key(text: str) -> str:
    """SHA-256 (hex) of the file's text, the schema, the jsonschema checking it and wsm's
    version: an entry under it means "this text passed this schema"."""
    digest = sha256()
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


def _read_entry(entry: Path, key: str) -> Optional[bytes]:
    """What follows `key` in the entry (b"": nothing) when the entry is ours (this user's
    file) and begins with `key`; None otherwise."""
    try:
        with open(entry, "rb") as f:
            if os.fstat(f.fileno()).st_uid != os.getuid():
                return None
            content = f.read()
    except (OSError, ValueError):
        return None
    head = key.encode()
    if content == head:
        return b""
    if content.startswith(head + b"\n"):
        return content[len(head) + 1 :]
    return None


def _document_bytes(doc: Document) -> Optional[bytes]:
    """`doc` as kept after the key: the SHA-256 of the rest, a newline, then the parser's
    identity, the data and the nodes, marshalled (no import, and fast to read). None for
    data marshal cannot hold (a YAML timestamp): that pass is kept without its document."""
    nodes = [
        (path, (i.line, i.column, i.key_line, i.key_column, i.text, i.quoted, i.empty))
        for path, i in doc.nodes.items()
    ]
    try:
        body = marshal.dumps((_parser_identity(), doc.data, nodes))
    except ValueError:
        return None
    return sha256(body).hexdigest().encode() + b"\n" + body


def _document_from(payload: bytes, shown: str) -> Optional[Document]:
    """The document `_document_bytes` kept, its messages naming `shown`; None when the
    payload is damaged or was made by another parser or interpreter."""
    digest, _, body = payload.partition(b"\n")
    if sha256(body).hexdigest().encode() != digest:
        return None
    try:
        identity, data, nodes = marshal.loads(body)
        if identity != _parser_identity():
            return None
        return Document(shown, data, {tuple(path): NodeInfo(*info) for path, info in nodes})
    except (ValueError, EOFError, TypeError):
        return None


def _remember(folder: Path, entry: Path, key: str, document: Optional[bytes] = None) -> None:
    from workspace_manager.private_files import private_dir, write_private

    try:
        private_dir(folder)
        write_private(entry, key.encode() + (b"\n" + document if document else b""))
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


def _touch(entry: Path) -> None:
    try:
        os.utime(entry)  # recently used: the last to be trimmed
    except OSError:
        pass


def cached_document(text: str, shown: str, folder: Optional[Path] = None) -> Optional[Document]:
    """The document parsed from `text` when it passed this schema before (its problems,
    if any later check finds one, naming the file `shown`), so no YAML parser is needed;
    None when it did not, or its pass was kept without the document."""
    try:
        folder = folder if folder is not None else cache_folder()
        key = verdict_key(text)
    except (OSError, RuntimeError, ValueError):  # no home folder, no cache
        return None
    entry = folder / key
    payload = _read_entry(entry, key)
    doc = _document_from(payload, shown) if payload else None
    if doc is not None:
        _touch(entry)
    return doc


def cached_schema_issues(
    text: str,
    doc: Document,
    check: Callable[[Document], List[Issue]],
    folder: Optional[Path] = None,
    keep_document: bool = False,
) -> List[Issue]:
    """`check(doc)` (schema.schema_issues), or [] at once when `text` passed this schema
    before. A pass is remembered, with `doc` for `cached_document` when `keep_document`
    (for a document read without problems); problems never are."""
    try:
        folder = folder if folder is not None else cache_folder()
        key = verdict_key(text)
    except (OSError, RuntimeError, ValueError):  # no home folder, no cache
        return check(doc)
    entry = folder / key
    kept = _read_entry(entry, key)
    if kept is not None:
        if keep_document and not (kept and _document_from(kept, doc.path)):
            document = _document_bytes(doc)
            if document is not None:  # a pass kept without it, or damaged: now with it
                _remember(folder, entry, key, document)
                return []
        _touch(entry)
        return []
    issues = check(doc)
    if not issues:
        _remember(folder, entry, key, _document_bytes(doc) if keep_document else None)
    return issues
