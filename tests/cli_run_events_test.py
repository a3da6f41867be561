"""Run and tick events on the console: one line each in text, one JSON object each with
`--log-format json` (EventSink.run / EventSink.tick, as the coordinator and daemon call them)."""

from __future__ import annotations

import io
import json

from workspace_manager.cli.console import Console, JsonConsole
from workspace_manager.storage.records import RunRecord, TickRecord

T0 = 1_700_000_000.0


def a_run(**kw) -> RunRecord:
    fields = dict(
        run_id="0f3c12ab" + "0" * 24,
        location="team_a",
        job="my_job",
        origin={"kind": "schedule", "name": "nightly", "tick_id": 4, "scheduled_time": T0},
        created_at=T0,
    )
    fields.update(kw)
    return RunRecord(**fields)  # type: ignore[arg-type]


def test_json_run_events_carry_the_run() -> None:
    out = io.StringIO()
    sink = JsonConsole(out, clock=lambda: T0).sink()
    sink.run(a_run(), "queued")
    sink.run(a_run(status="STARTED", pid=4242, start_time=T0 + 0.1, started_at=T0 + 0.2), "started")
    failed = a_run(
        status="FAILURE",
        pid=4242,
        start_time=T0 + 0.1,
        ended_at=T0 + 2.6,
        exit_code=1,
        error="ValueError: boom",
    )
    sink.run(failed, "failure")
    recs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["event"], r["status"]) for r in recs] == [
        ("run", "queued"),
        ("run", "started"),
        ("run", "failure"),
    ]
    first, _, last = recs
    assert first["ts"] == "2023-11-14T22:13:20.000Z" and first["location"] == "team_a"
    assert first["run_id"] == "0f3c12ab" + "0" * 24 and first["job"] == "my_job"
    assert first["origin"] == {
        "kind": "schedule",
        "name": "nightly",
        "tick_id": 4,
        "scheduled_time": T0,
    }
    assert "duration_seconds" not in first
    assert last["duration_seconds"] == 2.5 and last["exit_code"] == 1
    assert last["error"] == "ValueError: boom" and last["pid"] == 4242


def test_json_tick_events_name_the_instigator_and_its_runs() -> None:
    out = io.StringIO()
    sink = JsonConsole(out, clock=lambda: T0).sink()
    sink.tick(
        TickRecord(
            "team_a",
            "watch",
            "sensor",
            T0,
            status="success",
            tick_id=7,
            run_ids=["r1", "r2"],
            run_keys_skipped=["k0"],
        )
    )
    sink.tick(
        TickRecord(
            "team_a",
            "watch",
            "sensor",
            T0 + 30,
            status="skipped",
            skip_reason="nothing new",
            tick_id=8,
        )
    )
    recs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert recs[0]["event"] == "tick" and recs[0]["location"] == "team_a"
    assert {k: recs[0][k] for k in ("kind", "name", "result", "tick_id", "run_ids")} == {
        "kind": "sensor",
        "name": "watch",
        "result": "success",
        "tick_id": 7,
        "run_ids": ["r1", "r2"],
    }
    assert recs[0]["run_keys_skipped"] == ["k0"] and recs[0]["tick_time"].endswith("Z")
    assert recs[1]["result"] == "skipped" and recs[1]["skip_reason"] == "nothing new"


def test_text_run_lines() -> None:
    out = io.StringIO()
    console = Console(out)
    console.width(["team_a", "b"])
    sink = console.sink()
    sink.run(a_run(), "queued")
    sink.run(a_run(status="STARTED", pid=4242), "started")
    sink.run(
        a_run(status="FAILURE", start_time=T0, ended_at=T0 + 1.5, error="ValueError:\n boom"),
        "failure",
    )
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]  # drop the time
    assert lines == [
        "team_a  run       queued     0f3c12ab my_job  (schedule nightly)",
        "team_a  run       started    0f3c12ab my_job  pid 4242",
        "team_a  run       failure    0f3c12ab my_job  in 1.50s  ValueError: boom "
        "(see `wsm run show 0f3c12ab`)",
    ]


def test_text_ticks_repeat_a_skip_or_failure_only_when_its_reason_changes() -> None:
    out = io.StringIO()
    console = Console(out)
    sink = console.sink()
    for i in range(5):
        sink.tick(
            TickRecord(
                "a", "watch", "sensor", T0 + 30 * i, status="skipped", skip_reason="nothing new"
            )
        )
    sink.tick(TickRecord("a", "other", "sensor", T0, status="skipped", skip_reason="nothing new"))
    sink.tick(TickRecord("a", "watch", "sensor", T0, status="success", run_ids=["0f3c12ab99"]))
    sink.tick(TickRecord("a", "watch", "sensor", T0, status="skipped", skip_reason="nothing new"))
    for _ in range(3):  # the same failure again and again: printed once, its first line
        error = "KeyError: 'x'\nTraceback (most recent call last):\n  File 'repo.py'\nKeyError: 'x'"
        sink.tick(TickRecord("a", "nightly", "schedule", T0, status="failure", error=error))
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [
        "a  sensor    skipped    watch  nothing new",
        "a  sensor    skipped    other  nothing new",
        "a  sensor    success    watch  launched 1 run: 0f3c12ab",
        "a  sensor    skipped    watch  nothing new",
        "a  schedule  failure    nightly  KeyError: 'x' (see `wsm schedule ticks nightly --json`)",
    ]


def test_text_lines_line_up_whatever_the_names() -> None:
    """Locations padded by terminal columns (a wide character takes two); a run's or a
    tick's event in one column, whatever its job's or instigator's name."""
    import unicodedata

    from workspace_manager.supervisor.state import State, Transition

    def columns(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)

    out = io.StringIO()
    console = Console(out)
    console.width(["データ", "a_long_location"])
    sink = console.sink()
    sink.transition("データ", Transition(T0, State.STARTING, State.READY, "loaded"))
    sink.transition("a_long_location", Transition(T0, State.STARTING, State.READY, "loaded"))
    sink.run(a_run(location="データ", job="j"), "queued")
    sink.run(a_run(location="a_long_location", job="a_much_longer_job_name"), "queued")
    sink.tick(TickRecord("データ", "w", "sensor", T0, status="success", run_ids=["ab"]))
    sink.tick(TickRecord("a_long_location", "nightly", "schedule", T0, status="success"))
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    states = {columns(ln[: ln.index("ready")]) for ln in lines[:2]}
    events = {columns(ln[: ln.index(" queued ") + 1]) for ln in lines[2:4]}
    events |= {columns(ln[: ln.index(" success ") + 1]) for ln in lines[4:]}
    assert len(states) == 1 and len(events) == 1, "\n".join(lines)
