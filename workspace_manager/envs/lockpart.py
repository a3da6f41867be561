"""The part of a ``uv.lock`` that one project of it installs, as a digest for its env's key.

Several projects of one uv workspace share one ``uv.lock``. Keyed by the whole lock, re-locking
for one member would change every member's key and rebuild them all. A member's environment
is decided by the lock's entries it can reach: its own ``[[package]]`` entry, and every entry
reachable from it through the names its entries mention (``dependencies``,
``optional-dependencies``, ``dev-dependencies``, ``metadata``: every ``name`` in the entry),
plus the lock's header (format version, ``requires-python``, resolution markers, options),
which decides which of those entries apply. That set is a superset of what
``uv sync --locked`` installs for the member with any extras and groups (every extra and
group is followed, and an entry is reached by name, so each locked version of a name is in
it): a change outside it cannot change the member's environment, and a change inside it may
only rebuild it needlessly. The workspace's member list (``[manifest] members``) is left out
of the header: adding a member to the workspace does not change what another one installs.
When the lock has no entry for the project's folder, the caller keys the whole lock.

The lock is read by the standard TOML parser (``tomllib``; ``tomli``, the same parser, before
Python 3.11), which takes ~250 ms for a lock of 1 MiB here. So that a warm start never pays
it, each lock content's parts are kept in ``<cache>/lock-parts/<sha256 of the lock>.json``
({project folder: part}): a start reads that file, and parses only a lock it has not seen
(which is then built, for seconds, anyway). In a process, a parse serves every member.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, as a package (tomllib is tomli, taken into the standard library)
    import tomli as tomllib


def _digest(value: Any) -> bytes:
    """sha256 of ``value``'s canonical JSON (keys sorted): equal data, equal digest, whatever
    its layout, comments or key order in the lock."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).digest()


def _names(value: Any, found: Set[str]) -> None:
    """Every ``name = "..."`` in ``value`` (an entry of the lock, its tables and arrays)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            name = item.get("name")
            if isinstance(name, str):
                found.add(name)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class _Lock:
    """One lock's header and entries, indexed by name and by the local project folder. What
    an entry mentions and its digest are worked out when a walk first reaches it, once.

    Raises ``tomllib.TOMLDecodeError`` for a file that is not TOML."""

    def __init__(self, text: str) -> None:
        doc = tomllib.loads(text)
        packages = doc.pop("package", [])
        manifest = doc.get("manifest")
        if isinstance(manifest, dict):
            doc["manifest"] = {k: v for k, v in manifest.items() if k != "members"}
        self.header = _digest(doc)
        self.by_name: Dict[str, List[Dict[str, Any]]] = {}
        self.by_folder: Dict[str, str] = {}  # a local project's folder, relative: its name
        for entry in packages if isinstance(packages, list) else ():
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str):
                continue
            self.by_name.setdefault(name, []).append(entry)
            source = entry.get("source")
            if isinstance(source, dict):
                for kind in ("virtual", "editable", "directory"):
                    folder = source.get(kind)
                    if isinstance(folder, str):
                        self.by_folder[os.path.normpath(folder or ".")] = name
        self._entries: Dict[str, Tuple[bytes, Set[str]]] = {}
        self._parts: Dict[str, Optional[str]] = {}

    def _entry(self, name: str) -> Tuple[bytes, Set[str]]:
        """(digest of every entry named ``name``, the names they mention)."""
        done = self._entries.get(name)
        if done is None:
            entries = self.by_name[name]
            mentioned: Set[str] = set()
            _names(entries, mentioned)
            done = self._entries[name] = (_digest(entries), mentioned)
        return done

    def part(self, folder: str) -> Optional[str]:
        """Digest of the header and the entries reachable from the project at ``folder``."""
        if folder in self._parts:
            return self._parts[folder]
        root = self.by_folder.get(folder)
        digest: Optional[str] = None
        if root is not None:
            seen: Set[str] = set()
            todo = [root]
            while todo:
                name = todo.pop()
                if name in seen or name not in self.by_name:
                    continue
                seen.add(name)
                todo.extend(self._entry(name)[1] - seen)
            h = hashlib.sha256(self.header)
            for name in sorted(seen):
                h.update(self._entry(name)[0])
            digest = "part:" + h.hexdigest()
        self._parts[folder] = digest
        return digest


_parsed: Dict[Tuple[str, str], _Lock] = {}
_guard = threading.Lock()  # keys are computed in the manager's worker threads too


def project_part(
    lock: Path, project: Path, store: Optional[Path] = None, writable: bool = True
) -> Optional[str]:
    """A digest of what ``lock`` (a uv.lock) holds for the project in folder ``project`` (its
    own or its workspace's lock): equal for two lock contents that agree on the project's
    reachable entries and header. None when the lock has no entry for that folder, or is not
    TOML (then key the whole lock). OSError when the lock cannot be read.

    ``store``: the folder of the parts already worked out, by lock content (the env cache's
    ``lock-parts``); one that cannot be read or written (``writable`` false: a frozen or
    read-only cache) only costs a parse. Within a process, each lock content is parsed once."""
    data = Path(lock).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    folder = os.path.normpath(os.path.relpath(project, Path(lock).parent))
    record = store / f"{sha}.json" if store is not None else None
    known: Dict[str, Optional[str]] = {}
    if record is not None:
        try:
            known = json.loads(record.read_text())
        except (OSError, ValueError):
            known = {}
        if isinstance(known, dict) and folder in known:
            return known[folder]
        known = known if isinstance(known, dict) else {}
    ident = (str(lock), sha)
    with _guard:
        parsed = _parsed.get(ident)
        if parsed is None:
            try:
                parsed = _Lock(data.decode("utf-8", errors="replace"))
            except tomllib.TOMLDecodeError:
                return None  # uv refuses it too, and its error is the build's
            # one entry per lock file: an edited lock replaces its old parse
            for old in [k for k in _parsed if k[0] == ident[0]]:
                del _parsed[old]
            _parsed[ident] = parsed
        part = parsed.part(folder)
    if record is not None and writable:
        from workspace_manager.private_files import private_dir, write_private

        try:
            private_dir(record.parent)
            write_private(record, json.dumps({**known, folder: part}, sort_keys=True))
        except OSError:
            pass  # a full disk or a read-only cache: the next process parses again
    return part
