"""Talking to a running manager over its control socket."""

from __future__ import annotations

import argparse

from workspace_manager.cli import targets

# typing for the type checkers only (they take any name TYPE_CHECKING as true): `wsm
# status` imports this module, and typing costs ~5 ms of its start
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

EXIT_NO_MANAGER = 3


def connect(args: argparse.Namespace, timeout: float = 10.0):
    """A protocol client on the manager for these arguments, or None when none runs."""
    record = targets.find_running(args)
    if record is None:
        return None, None
    # imported here: the client (ssl, msgpack: ~40 ms) is for when a manager runs
    from workspace_manager.protocol.client import Client

    try:
        return Client(record.control, record.secret, timeout=timeout), record
    except (OSError, ConnectionError):
        return None, None


def call(
    args: argparse.Namespace, method: str, params: Optional[dict] = None, timeout: float = 10.0
) -> Any:
    client, _ = connect(args, timeout)
    if client is None:
        targets.fail(no_manager_message(args), EXIT_NO_MANAGER)
    with client:
        return client.call(method, params or {})


def no_manager_message(args: argparse.Namespace) -> str:
    """`no manager is running for FILE`, and why when the file does not exist."""
    from workspace_manager.cli.runstore import missing_file

    missing = missing_file(args)
    why = f" ({missing}: no such file)" if missing else ""
    return f"no manager is running for {targets.describe(args)}{why}"
