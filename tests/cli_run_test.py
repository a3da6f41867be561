"""`wsm run list|show|logs|cancel` and `wsm schedule|sensor ticks` on a run database, with no
manager running; `cancel`, `list`, `start` and `stop` against a control socket that answers
like the manager's."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from workspace_manager.cli.main import main
from workspace_manager.storage.records import (
    CANCELED,
    FAILURE,
    QUEUED,
    STARTED,
    SUCCESS,
    InstigatorState,
    LogLine,
    RunRecord,
    TickRecord,
)


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dict[str, Any]]:
    """A workspace path (never loaded: the commands only need its identity), private state
    and runtime dirs, and the Storage the commands will open for it."""
    monkeypatch.setenv("WSM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WSM_RUNTIME_DIR", str(tmp_path / "run"))
    workspace = tmp_path / "workspace.yaml"
    from workspace_manager.supervisor.runtime import manager_key

    key = manager_key(f"workspace:{workspace}")
    from workspace_manager.storage.paths import open_storage

    storage = open_storage(key, create=True)
    yield {"args": ["-w", str(workspace)], "storage": storage, "key": key}
    storage.close()


def wsm(capsys, *argv: str) -> tuple:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def add(storage: Any, job: str = "hello", location: str = "a", at: float = 0.0, **kw) -> RunRecord:
    run = RunRecord(uuid.uuid4().hex, location, job, created_at=at or time.time(), **kw)
    return storage.add_run(run)


def test_list_newest_first_with_filters(target, capsys):
    s = target["storage"]
    now = time.time()
    old = add(
        s, at=now - 30, origin={"kind": "manual", "user": "alice", "host": "box", "via": "cli"}
    )
    mid = add(
        s, job="other", at=now - 20, origin={"kind": "schedule", "name": "nightly", "tick_id": 3}
    )
    new = add(
        s, location="b", at=now - 10, origin={"kind": "sensor", "name": "watch", "tick_id": 9}
    )
    s.update_run(mid.run_id, status=FAILURE, error="boom")
    code, out, err = wsm(capsys, "run", "list", *target["args"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["RUN", "ID", "STATUS", "LOCATION"]
    assert [ln.split()[0] for ln in lines[1:]] == [r.run_id[:12] for r in (new, mid, old)]
    assert "schedule nightly" in lines[2] and "alice@box (cli)" in lines[3]
    code, out, _ = wsm(capsys, "run", "list", *target["args"], "--status", "failure", "--json")
    assert [r["run_id"] for r in json.loads(out)] == [mid.run_id]
    code, out, _ = wsm(capsys, "run", "list", *target["args"], "--location", "b", "--json")
    assert [r["run_id"] for r in json.loads(out)] == [new.run_id]
    code, out, _ = wsm(
        capsys, "run", "list", *target["args"], "--job", "hello", "--limit", "1", "--json"
    )
    assert [r["run_id"] for r in json.loads(out)] == [new.run_id]
    code, _, err = wsm(capsys, "run", "list", *target["args"], "--status", "DONE")
    assert code == 2 and err.startswith("wsm: --status DONE: not a run status")


def test_show_has_history_origin_exit_error_and_traceback(target, capsys):
    s = target["storage"]
    run = add(
        s,
        origin={"kind": "sensor", "name": "watch", "tick_id": 7, "run_key": "k1"},
        tags={"team": "data"},
        run_config={"n": 1},
    )
    s.update_run(run.run_id, status="STARTING", start_time=time.time(), pid=4242)
    s.update_run(run.run_id, status=STARTED, started_at=time.time())
    s.update_run(
        run.run_id,
        status=FAILURE,
        message="the job raised",
        ended_at=time.time(),
        exit_code=1,
        error="ValueError: boom",
        traceback="Traceback (most recent call last):\nValueError: boom\n",
    )
    code, out, err = wsm(capsys, "run", "show", run.run_id[:6], *target["args"])
    assert code == 0, err
    assert f"run         {run.run_id}" in out
    assert "origin      sensor watch (tick 7, run_key k1)" in out
    assert "pid         4242" in out and "exit        exit code 1" in out
    assert "error       ValueError: boom" in out and "tags        team=data" in out
    history = out.split("history\n")[1].split("traceback\n")[0]
    assert [ln.split()[1] for ln in history.splitlines()] == [QUEUED, "STARTING", STARTED, FAILURE]
    assert "the job raised" in history
    assert out.rstrip().endswith("ValueError: boom")
    code, out, _ = wsm(capsys, "run", "show", run.run_id, "--json", *target["args"])
    doc = json.loads(out)
    assert doc["traceback"].startswith("Traceback") and len(doc["events"]) == 4


def test_unknown_and_ambiguous_ids_are_one_line(target, capsys):
    s = target["storage"]
    ids = ["abcd" + "0" * 28, "abcd" + "1" * 28]
    for rid in ids:
        s.add_run(RunRecord(rid, "a", "hello", created_at=time.time()))
    for argv, code_wanted, words in [
        (["run", "show", "ffff"], 1, "ffff"),
        (["run", "show", "abcd"], 1, "abcd"),
        (["run", "logs", "ffffeeee"], 1, "ffffeeee"),
        (["run", "show", "ab"], 2, "at least 4"),
    ]:
        code, out, err = wsm(capsys, *argv, *target["args"])
        assert code == code_wanted, (argv, err)
        assert err.startswith("wsm: ") and words in err and err.count("\n") == 1, err
        assert "Traceback" not in err


def test_no_database_yet(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WSM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WSM_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "workspace.yaml").write_text("load_from: []\n")  # there, never run yet
    for argv in (["run", "list"], ["run", "show", "abcdef"], ["sensor", "ticks", "watch"]):
        code, _, err = wsm(capsys, *argv, "-w", str(tmp_path / "workspace.yaml"))
        assert code == 1 and err.startswith("wsm: no runs recorded for ") and "wsm up" in err


def test_logs_print_lines_with_times_and_follow_until_final(target, manager, capsys):
    s = target["storage"]
    run = add(s)
    s.update_run(run.run_id, status=STARTED, started_at=time.time())
    s.append_logs(
        [
            LogLine(run.run_id, time.time(), "stdout", "hello"),
            LogLine(run.run_id, time.time(), "log", "from context.log", level="WARNING"),
        ]
    )
    code, out, _ = wsm(capsys, "run", "logs", run.run_id, *target["args"])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split(None, 2)[1:] == ["stdout", "hello"]
    assert lines[1].split(None, 2)[1:] == ["WARNING", "from context.log"]

    def finish() -> None:
        time.sleep(0.5)
        s.append_logs([LogLine(run.run_id, time.time(), "stderr", "late line")])
        time.sleep(0.3)
        s.append_logs([LogLine(run.run_id, time.time(), "stdout", "last words")])
        s.update_run(run.run_id, status=SUCCESS, ended_at=time.time())

    writer = threading.Thread(target=finish)
    writer.start()
    started = time.monotonic()
    code, out, _ = wsm(capsys, "run", "logs", run.run_id[:8], "--follow", *target["args"])
    writer.join()
    assert code == 0 and time.monotonic() - started < 30
    assert [ln.split(None, 2)[2] for ln in out.splitlines()] == [
        "hello",
        "from context.log",
        "late line",
        "last words",
    ]


def test_ticks(target, capsys):
    s = target["storage"]
    now = time.time()
    s.record_tick(
        TickRecord(
            "a",
            "watch",
            "sensor",
            now - 60,
            status="skipped",
            skip_reason="nothing new",
            started_at=now - 60,
        )
    )
    s.record_tick(
        TickRecord(
            "a",
            "watch",
            "sensor",
            now - 30,
            status="failure",
            error="ValueError: boom",
            started_at=now - 30,
        )
    )
    s.record_tick(TickRecord("b", "watch", "sensor", now, status="success", started_at=now))
    code, out, err = wsm(capsys, "sensor", "ticks", "a:watch", *target["args"])
    assert code == 0, err
    rows = out.splitlines()[1:]
    assert "failure: ValueError: boom" in rows[0] and "skipped: nothing new" in rows[1]
    assert len(rows) == 2
    code, out, _ = wsm(capsys, "sensor", "ticks", "watch", "--json", *target["args"])
    assert [t["location"] for t in json.loads(out)] == ["b", "a", "a"]
    # no schedule 'watch' has ticked, nor been started or stopped, and no manager runs to
    # say it exists: unknown, one line, exit 1
    code, out, err = wsm(capsys, "schedule", "ticks", "watch", *target["args"])
    assert code == 1 and out == "" and err == "wsm: no schedule named 'watch'\n"
    # a kept state (it was stopped once) makes it known: no ticks yet, exit 0
    s.set_instigator(InstigatorState("a", "watch", "schedule", status="STOPPED"))
    code, out, _ = wsm(capsys, "schedule", "ticks", "watch", *target["args"])
    assert code == 0 and out == "no ticks recorded for schedule watch\n"


# -- through a control socket that answers like the manager --------------------------------------


@pytest.fixture
def manager(target, tmp_path):
    """A real ControlServer with the manager's record, answering cancel_run, instigators and
    set_instigator_status as the daemon and the coordinator do."""
    import asyncio

    from workspace_manager.protocol.errors import RemoteError
    from workspace_manager.supervisor import runtime
    from workspace_manager.supervisor.control import ControlServer

    calls: List[tuple] = []
    items = [
        {
            "location": "a",
            "name": "nightly",
            "kind": "schedule",
            "status": "STOPPED",
            "cron_schedule": "30 2 * * *",
            "execution_timezone": "Europe/Berlin",
            "next_tick": time.time() + 3600,
            "last_tick": {"tick_time": time.time() - 60, "status": "success", "run_ids": ["x"]},
        },
        {
            "location": "a",
            "name": "watch",
            "kind": "sensor",
            "status": "RUNNING",
            "minimum_interval_seconds": 30,
            "sensor_type": "standard",
            "last_tick": {
                "tick_time": time.time() - 5,
                "status": "skipped",
                "skip_reason": "nothing new",
                "run_ids": [],
            },
        },
    ]

    async def cancel_run(params: dict) -> dict:
        calls.append(("cancel_run", params))
        run = target["storage"].update_run(params["run_id"], status=CANCELED, message="by user")
        return run.as_dict()

    async def instigators(params: dict) -> list:
        calls.append(("instigators", params))
        return [i for i in items if i["kind"] == params.get("kind")]

    async def set_status(params: dict) -> dict:
        calls.append(("set_instigator_status", params))
        for i in items:
            if i["kind"] == params["kind"] and params["name"] in (i["name"], f"a:{i['name']}"):
                i["status"] = params["status"]
                return i
        raise RemoteError("NotFound", f"no {params['kind']} named {params['name']!r}")

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    directory = runtime.ensure_private_dir(tmp_path / "run" / target["key"])
    server = ControlServer(
        directory / "manager.sock",
        "s3cret",
        {
            "cancel_run": cancel_run,
            "instigators": instigators,
            "set_instigator_status": set_status,
        },
    )
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    import os

    runtime.ManagerRecord(
        pid=os.getpid(),
        key=target["key"],
        identity="x",
        control=f"unix:{directory / 'manager.sock'}",
        secret="s3cret",
        started_at=time.time(),
        version="0",
        health=None,
    ).write(directory)
    lock = runtime.ManagerLock(directory)
    assert lock.acquire()
    yield calls
    lock.release()
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_cancel_resolves_a_prefix_and_asks_the_manager(target, manager, capsys):
    run = add(target["storage"])
    code, out, err = wsm(capsys, "run", "cancel", run.run_id[:7], *target["args"])
    assert code == 0, err
    assert manager == [("cancel_run", {"run_id": run.run_id})]
    assert out == f"run {run.run_id} canceled\n"
    code, _, err = wsm(capsys, "run", "cancel", run.run_id, *target["args"])
    assert code == 1 and "already ended: CANCELED" in err


def test_cancel_with_no_manager_is_exit_3(target, capsys):
    run = add(target["storage"])
    code, _, err = wsm(capsys, "run", "cancel", run.run_id, *target["args"])
    assert code == 3 and "no manager is running" in err


def test_schedule_and_sensor_list_start_stop(target, manager, capsys):
    code, out, err = wsm(capsys, "schedule", "list", *target["args"])
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == [
        "NAME",
        "LOCATION",
        "STATUS",
        "CRON",
        "NEXT",
        "TICK",
        "LAST",
        "TICK",
        "RESULT",
    ]
    assert row.split()[:3] == ["nightly", "a", "STOPPED"]
    assert "30 2 * * * (Europe/Berlin)" in row and row.endswith("success: 1 run")
    code, out, _ = wsm(capsys, "sensor", "list", *target["args"])
    assert "every 30s" in out and out.rstrip().endswith("skipped: nothing new")
    code, out, _ = wsm(capsys, "schedule", "start", "a:nightly", *target["args"])
    assert code == 0 and out == "schedule a:nightly: RUNNING\n"
    code, out, _ = wsm(capsys, "sensor", "stop", "watch", *target["args"])
    assert out == "sensor a:watch: STOPPED\n"
    code, out, err = wsm(capsys, "sensor", "stop", "nope", *target["args"])
    assert code == 1 and err == "wsm: no sensor named 'nope'\n"
    code, out, _ = wsm(capsys, "sensor", "list", "--json", *target["args"])
    assert json.loads(out)[0]["status"] == "STOPPED"


def test_follow_ends_when_no_manager_runs(target, capsys, monkeypatch):
    from workspace_manager.cli import run as run_cli

    monkeypatch.setattr(run_cli, "MANAGER_CHECK", 0.1)
    s = target["storage"]
    run = add(s)
    s.update_run(run.run_id, status=STARTED, started_at=time.time())
    s.append_logs([LogLine(run.run_id, time.time(), "stdout", "hello")])
    code, out, err = wsm(capsys, "run", "logs", run.run_id, "-F", *target["args"])
    assert code == 1 and out.split(None, 2)[2] == "hello\n"
    assert err.startswith("wsm: no manager is running for ") and "wsm up" in err
