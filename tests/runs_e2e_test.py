"""Runs end to end with the real `wsm up`, `wsm job launch|execute` and `wsm down`: every
run a fresh process of its location's interpreter, its records and logs, cancel of a whole
tree, a run killed, crashed or hung leaving its location ready, the manager killed mid-run,
the queue's limit and priority, drain then cancel."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Dict

import psutil
import pytest
from e2e import WorkspaceDir, WsmUp, control_call, manager_key, wait_for

from workspace_manager.storage.records import RunRecord
from workspace_manager.storage.sqlite import SqliteStorage

REPO = """
import ctypes, json, os, signal, subprocess, sys, time
from workspace_manager import job, repository

def note(context, **fields):
    path = os.environ.get("NOTES")
    with open(os.path.join(path, context.run_id), "w") as f:
        json.dump(dict(fields, pid=os.getpid(), ppid=os.getppid()), f)

@job
def hello(context):
    print("hello from", sys.executable, flush=True)
    context.log.info("team is %s", os.environ.get("TEAM"))
    note(context, executable=sys.executable, team=os.environ.get("TEAM"))
    return "done"

@job
def boom():
    raise KeyError("no such thing")

@job
def stubborn(context):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    note(context, child=child.pid)
    time.sleep(600)

@job
def sleeper(context):
    note(context)
    time.sleep(float(context.run_config.get("seconds", 600)))

@job
def segfault():
    ctypes.string_at(0)

@job
def quick(context):
    note(context, started=time.time())
    time.sleep(0.3)

@repository
def repo():
    return [hello, boom, stubborn, sleeper, segfault, quick]
"""


ONE_JOB = """
from workspace_manager import job, repository

@job
def hello():
    pass

@repository
def repo():
    return [hello]
"""


def make(ws: WorkspaceDir, daemon: Dict[str, Any] = None, python: str = "/usr/bin/python3") -> Path:
    ws.file("code/runs_repo.py", REPO)
    notes = ws.root / "notes"
    notes.mkdir(exist_ok=True)
    entry = {
        "relative_path": "code/runs_repo.py",
        "location_name": "team",
        "executable_path": python,
        "env_vars": {"TEAM": "blue", "NOTES": str(notes)},
    }
    data: Dict[str, Any] = {"load_from": [{"python_file": entry}]}
    if daemon:
        data["daemon"] = daemon
    return ws.workspace(data)


def storage(ws: WorkspaceDir) -> SqliteStorage:
    return SqliteStorage(Path(ws.env["WSM_STATE_DIR"]) / manager_key(ws) / "runs.db", create=False)


def launch(ws: WorkspaceDir, *args: str) -> str:
    done = ws.run("job", "launch", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def final(ws: WorkspaceDir, run_id: str, timeout: float = 60.0) -> RunRecord:
    def check() -> Any:
        store = storage(ws)
        try:
            record = store.get_run(run_id)
        finally:
            store.close()
        return record if record.is_final else None

    return wait_for(check, timeout, f"run {run_id} to end")


def note(ws: WorkspaceDir, run_id: str, timeout: float = 30.0) -> Dict[str, Any]:
    path = ws.root / "notes" / run_id

    def check() -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    return wait_for(check, timeout, f"run {run_id} to write its note")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_runs_are_fresh_processes_with_their_records_and_logs(ws: WorkspaceDir) -> None:
    make(ws)
    with WsmUp(ws) as up:
        loader = up.wait_state("team", "ready")["pid"]
        done = ws.run("job", "launch", "hello", "--tag", "who=me", "--wait")
        assert done.returncode == 0, done.stderr
        run_id = done.stdout.splitlines()[0]
        assert "hello from /usr/bin/python3" in done.stdout
        assert "INFO team is blue" in done.stdout
        failed = ws.run("job", "launch", "-l", "team", "boom", "--wait")
        assert failed.returncode == 1
        assert "KeyError: 'no such thing'" in failed.stderr
        up.track()
    record = final(ws, run_id)
    seen = note(ws, run_id)
    assert record.status == "SUCCESS" and record.location == "team" and record.job == "hello"
    assert seen["pid"] == record.pid and record.pid != loader
    assert seen["ppid"] == up.proc.pid  # started by the manager, not by the loader
    assert seen["executable"] == "/usr/bin/python3" and seen["team"] == "blue"
    assert record.tags["who"] == "me"
    assert record.origin["kind"] == "manual" and record.origin["via"] == "cli"
    store = storage(ws)
    lines = store.read_logs(run_id)
    bad = store.get_run(failed.stdout.splitlines()[0])
    store.close()
    texts = {(line.stream, line.text) for line in lines}
    assert ("stdout", "hello from /usr/bin/python3") in texts
    assert ("log", "team is blue") in texts
    assert all(record.created_at <= line.time <= record.ended_at for line in lines)
    assert bad.status == "FAILURE" and bad.error == "KeyError: 'no such thing'"
    assert "Traceback" in bad.traceback and "raise KeyError" in bad.traceback


def test_unknown_job_is_one_line_and_no_manager_exits_3(ws: WorkspaceDir) -> None:
    make(ws)
    done = ws.run("job", "launch", "hello")
    assert done.returncode == 3 and "no manager is running" in done.stderr
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        done = ws.run("job", "launch", "nope")
        assert done.returncode == 1
        assert done.stderr.strip() == "wsm: no job named 'nope' in any loaded location"
        done = ws.run("job", "launch", "hello", "--config", "[1]")
        assert done.returncode == 2 and "must be an object" in done.stderr


def test_kill_9_segfault_and_timeout_leave_the_location_ready(ws: WorkspaceDir) -> None:
    make(ws)
    with WsmUp(ws) as up:
        loader = up.wait_state("team", "ready")["pid"]
        victim = launch(ws, "sleeper")
        pid = note(ws, victim)["pid"]
        os.kill(pid, signal.SIGKILL)
        killed = final(ws, victim, timeout=10)
        crash = final(ws, launch(ws, "segfault"))
        hung = final(ws, launch(ws, "sleeper", "--tag", "wsm/timeout_seconds=1"))
        after = up.wait_state("team", "ready")
        up.track()
    assert killed.status == "FAILURE" and killed.signal == signal.SIGKILL
    assert "killed by SIGKILL" in killed.error
    assert killed.ended_at - killed.started_at < 600
    assert crash.status == "FAILURE" and "SIGSEGV" in crash.error
    assert hung.status == "CANCELED" and hung.error == "timed out after 1 s"
    assert after["pid"] == loader and after["restarts"] == 0


@pytest.mark.slow
def test_cancel_stops_a_tree_that_ignores_sigterm(ws: WorkspaceDir) -> None:
    make(ws)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        run_id = launch(ws, "stubborn")
        seen = note(ws, run_id)
        answer = control_call(ws, "cancel_run", {"run_id": run_id[:10]})
        assert answer["status"] == "CANCELING"
        record = final(ws, run_id, timeout=30)
        up.track()
    assert record.status == "CANCELED" and record.error == "canceled by user"
    assert not alive(seen["pid"]) and not alive(seen["child"])


def test_kill_9_of_the_manager_leaves_no_run_and_the_next_up_says_why(ws: WorkspaceDir) -> None:
    make(ws)
    up = WsmUp(ws)
    try:
        up.wait_state("team", "ready")
        run_id = launch(ws, "stubborn")
        seen = note(ws, run_id)
        up.track()
        up.stop(signal.SIGKILL)
        wait_for(
            lambda: not alive(seen["pid"]) and not alive(seen["child"]),
            10,
            "the run and its child to die with the manager",
        )
        up.assert_no_leftovers()
    finally:
        if up.proc.poll() is None:
            up.stop(signal.SIGKILL)
    with WsmUp(ws) as again:
        record = final(ws, run_id, timeout=30)
        again.track()
    assert record.status == "FAILURE"
    assert record.error == "the manager was killed while the run was in progress"


def test_one_run_at_a_time_in_priority_order(ws: WorkspaceDir) -> None:
    make(ws, daemon={"max_concurrent_runs": 1})
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        first = launch(ws, "sleeper")
        note(ws, first)  # it holds the one slot while the others queue
        low = launch(ws, "quick")
        high = launch(ws, "quick", "--tag", "wsm/priority=5")
        control_call(ws, "cancel_run", {"run_id": first})
        records = [final(ws, r) for r in (first, low, high)]
        up.track()
    first_r, low_r, high_r = records
    assert first_r.status == "CANCELED"
    assert low_r.status == high_r.status == "SUCCESS"
    assert first_r.ended_at <= high_r.start_time
    assert high_r.ended_at <= low_r.start_time


def test_down_drains_then_cancels(ws: WorkspaceDir) -> None:
    lanes = [{"key": "lane", "limit": 1}]
    make(ws, daemon={"run_drain_seconds": 2, "tag_concurrency_limits": lanes})
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        short = launch(ws, "sleeper", "--config", '{"seconds": 0.5}')
        long = launch(ws, "sleeper", "--tag", "lane=a")
        note(ws, short)
        pid = note(ws, long)["pid"]
        waiting = launch(ws, "sleeper", "--tag", "lane=a")  # held by `long`'s lane
        up.track()
        down = ws.run("down")
        assert down.returncode == 0, down.stderr
    assert "1 queued run stays queued: the next `wsm up` starts them" in up.output()
    assert "wsm: 1 queued run stays queued: the next `wsm up` starts them" in down.stdout
    store = storage(ws)
    try:
        assert store.get_run(waiting).status == "QUEUED"
    finally:
        store.close()
    assert final(ws, short).status == "SUCCESS"
    record = final(ws, long)
    assert record.status == "CANCELED" and record.error == "the manager shut down"
    assert not alive(pid)


def test_execute_runs_in_the_foreground_and_is_recorded(ws: WorkspaceDir) -> None:
    make(ws)
    done = ws.run("job", "execute", "hello")
    assert done.returncode == 0, done.stderr
    assert "hello from /usr/bin/python3" in done.stdout
    assert "INFO team is blue" in done.stdout
    run_id = done.stderr.strip().splitlines()[-1].split()[1].rstrip(":")
    record = final(ws, run_id)
    assert record.status == "SUCCESS" and record.origin["kind"] == "execute"
    store = storage(ws)
    try:  # never QUEUED: a manager of the workspace would launch it a second time
        assert [e.status for e in store.run_events(run_id)] == ["STARTING", "STARTED", "SUCCESS"]
    finally:
        store.close()
    failed = ws.run("job", "execute", "boom")
    assert failed.returncode == 1 and "KeyError: 'no such thing'" in failed.stderr
    ws.file("other.py", ONE_JOB)
    adhoc = ws.run("job", "execute", "-f", "other.py", "hello")
    assert adhoc.returncode == 0, adhoc.stderr


def test_execute_of_an_unknown_job_is_one_line_and_records_no_run(ws: WorkspaceDir) -> None:
    # a FAILURE run here would page the run failure sensors for a typo
    make(ws)
    done = ws.run("job", "execute", "nope")
    assert done.returncode == 1
    assert done.stderr.startswith("wsm: repository 'repo' has no job named 'nope' (it has: ")
    assert len(done.stderr.strip().splitlines()) == 1
    ok = ws.run("job", "execute", "hello")
    assert ok.returncode == 0, ok.stderr
    store = storage(ws)
    try:
        assert [r.job for r in store.list_runs(limit=None)] == ["hello"]
    finally:
        store.close()


def test_execute_asks_for_a_location_when_several_could_have_the_job(ws: WorkspaceDir) -> None:
    ws.file("a.py", ONE_JOB)
    ws.file("b.py", ONE_JOB)
    ws.workspace({"load_from": [{"python_file": "a.py"}, {"python_file": "b.py"}]})
    done = ws.run("job", "execute", "hello")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "-l" in done.stderr
    assert ws.run("job", "execute", "-l", "b", "hello").returncode == 0
    with WsmUp(ws) as up:
        up.wait_all_settled()
        launched = ws.run("job", "launch", "hello")
        assert launched.returncode == 1
        assert launched.stderr.strip() == (
            "wsm: job 'hello' is in several locations (a, b); name one with -l"
        )
        assert ws.run("job", "launch", "-l", "a", "hello").returncode == 0


def test_a_run_imports_the_code_as_it_is_on_disk(ws: WorkspaceDir) -> None:
    """A run is a fresh import of the location's code, as Dagster's run worker is: an edit
    that the serving loader has not loaded (a failed reload) is what the run gets."""
    make(ws, python=sys.executable)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        broken = ws.root / "code" / "runs_repo.py"
        good = broken.read_text()
        broken.write_text("raise RuntimeError('not now')\n")
        assert ws.run("reload", "team").returncode in (0, 1)
        run_id = launch(ws, "-l", "team", "hello")  # the old process still serves
        record = final(ws, run_id)
        broken.write_text(good)
        up.track()
    assert record.status == "FAILURE" and "not now" in (record.error or "")


def test_execute_with_an_unusable_run_database_is_one_line(ws: WorkspaceDir) -> None:
    make(ws)
    db = Path(ws.env["WSM_STATE_DIR"]) / manager_key(ws) / "runs.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database" * 100)
    done = ws.run("job", "execute", "sleeper")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("wsm: ") and "Traceback" not in done.stderr
    notes = list((ws.root / "notes").iterdir())
    for path in notes:  # the run may have started before the database was found unusable
        pid = json.loads(path.read_text())["pid"]
        wait_for(lambda pid=pid: not alive(pid), 15, "the unrecorded run to be stopped")


def test_a_failed_run_is_retried_as_a_new_run_naming_its_parent(ws: WorkspaceDir) -> None:
    make(ws)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        first = launch(ws, "boom", "--tag", "wsm/max_retries=1")

        def both() -> Any:
            store = storage(ws)
            try:
                runs = store.list_runs(job="boom", limit=None)
            finally:
                store.close()
            return runs if len(runs) == 2 and all(r.is_final for r in runs) else None

        runs = sorted(wait_for(both, 60, "the run and its retry"), key=lambda r: r.attempt)
        up.track()
    assert [r.run_id for r in runs][0] == first
    assert [r.status for r in runs] == ["FAILURE", "FAILURE"]
    assert runs[1].parent_run_id == first and runs[1].attempt == 1
    assert runs[1].origin == {"kind": "retry", "parent_run_id": first, "attempt": 1}


def test_ctrl_c_cancels_an_executed_run(ws: WorkspaceDir) -> None:
    import subprocess

    from e2e import wsm_argv

    make(ws)
    proc = subprocess.Popen(
        wsm_argv("job", "execute", "sleeper"),
        cwd=ws.root,
        env=ws.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        notes = ws.root / "notes"
        path = wait_for(lambda: next(iter(notes.iterdir()), None), 60, "the job to start")
        seen = note(ws, path.name)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert f"run {path.name}: CANCELED" in err
    record = final(ws, path.name)
    assert record.status == "CANCELED" and record.error == "interrupted (Ctrl-C)"
    assert record.origin["kind"] == "execute" and record.origin["pid"] == proc.pid
    wait_for(lambda: not alive(seen["pid"]), 10, "the run's process to end")
