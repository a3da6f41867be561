"""`wsm up` on sample_workspaces/teams, as the README's quick start runs it: billing's
`failed_payments` sensor (RUNNING in the code, every 5 s) launches its runs within seconds,
the retry of a hard-declined payment fails, and the `billing_failures` run failure sensor
pages on-call in a run of its own; in the slow suite, ingest's `* * * * *` schedule fires
at the next minute. `wsm down` leaves no process behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from e2e import WorkspaceDir, WsmUp, wait_for

TEAMS = Path(__file__).resolve().parent.parent / "sample_workspaces" / "teams" / "workspace.yaml"


def runs(ws: WorkspaceDir) -> List[Dict[str, Any]]:
    done = ws.run("run", "list", "-w", str(TEAMS), "--json")
    if done.returncode != 0:  # no database yet
        return []
    return json.loads(done.stdout)


def finished(ws: WorkspaceDir, job: str) -> List[Dict[str, Any]]:
    return [r for r in runs(ws) if r["job"] == job and r["status"] in ("SUCCESS", "FAILURE")]


def logs(ws: WorkspaceDir, run_id: str) -> str:
    done = ws.run("run", "logs", "-w", str(TEAMS), run_id)
    assert done.returncode == 0, done.stderr
    return done.stdout


def instigators(ws: WorkspaceDir, kind: str) -> Dict[str, Dict[str, Any]]:
    done = ws.run(kind, "list", "-w", str(TEAMS), "--json")
    assert done.returncode == 0, done.stderr
    return {d["name"]: d for d in json.loads(done.stdout)}


def down(ws: WorkspaceDir, up: WsmUp) -> None:
    up.track()
    done = ws.run("down", "-w", str(TEAMS))
    assert done.returncode == 0, done.stderr
    assert up.proc.wait(60) == 0


def test_the_sensor_fires_within_seconds_and_a_failure_pages_on_call(ws: WorkspaceDir) -> None:
    with WsmUp(ws, "-w", str(TEAMS)) as up:
        up.wait_all_settled()
        wait_for(lambda: len(finished(ws, "retry_payment")) == 2, 30, "the two payment retries")
        page = wait_for(lambda: finished(ws, "page_on_call"), 30, "the on-call page")
        up.track()
        sensors = instigators(ws, "sensor")
        schedules = instigators(ws, "schedule")
        down(ws, up)
    assert sensors["failed_payments"]["status"] == "RUNNING"
    assert sensors["billing_failures"]["sensor_type"] == "run_status"
    assert schedules["heartbeat_schedule"]["status"] == "RUNNING"
    assert schedules["heartbeat_schedule"]["cron_schedule"] == "* * * * *"
    retries = {r["run_config"]["payment_id"]: r for r in finished(ws, "retry_payment")}
    assert retries["pay_004"]["status"] == "SUCCESS"
    declined = retries["pay_002"]
    assert declined["status"] == "FAILURE"
    assert declined["origin"] == {
        "kind": "sensor",
        "name": "failed_payments",
        "tick_id": declined["origin"]["tick_id"],
        "run_key": "retry-pay_002-2",
    }
    assert "PaymentDeclined: pay_002: card_declined is final" in declined["error"]
    assert "retrying pay_004" in logs(ws, retries["pay_004"]["run_id"])
    # the run failure sensor saw the failed run once, and its run logged the page
    assert [p["status"] for p in page] == ["SUCCESS"]
    assert page[0]["origin"]["name"] == "billing_failures"
    assert f"paging billing on-call: run {declined['run_id']} of retry_payment" in logs(
        ws, page[0]["run_id"]
    )


@pytest.mark.slow
def test_the_every_minute_schedule_fires(ws: WorkspaceDir) -> None:
    with WsmUp(ws, "-w", str(TEAMS)) as up:
        up.wait_all_settled()
        beat = wait_for(lambda: finished(ws, "heartbeat"), 75, "the heartbeat schedule's first run")
        down(ws, up)
    assert beat[0]["status"] == "SUCCESS"
    assert beat[0]["origin"]["kind"] == "schedule"
    assert beat[0]["origin"]["scheduled_time"] % 60 == 0  # a minute boundary
    assert "ingest is alive at" in logs(ws, beat[0]["run_id"])
