from __future__ import annotations

import json
import types

import pytest

from workspace_manager import DefinitionError, ScheduleDefinition, job, repository, sensor
from workspace_manager.sdk.discovery import find_repositories
from workspace_manager.sdk.snapshot import repository_snapshot, repository_summary


def module_from(source: str, name: str = "user_code") -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"{name}.py", "exec"), module.__dict__)
    return module


TWO_REPOS = """
from workspace_manager import job, repository

@job
def a_job(): ...

@repository
def zeta():
    return [a_job]

helper = 3

@repository
def alpha():
    return [a_job]

alias = zeta
"""


def test_all_repositories_in_definition_order() -> None:
    module = module_from(TWO_REPOS)
    assert [r.name for r in find_repositories(module)] == ["zeta", "alpha"]


def test_attribute_picks_one() -> None:
    module = module_from(TWO_REPOS)
    assert find_repositories(module, "alpha") == [module.alpha]
    assert find_repositories(module, "alias") == [module.zeta]


def test_missing_attribute() -> None:
    with pytest.raises(DefinitionError) as info:
        find_repositories(module_from(TWO_REPOS), "gamma")
    message = str(info.value)
    assert "module 'user_code' has no attribute 'gamma'" in message
    assert "zeta, alpha" in message


def test_attribute_that_is_not_a_repository() -> None:
    with pytest.raises(
        DefinitionError, match=r"'helper' in module 'user_code' .*is 3, not a repository"
    ):
        find_repositories(module_from(TWO_REPOS), "helper")
    undecorated = module_from("def repo():\n    return []\n")
    with pytest.raises(DefinitionError, match="decorate the function with @repository"):
        find_repositories(undecorated, "repo")


def test_no_repository() -> None:
    with pytest.raises(DefinitionError, match="no repository found in module 'empty_mod'"):
        find_repositories(module_from("x = 1", "empty_mod"))


def test_two_repositories_with_one_name() -> None:
    source = TWO_REPOS + "\nother = repository(name='alpha')(lambda: [])\n"
    with pytest.raises(DefinitionError, match="two repositories named 'alpha'"):
        find_repositories(module_from(source))
    assert find_repositories(module_from(source), "other")[0].name == "alpha"


@job(description="Loads.", tags={"team": "a", "tier": "1"})
def load():
    pass


@job
def report(context):
    """Reports."""


nightly = ScheduleDefinition(
    job=load, cron_schedule="0 2 * * *", execution_timezone="Europe/Paris", description="n"
)


@sensor(job=report, minimum_interval_seconds=45)
def new_files():
    """Looks for files."""


@repository(description="Team A.")
def team_a():
    return [nightly, new_files]


def test_snapshot_shape() -> None:
    snapshot = repository_snapshot(team_a)
    assert snapshot == {
        "name": "team_a",
        "description": "Team A.",
        "jobs": [
            {"name": "load", "description": "Loads.", "tags": {"team": "a", "tier": "1"}},
            {"name": "report", "description": "Reports.", "tags": {}},
        ],
        "schedules": [
            {
                "name": "load_schedule",
                "job_name": "load",
                "cron_schedule": "0 2 * * *",
                "execution_timezone": "Europe/Paris",
                "description": "n",
                "default_status": None,
                "tags": {},
            }
        ],
        "sensors": [
            {
                "name": "new_files",
                "job_name": "report",
                "minimum_interval_seconds": 45,
                "description": "Looks for files.",
                "default_status": None,
                "sensor_type": "standard",
                "job_names": ["report"],
                "run_status": None,
                "monitored_jobs": None,
                "monitor_all_code_locations": False,
            }
        ],
    }
    assert json.loads(json.dumps(snapshot)) == snapshot


def test_snapshot_is_a_copy() -> None:
    repository_snapshot(team_a)["jobs"][0]["tags"]["team"] = "changed"
    assert load.tags["team"] == "a"


def test_summary() -> None:
    assert repository_summary(team_a) == {
        "name": "team_a",
        "jobs": ["load", "report"],
        "schedules": ["load_schedule"],
        "sensors": ["new_files"],
    }
