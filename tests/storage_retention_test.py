"""The manager's retention task: prunes at once and then periodically, survives errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Dict, List

from workspace_manager.storage.base import StorageError
from workspace_manager.storage.records import SUCCESS, Retention, RunRecord
from workspace_manager.storage.retention import keep_pruning, retention_from
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.storage.writer import AsyncStorage
from workspace_manager.workspace.model import DaemonConfig

DAY = 86400.0


def test_retention_from_the_daemon_block() -> None:
    assert retention_from(DaemonConfig()) == Retention(90.0, 30.0, 7.0, 1.0)
    custom = DaemonConfig(run_retention_days=None, log_retention_days=2.5)
    assert retention_from(custom) == Retention(None, 2.5, 7.0, 1.0)


def test_keep_pruning_prunes_periodically_and_survives_a_failure(tmp_path: Path) -> None:
    class Flaky(SqliteStorage):
        fail_next = True

        def prune(self, now: float, retention: Retention) -> Dict[str, int]:
            if self.fail_next:
                self.fail_next = False
                raise StorageError("database or disk is full")
            return super().prune(now, retention)

    async def main() -> List[Dict[str, int]]:
        inner = Flaky(tmp_path / "runs.db")
        store = AsyncStorage(inner)
        await store.add_run(RunRecord("old", "loc", "job", status=SUCCESS, ended_at=1.0))
        heard: List[Dict[str, int]] = []
        task = asyncio.ensure_future(
            keep_pruning(
                store,
                lambda: Retention(runs_days=1),
                every_seconds=0.05,
                clock=lambda: 10 * DAY,
                on_pruned=heard.append,
            )
        )
        for _ in range(200):
            if heard:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await store.list_runs() == []
        await store.close()
        return heard

    assert asyncio.run(main()) == [{"runs": 1, "logs": 0, "ticks": 0}]
