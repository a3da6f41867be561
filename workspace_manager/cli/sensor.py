"""`wsm sensor list|start|stop|ticks`: cli/instigators.py does the work for both kinds."""

from __future__ import annotations

from workspace_manager.cli.instigators import add_kind_parser, run

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    add_kind_parser(sub, "sensor")
