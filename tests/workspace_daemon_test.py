"""The workspace's `daemon:` block and a location's own `daemon: {max_concurrent_runs}`
become DaemonConfig and LocationConfig.max_concurrent_runs (bad ones: the corpus,
tests/workspace_corpus/bad_daemon.yaml and dup_tag_limit.yaml)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from workspace_manager.workspace.load import load_workspace
from workspace_manager.workspace.model import DaemonConfig, TagConcurrencyLimit


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "repo.py").write_text("")
    path = tmp_path / "workspace.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_daemon_block_as_the_contract_shows_it(tmp_path: Path) -> None:
    ws = load_workspace(
        write(
            tmp_path,
            """
            daemon:
              default_status: running
              max_concurrent_runs: 3
              tag_concurrency_limits: [{key: database, value: prod, limit: 2}, {key: gpu, limit: 1}]
              run_timeout_seconds: 3600
              run_drain_seconds: 5
              retention: {runs_days: 90, logs_days: 30, ticks_days: 7, skipped_ticks_days: null}
            load_from:
              - python_file: {relative_path: repo.py, daemon: {max_concurrent_runs: 2}}
              - python_file: {relative_path: repo.py, location_name: other}
            """,
        )
    )
    assert ws.daemon == DaemonConfig(
        default_status="RUNNING",
        max_concurrent_runs=3,
        tag_concurrency_limits=(
            TagConcurrencyLimit("database", 2, "prod"),
            TagConcurrencyLimit("gpu", 1, None),
        ),
        run_timeout_seconds=3600,
        run_drain_seconds=5,
        run_retention_days=90,
        log_retention_days=30,
        tick_retention_days=7,
        skipped_tick_retention_days=None,
    )
    assert [loc.max_concurrent_runs for loc in ws.locations] == [2, None]


def test_no_daemon_block_gives_the_defaults(tmp_path: Path) -> None:
    ws = load_workspace(write(tmp_path, "load_from: [python_file: repo.py]\n"))
    assert ws.daemon == DaemonConfig()
    assert ws.daemon.max_concurrent_runs == 10 and ws.daemon.run_drain_seconds == 30
    assert ws.locations[0].max_concurrent_runs is None
