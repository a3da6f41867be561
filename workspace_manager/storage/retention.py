"""Retention in the manager: the workspace's `daemon:` retention as a `Retention`, and a
task that prunes now and then (storage `prune`, see storage/sql.py for what goes)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Dict, Optional

from ..workspace.model import DaemonConfig
from .records import Retention
from .writer import AsyncStorage

#: How often the manager prunes: retention is counted in days, an hour late is nothing.
PRUNE_EVERY_SECONDS = 3600.0

log = logging.getLogger(__name__)


def retention_from(config: DaemonConfig) -> Retention:
    """The `daemon:` block's retention days (None: forever) as a storage `Retention`."""
    return Retention(
        runs_days=config.run_retention_days,
        logs_days=config.log_retention_days,
        ticks_days=config.tick_retention_days,
        skipped_ticks_days=config.skipped_tick_retention_days,
    )


async def keep_pruning(
    store: AsyncStorage,
    retention: Callable[[], Retention],
    every_seconds: float = PRUNE_EVERY_SECONDS,
    clock: Callable[[], float] = time.time,
    on_pruned: Optional[Callable[[Dict[str, int]], None]] = None,
) -> None:
    """Prune at once, then every `every_seconds`, until cancelled. `retention()` is asked
    each time (a reloaded workspace's new retention applies at the next pass). A failing
    prune (a full disk, a locked database) is logged and tried again at the next pass;
    this never raises but CancelledError. `on_pruned(counts)` hears of each pass that
    deleted something."""
    while True:
        try:
            counts = await store.prune(clock(), retention())
            if on_pruned is not None and any(counts.values()):
                on_pruned(counts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - retention must never stop the manager
            log.warning("pruning old runs, logs and ticks: %s", exc)
        await asyncio.sleep(every_seconds)
