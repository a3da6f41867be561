"""wsm's own secrets out of the environment a location's process inherits.

A location's process starts from the manager's environment, which holds the tokens wsm
reads for itself: the `token_env` variable of every `grpc_server` entry, and the token of
`wsm serve --token-env`. Repository code (and every package it imports) has no business
with them, so they are removed, unless the location sets that variable in its own
`env_vars`: what a location asks for by name it gets.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Iterable, Optional, Tuple

from workspace_manager.workspace.model import LocationConfig, RemoteTarget, Workspace


def wsm_secret_vars(workspace: Workspace, extra: Iterable[str] = ()) -> FrozenSet[str]:
    """Names of the variables that hold wsm's own secrets for ``workspace``.

    The manager asks once per location start, and the answer reads every location: the
    last answer is kept for the same (frozen) workspace object, or 1,000 starts read a
    million locations."""
    global _last
    extra = tuple(extra)
    if _last is not None and _last[0] is workspace and _last[1] == extra:
        return _last[2]
    names = {
        loc.target.token_env
        for loc in workspace.locations
        if isinstance(loc.target, RemoteTarget) and loc.target.token_env
    }
    names.update(n for n in extra if n)
    found = frozenset(names)
    _last = (workspace, extra, found)
    return found


_last: Optional[Tuple[Workspace, Tuple[str, ...], FrozenSet[str]]] = None


def without_secrets(
    env: Dict[str, str], location: LocationConfig, secrets: FrozenSet[str]
) -> Dict[str, str]:
    """``env`` without the variables in ``secrets``, except those the location's own
    `env_vars` sets."""
    own = {name for name, _value in location.env_vars}
    return {k: v for k, v in env.items() if k not in secrets or k in own}
