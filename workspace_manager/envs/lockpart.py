"""The part of a ``uv.lock`` that one project of it installs, as a digest for its env's key.

Several projects of one uv workspace share one ``uv.lock``. Keyed by the whole lock, re-locking
for one member would change every member's key and rebuild them all. A member's environment
is decided by the lock's entries it can reach: its own ``[[package]]`` entry, and every entry
reachable from it through the names its entries mention (``dependencies``,
``optional-dependencies``, ``dev-dependencies``, ``metadata.requires-dist``), plus the lock's
header (format version, ``requires-python``, resolution markers, options), which decides
which of those entries apply. That set is a superset of what ``uv sync --locked`` installs
for the member with any extras and groups (every extra and group is followed, and an entry
is reached by name, so each locked version of a name is in it): a change outside it cannot
change the member's environment, and a change inside it may only rebuild it needlessly.

Read as text, not TOML: ``tomllib`` is 3.11+ and a pure-Python TOML parse of a large lock
costs tens of milliseconds; uv writes each ``[[package]]`` table as one block starting with
that line, with ``name = "..."`` for the package and each name it depends on. When the
project's entry cannot be found (another writer, an unknown layout), the caller keys the
whole lock, as before. The workspace's member list (``[manifest] members``) is left out of
the header: adding a member to the workspace does not change what another one installs.

Parsed once per lock content in a process (``uv export --frozen --package`` gives a similar
set, but costs a uv process per member on every warm start).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

_PACKAGE = "\n[[package]]\n"
_NAME = re.compile(r'^name = "([^"]+)"', re.MULTILINE)
# Every name an entry mentions: its dependencies of each kind and its metadata. A literal
# start keeps the scan fast (a leading \b costs ten times more); what it also catches
# ("filename = ..." of a wheel) names no entry, and the walk skips it.
_MENTIONED = re.compile(r'name = "([^"]+)"')
_SOURCE = re.compile(r'^source = \{ (virtual|editable|directory) = "([^"]*)"', re.MULTILINE)
# `members = [...]`, on one line or as uv writes it, one quoted name a line.
_MEMBERS = re.compile(r'^members = \[(?:[^\]\n]*|(?:\n[ \t]*"[^"\n]*",?)*\n)\]\n', re.MULTILINE)


class _Lock:
    """One lock's header and entries, indexed by name and by the local project folder. What
    an entry mentions and its digest are worked out when a walk first reaches it, once."""

    def __init__(self, text: str) -> None:
        head, *blocks = ("\n" + text).split(_PACKAGE)
        self.header = hashlib.sha256(_MEMBERS.sub("", head).encode()).digest()
        self.by_name: Dict[str, List[str]] = {}
        self.by_folder: Dict[str, str] = {}  # a local project's folder, relative: its name
        for block in blocks:
            name = _NAME.match(block) or _NAME.search(block)  # uv writes the name first
            if name is None:
                continue
            self.by_name.setdefault(name.group(1), []).append(block)
            at = block.find("\nsource = { ")
            source = _SOURCE.match(block, at + 1) if at >= 0 else None
            if source is not None:
                self.by_folder[os.path.normpath(source.group(2) or ".")] = name.group(1)
        self._entries: Dict[str, Tuple[bytes, Set[str]]] = {}
        self._parts: Dict[str, Optional[str]] = {}

    def _entry(self, name: str) -> Tuple[bytes, Set[str]]:
        """(digest of every entry named ``name``, the names they mention)."""
        done = self._entries.get(name)
        if done is None:
            h = hashlib.sha256()
            mentioned: Set[str] = set()
            for block in self.by_name[name]:
                h.update(block.encode() + b"\0")
                mentioned.update(_MENTIONED.findall(block))
            done = self._entries[name] = (h.digest(), mentioned)
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


def project_part(lock: Path, project: Path) -> Optional[str]:
    """A digest of what ``lock`` (a uv.lock) holds for the project in folder ``project`` (its
    own or its workspace's lock): equal for two lock contents that agree on the project's
    reachable entries and header. None when the lock has no entry for that folder (then key
    the whole lock). OSError when the lock cannot be read.

    Cached per lock path and content (sha256), so the members of one lock parse it once."""
    data = Path(lock).read_bytes()
    ident = (str(lock), hashlib.sha256(data).hexdigest())
    folder = os.path.normpath(os.path.relpath(project, Path(lock).parent))
    with _guard:
        parsed = _parsed.get(ident)
        if parsed is None:
            parsed = _Lock(data.decode("utf-8", errors="replace"))
            # one entry per lock file: an edited lock replaces its old parse
            for old in [k for k in _parsed if k[0] == ident[0]]:
                del _parsed[old]
            _parsed[ident] = parsed
        return parsed.part(folder)
