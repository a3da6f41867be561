"""Which environments the running managers use, location by location.

A manager writes ``<runtime dir>/envs.json``, ``{location: env key}``, whenever a location gets
its interpreter; `wsm env prune` keeps those envs, `wsm env list` says which users run. Only
the standard library and the runtime dir's records: `wsm env list` imports no more than this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Mapping, Optional, Set, Tuple

from workspace_manager.envs import store

IN_USE_FILE = "envs.json"  # in a manager's runtime dir: JSON {location: env key}


def write_in_use(runtime_dir: Path, keys: Mapping[str, str]) -> None:
    """For a manager: publish the env key each of its locations uses (location -> key), so
    `wsm env prune` leaves them alone and `wsm env list` shows which users are running."""
    store.write_json_atomic(Path(runtime_dir) / IN_USE_FILE, {n: k for n, k in keys.items() if k})


def running_uses() -> Iterator[Tuple[str, Optional[str], str]]:
    """(workspace identity, location, env key) for every location of every running manager
    (each writes ``<runtime dir>/envs.json``). A manager of an older wsm wrote a bare list
    of keys: its location is None."""
    from workspace_manager.supervisor.runtime import manager_dir, running_managers

    for record in running_managers():
        try:
            data = json.loads((manager_dir(record.key) / IN_USE_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            for location, key in data.items():
                if isinstance(key, str):
                    yield record.identity, location, key
        elif isinstance(data, list):
            for key in data:
                if isinstance(key, str):
                    yield record.identity, None, key


def in_use_keys() -> Set[str]:
    """Env keys in use by every running manager."""
    return {key for _identity, _location, key in running_uses()}
