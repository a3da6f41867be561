"""A run's inputs end to end with the real `wsm up`, `wsm job launch` and `wsm run`: a run
config or tags that are not plain JSON (NaN, Infinity, 1e400, bytes that are not UTF-8, an
empty text) are refused at every entry with one line (the CLI: exit 2; the API: 400 and no
run; a sensor's RunRequest: its tick fails), and a record stored before that refusal (NaN in
its run config) never breaks an answer: the API gives strict JSON, `wsm run list --json`
too, and the console shows no traceback."""

from __future__ import annotations

import http.client
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from e2e import WorkspaceDir, WsmUp, control_call, manager_key, wait_for

from workspace_manager.protocol.errors import RemoteError
from workspace_manager.storage.records import RunRecord, TickRecord
from workspace_manager.storage.sqlite import SqliteStorage

REPO = """
from workspace_manager import DefaultSensorStatus, RunRequest, job, repository, sensor

@job
def hello(context):
    pass

@sensor(job=hello, minimum_interval_seconds=1, default_status=DefaultSensorStatus.RUNNING)
def nan_sensor(context):
    yield RunRequest(run_key="fine", run_config={"x": 1})
    yield RunRequest(run_key="bad", run_config={"x": float("nan")})

@repository
def repo():
    return [hello, nan_sensor]
"""


def make(ws: WorkspaceDir) -> None:
    ws.file("code/inputs_repo.py", REPO)
    entry = {"relative_path": "code/inputs_repo.py", "location_name": "team"}
    ws.workspace({"load_from": [{"python_file": entry}]})


def store(ws: WorkspaceDir) -> SqliteStorage:
    return SqliteStorage(Path(ws.env["WSM_STATE_DIR"]) / manager_key(ws) / "runs.db", create=False)


def runs(ws: WorkspaceDir) -> List[RunRecord]:
    s = store(ws)
    try:
        return s.list_runs(limit=None)
    finally:
        s.close()


def ticks(ws: WorkspaceDir, name: str) -> List[TickRecord]:
    s = store(ws)
    try:
        return s.list_ticks("team", name, "sensor", 100)
    finally:
        s.close()


def strict(text: str) -> Any:
    """json.loads that refuses NaN and Infinity, as a browser's JSON.parse does."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def call(up: WsmUp, method: str, path: str, body: Optional[bytes] = None) -> Tuple[int, str, str]:
    """(status, content type, text) of one API request."""
    assert up.port is not None
    conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


def one_line(done: Any, code: int, *words: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    err = done.stderr
    assert err.startswith("wsm: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


def test_the_cli_refuses_bad_run_configs_and_tags_with_one_line_and_exit_2(
    ws: WorkspaceDir,
) -> None:
    make(ws)
    (ws.root / "bad.json").write_bytes(b"\xff\xfe")
    (ws.root / "nan.json").write_text('{"a": {"b": [1, NaN]}}')
    (ws.root / "empty.json").write_text("")
    (ws.root / "nan.yaml").write_text("a: .nan\n")
    (ws.root / "date.yaml").write_text("when: 2024-01-01\n")
    (ws.root / "adir").mkdir()
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        cases = [
            (["--config", '{"a": NaN}'], ["run_config.a", "NaN"]),
            (["--config", '{"a": Infinity}'], ["Infinity"]),
            (["--config", '{"a": -1e400}'], ["-Infinity"]),
            (["--config", "@bad.json"], ["--config @bad.json", "not UTF-8"]),
            (["--config", "@nan.json"], ["run_config.a.b[1]", "NaN"]),
            (["--config", '{"a": "\\ud800"}'], ["run_config.a", "lone surrogate"]),
            (["--config", "@empty.json"], ["--config @empty.json", "empty"]),
            (["--config", "@nan.yaml"], ["NaN"]),
            (["--config", "@date.yaml"], ["run_config.when", "date"]),
            (["--config", "@adir"], ["--config @adir", "Is a directory"]),
            (["--config", "@missing.json"], ["--config @missing.json", "No such file"]),
            (["--config", "@/dev/zero"], ["--config @/dev/zero", "larger than 16 MiB"]),
            (["--config", "@"], ["--config @", "give a file"]),
            (["--config", ""], ["--config ''", "empty"]),
            (["--config", "   "], ["empty"]),
            (["--config", "null"], ["must be an object"]),
            (["--config", "[" * 100000], ["--config"]),
            (["--tag", "noequals"], ["KEY=VALUE"]),
            (["--tag", "k=\udcff"], ["tags.k", "lone surrogate"]),  # a non-UTF-8 byte
            (["--tag", "wsm/priority=high"], ["wsm/priority", "integer"]),
            (["--tag", "wsm/priority=" + "9" * 30], ["wsm/priority", "from"]),
            (["--tag", "wsm/timeout_seconds=soon"], ["wsm/timeout_seconds", "number"]),
            (["--tag", "wsm/timeout_seconds=nan"], ["wsm/timeout_seconds", "finite"]),
            (["--tag", "wsm/max_retries=inf"], ["wsm/max_retries", "finite"]),
            (["--tag", "wsm/max_retries=-1"], ["wsm/max_retries", "negative"]),
        ]
        wrong = []  # every case is tried, so that a failure lists them all
        for argv, words in cases:
            for command in ("launch", "execute"):
                try:
                    one_line(ws.run("job", command, "hello", *argv), 2, *words)
                except AssertionError as exc:
                    wrong.append(f"{command} {argv[0]} {argv[1][:40]!r}: {exc}")
        assert not wrong, "\n".join(wrong)
        # the control socket (any other client) is refused by the same check, nothing stored
        try:
            control_call(ws, "launch_run", {"job": "hello", "run_config": {"a": math.nan}})
        except RemoteError as exc:
            assert "NaN" in exc.message
        else:
            raise AssertionError("launch_run took a NaN run config")
        assert runs(ws) == []
        # what is plain JSON still goes
        done = ws.run("job", "launch", "hello", "--config", '{"a": 1.5, "b": "\u00e9"}')
        assert done.returncode == 0, done.stderr
        up.track()
    assert len(runs(ws)) == 1
    assert "Traceback" not in up.output()


def test_the_api_refuses_bad_input_with_a_400_and_stores_nothing(
    ws: WorkspaceDir,
) -> None:
    make(ws)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        refused: List[Tuple[Dict[str, Any], str]] = [
            ({"location": "team", "job": "hello", "run_config": {"a": math.nan}}, "NaN"),
            ({"location": "team", "job": "hello", "run_config": {"a": math.inf}}, "Infinity"),
            ({"location": "team", "job": "hello", "tags": {"wsm/priority": "high"}}, "integer"),
            ({"location": "team", "job": "hello", "tags": {"k": 1}}, "tags.k"),
            ({"location": "team", "job": "hello", "tags": {"wsm/priority": "9" * 30}}, "from"),
            ({"location": "team", "job": "hello", "run_config": {"a": "\ud800"}}, "surrogate"),
            ({"location": "team", "job": "hello", "extra": 1}, "'extra'"),
        ]
        for body, words in refused:
            status, kind, text = call(up, "POST", "/api/runs", json.dumps(body).encode())
            assert status == 400 and kind == "application/json", (status, text)
            error = strict(text)["error"]
            assert error["type"] == "InvalidRequest" and words in error["message"], error
        # 1e400 is read as Infinity
        raw = b'{"location": "team", "job": "hello", "run_config": {"a": 1e400}}'
        status, _, text = call(up, "POST", "/api/runs", raw)
        assert status == 400 and "Infinity" in text, text
        deep = b'{"location": "team", "job": "hello", "run_config": {"a": ' + b"[" * 30000
        status, _, text = call(up, "POST", "/api/runs", deep)
        assert status == 400 and "nested" in text, text
        status, _, text = call(up, "POST", "/api/runs/abc/cancel", b'{"extra": 1}')
        assert status == 400 and "'extra'" in text, text
        assert [r for r in runs(ws) if r.origin.get("via") == "api"] == []
        up.track()
    assert "Traceback" not in up.output(), up.output()


def test_a_stored_nan_never_breaks_an_answer(ws: WorkspaceDir) -> None:
    """Records stored before the check (or by another writer): strict JSON everywhere, é
    as é for a person, and no traceback on the console."""
    make(ws)
    with WsmUp(ws, "--log-format", "json") as up:
        up.wait_state("team", "ready")
        s = store(ws)
        try:
            old = s.add_run(
                RunRecord(
                    "0123" + "0" * 28,
                    "team",
                    "hello",
                    status="SUCCESS",
                    run_config={"a": math.nan, "b": [math.inf, -math.inf], "note": "\u00e9"},
                    created_at=1.0,
                )
            )
        finally:
            s.close()
        for path in ("/api/runs", "/api/runs?limit=3", f"/api/runs/{old.run_id}"):
            status, _, text = call(up, "GET", path)
            assert status == 200, (path, status, text)
            doc = strict(text)
            run = (
                doc
                if "run_id" in doc
                else next(r for r in doc["items"] if r["run_id"] == old.run_id)
            )
            assert run["run_config"] == {
                "a": "NaN",
                "b": ["Infinity", "-Infinity"],
                "note": "\u00e9",
            }
        listed = ws.run("run", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert any(r["run_config"].get("a") == "NaN" for r in strict(listed.stdout))
        shown = ws.run("run", "show", old.run_id)
        assert shown.returncode == 0, shown.stderr
        assert '"note": "\u00e9"' in shown.stdout, shown.stdout
        shown = ws.run("run", "show", old.run_id, "--json")
        assert strict(shown.stdout)["run_config"]["note"] == "\u00e9"
        up.track()
    assert "Traceback" not in up.output(), up.output()


def test_an_ambiguous_id_is_409_and_unknown_ticks_404_as_the_cli_says(ws: WorkspaceDir) -> None:
    make(ws)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        s = store(ws)
        try:
            for digit in "01":
                s.add_run(RunRecord("abcd" + digit * 28, "team", "hello", status="SUCCESS"))
        finally:
            s.close()
        # an ambiguous prefix is a conflict, not "unknown"; the CLI says the same
        status, _, text = call(up, "GET", "/api/runs/abcd")
        error = strict(text)["error"]
        assert status == 409 and error["type"] == "Ambiguous", text
        cli = ws.run("run", "show", "abcd")
        one_line(cli, 1, "names several runs")
        assert error["message"] in cli.stderr

        # ticks of a schedule or sensor nobody knows: 404 as the CLI's "no schedule named"
        for kind in ("schedules", "sensors"):
            status, _, text = call(up, "GET", f"/api/{kind}/nope/ticks")
            assert status == 404 and strict(text)["error"]["type"] == "NotFound", text
        cli = ws.run("schedule", "ticks", "nope")
        one_line(cli, 1, "no schedule named 'nope'")
        up.track()
    assert "Traceback" not in up.output(), up.output()


def test_a_sensor_request_with_nan_fails_its_tick_and_queues_nothing(ws: WorkspaceDir) -> None:
    make(ws)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        found = wait_for(lambda: ticks(ws, "nan_sensor"), 60, "a tick of nan_sensor")
        tick = found[0]
        assert tick.status == "failure", tick
        assert tick.error is not None and "\n" not in tick.error
        assert "run request 2 of 2" in tick.error and "run_config.x: NaN" in tick.error
        assert tick.run_ids == []
        status, _, text = call(up, "GET", "/api/sensors/nan_sensor/ticks")
        assert status == 200 and strict(text)["items"][0]["status"] == "failure"
        up.track()
    # the whole tick fails: not even its good request is queued
    assert [r for r in runs(ws) if r.origin.get("kind") == "sensor"] == []
    assert "Traceback" not in up.output()
