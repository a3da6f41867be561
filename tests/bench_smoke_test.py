"""Smoke test of the benchmark's repository generator and its percentile helper (bench/)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import gen_repo  # noqa: E402
import measure  # noqa: E402

from workspace_manager.sdk.discovery import find_repositories  # noqa: E402
from workspace_manager.sdk.snapshot import repository_snapshot  # noqa: E402

SHAPE = gen_repo.RepoShape(jobs=12, schedules=3, sensors=4)


def _import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wsm_repository_has_the_requested_shape(tmp_path: Path) -> None:
    repos = gen_repo.generate(tmp_path, SHAPE)
    module = _import_file(repos.wsm_file, "bench_smoke_wsm_repo")
    (repo,) = find_repositories(module)
    snap = repository_snapshot(repo)
    assert snap["name"] == gen_repo.REPOSITORY_NAME
    assert len(snap["jobs"]) == 12
    assert [s["job_name"] for s in snap["schedules"]] == ["job_0", "job_1", "job_2"]
    assert [s["job_name"] for s in snap["sensors"]] == ["job_3", "job_4", "job_5", "job_6"]
    assert repos.wsm_file.parent != repos.dagster_file.parent


def test_dagster_repository_mirrors_the_wsm_one(tmp_path: Path) -> None:
    repos = gen_repo.generate(tmp_path, SHAPE)
    tree = ast.parse(repos.dagster_file.read_text())
    decorated = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                name = deco.func.id if isinstance(deco, ast.Call) else deco.id
                decorated.setdefault(name, []).append(node.name)
    schedules = [
        node.targets[0].id
        for node in tree.body
        if isinstance(node, ast.Assign) and node.value.func.id == "ScheduleDefinition"
    ]
    assert len(decorated["op"]) == len(decorated["job"]) == 12
    assert decorated["sensor"] == [f"sensor_{i}" for i in range(4)]
    assert schedules == [f"schedule_{i}" for i in range(3)]
    assert decorated["repository"] == [gen_repo.REPOSITORY_NAME]


def test_shape_refuses_more_targets_than_jobs() -> None:
    with pytest.raises(ValueError):
        gen_repo.RepoShape(jobs=3, schedules=2, sensors=2)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert measure.percentile(values, 50) == 50
    assert measure.percentile(values, 99) == 99
    assert measure.percentile([7.0], 99) == 7.0
