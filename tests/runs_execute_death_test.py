"""A `wsm job execute` killed with `kill -9` (its run's tree dies through the lifeline, but
nothing records the end): a running manager ends the run FAILURE naming the process within
seconds, at the last moment it saw it alive; `wsm run cancel` ends such a run at once; the
next `wsm up` gives the same reason; the runtime folders of dead execute processes go.
Also: which location `wsm job execute` runs without -l, and a launch into a location whose
code failed to load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, List, Set

import psutil
import pytest
from e2e import WorkspaceDir, WsmUp, wait_for, wsm_argv
from runs_e2e_test import ONE_JOB, alive, final, make, note

from workspace_manager.runs.coordinator import RunCoordinator, RunHooks
from workspace_manager.storage.records import CANCELED, STARTED, RunRecord
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.storage.writer import AsyncStorage
from workspace_manager.workspace.model import Workspace


def reason(pid: int) -> str:
    return f"the `wsm job execute` process (pid {pid}) ended while the run was in progress"


def start_execute(ws: WorkspaceDir) -> subprocess.Popen:
    return subprocess.Popen(
        wsm_argv("job", "execute", "sleeper"),
        cwd=ws.root,
        env=ws.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def executing(ws: WorkspaceDir) -> Iterator[subprocess.Popen]:
    """`start_execute`, killed on the way out whatever happened."""
    proc = start_execute(ws)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def kill_9(proc: subprocess.Popen, ws: WorkspaceDir) -> tuple:
    """Wait for the job to start, kill -9 the command, wait for its tree to die (the
    lifeline); (run id, the tree's pids)."""
    notes = ws.root / "notes"
    path = wait_for(lambda: next(iter(notes.iterdir()), None), 60, "the job to start")
    seen = note(ws, path.name)
    tree: Set[int] = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
    assert seen["pid"] in tree
    proc.kill()
    proc.wait()
    wait_for(lambda: not any(alive(p) for p in tree), 10, "the run's tree to die")
    return path.name, tree


def execute_folders(ws: WorkspaceDir, pid: int) -> List[Path]:
    return list(Path(ws.env["WSM_RUNTIME_DIR"]).glob(f"execute-{pid}-*"))


@pytest.mark.slow
def test_a_running_manager_fails_the_run_of_a_killed_execute(ws: WorkspaceDir) -> None:
    make(ws)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        with executing(ws) as proc:
            notes = ws.root / "notes"
            wait_for(lambda: next(iter(notes.iterdir()), None), 60, "the job to start")
            assert execute_folders(ws, proc.pid)
            time.sleep(3)  # the manager's monitor (every 2 s) sees it alive meanwhile
            run_id, _ = kill_9(proc, ws)
        record = final(ws, run_id, timeout=20)
        assert record.status == "FAILURE" and record.error == reason(proc.pid)
        # ended when last seen alive, not when the job started (was: took 0.00s)
        assert record.ended_at is not None and record.started_at is not None
        assert record.ended_at - record.started_at >= 0.5
        wait_for(lambda: not execute_folders(ws, proc.pid), 10, "its runtime folder to go")
        cancel = ws.run("run", "cancel", run_id)
        assert cancel.stderr == f"wsm: run {run_id} has already ended: FAILURE\n"


def test_wsm_run_cancel_after_kill_9_of_execute_ends_the_run(ws: WorkspaceDir) -> None:
    make(ws)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        with executing(ws) as proc:
            run_id, _ = kill_9(proc, ws)
        cancel = ws.run("run", "cancel", run_id)  # was: refused, "stop it there", exit 1
        record = final(ws, run_id, timeout=5)
    if cancel.returncode == 0:  # the cancel came first
        assert record.status == "CANCELED" and record.error == "canceled by user"
    else:  # the manager's monitor (every 2 s) came first
        assert cancel.stderr == f"wsm: run {run_id} has already ended: FAILURE\n"
        assert record.status == "FAILURE" and record.error == reason(proc.pid)


def test_cancel_of_a_run_whose_execute_is_gone_ends_it_at_once(tmp_path: Path) -> None:
    # no monitor (the coordinator is not started), so the cancel is what ends it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    storage = SqliteStorage(tmp_path / "runs.db")
    run = RunRecord(
        "c" * 32,
        "loc",
        "sleeper",
        created_at=time.time() - 5,
        origin={"kind": "execute", "pid": dead.pid},
    )
    storage.add_run(run)
    storage.update_run(run.run_id, status=STARTED, started_at=time.time() - 4)
    live = RunRecord(
        "d" * 32,
        "loc",
        "sleeper",
        created_at=time.time(),
        origin={"kind": "execute", "pid": os.getpid()},
    )
    storage.add_run(live)
    storage.update_run(live.run_id, status=STARTED)

    asked = 0.0

    async def go() -> Any:
        store = AsyncStorage(storage)

        async def no_plan(name: str) -> Any:
            raise AssertionError("nothing is planned")

        def no_workspace() -> Workspace:
            raise AssertionError("no workspace is read")

        c = RunCoordinator(
            store,
            RunHooks(
                workspace=no_workspace,
                location_ready=lambda name: True,
                snapshot=lambda name: None,
                plan=no_plan,
            ),
        )
        nonlocal asked
        asked = time.time()
        ended = await c.cancel(run.run_id)
        try:
            await c.cancel(live.run_id)
            refused = None
        except LookupError as exc:
            refused = str(exc)
        await store.close()
        return ended, refused

    ended, refused = asyncio.run(go())
    assert ended.status == CANCELED and ended.error == "canceled by user"
    reopened = SqliteStorage(tmp_path / "runs.db")
    said = reopened.run_events(run.run_id)[-1].message
    reopened.close()
    assert said == f"canceled by user (its `wsm job execute` process, pid {dead.pid}, had ended)"
    assert ended.ended_at is not None and ended.ended_at <= asked  # last seen alive, not now
    assert refused is not None and "stop it there" in refused  # a live execute is its own


def test_owner_alive_checks_the_start_time_against_a_reused_pid() -> None:
    from workspace_manager.runs.coordinator import owner_alive

    me = psutil.Process(os.getpid()).create_time()
    origin = {"kind": "execute", "pid": os.getpid()}
    assert owner_alive(origin, time.time())
    # a run created before this process started cannot be this process's
    assert not owner_alive(origin, me - 60)
    assert not owner_alive({"kind": "execute"}, time.time())


def test_up_after_a_killed_execute_names_it_and_removes_its_folder(ws: WorkspaceDir) -> None:
    make(ws)
    with executing(ws) as proc:
        run_id, _ = kill_9(proc, ws)
    assert execute_folders(ws, proc.pid)  # left behind by the kill
    with WsmUp(ws) as up:
        record = final(ws, run_id, timeout=30)
        up.track()
    assert record.status == "FAILURE" and record.error == reason(proc.pid)
    assert not execute_folders(ws, proc.pid)


def test_the_next_execute_removes_dead_execute_folders_only(ws: WorkspaceDir) -> None:
    ws.file("a.py", ONE_JOB)
    ws.workspace({"load_from": [{"python_file": "a.py"}]})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = Path(ws.env["WSM_RUNTIME_DIR"])
    root.mkdir(mode=0o700, exist_ok=True)
    stale = root / f"execute-{dead.pid}-abcdef"
    kept = root / f"execute-{os.getpid()}-abcdef"  # a live pid: not touched
    for folder in (stale, kept):
        (folder / "sdk").mkdir(parents=True)
    done = ws.run("job", "execute", "hello")
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and kept.exists()
    assert [p for p in root.glob("execute-*") if p != kept] == []  # its own is gone too


def several(ws: WorkspaceDir, broken: bool = False) -> None:
    ws.file("mine.py", ONE_JOB)
    ws.file("sys_jobs.py", ONE_JOB.replace("hello", "other"))
    ws.file("more.py", "import no_such_module_here\n" if broken else ONE_JOB.replace("hello", "x"))
    ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "mine.py", "location_name": "mine"}},
                {"python_file": {"relative_path": "sys_jobs.py", "location_name": "sys"}},
                {"python_file": {"relative_path": "more.py", "location_name": "more"}},
            ]
        }
    )


def test_execute_of_an_unknown_job_without_l(ws: WorkspaceDir) -> None:
    several(ws)
    alone = ws.run("job", "execute", "nope")
    assert alone.returncode == 2
    assert alone.stderr.strip() == (
        "wsm: the workspace has 3 locations (mine, sys, more) and no manager is running "
        "to say which has job 'nope': name its location with -l"
    )
    with WsmUp(ws) as up:
        up.wait_all_settled()
        launched = ws.run("job", "launch", "nope")
        executed = ws.run("job", "execute", "nope")
        assert launched.returncode == executed.returncode == 1
        assert (
            executed.stderr
            == launched.stderr
            == "wsm: no job named 'nope' in any loaded location\n"
        )
        found = ws.run("job", "execute", "other")  # the one location that has it
        assert found.returncode == 0, found.stderr


def test_launch_into_a_location_whose_code_failed_is_refused(ws: WorkspaceDir) -> None:
    several(ws, broken=True)
    with WsmUp(ws) as up:
        up.wait_all_settled()
        assert up.location("more")["state"] == "error"
        done = ws.run("job", "launch", "-l", "more", "anything", "--wait", timeout=30)
        assert done.returncode == 1
        assert done.stdout == ""  # nothing queued
        line = done.stderr.strip()
        assert "\n" not in line
        assert line.startswith("wsm: location 'more' is error: ")
        assert "no_such_module_here" in line
        anywhere = ws.run("job", "launch", "anything")
        assert anywhere.returncode == 1
        assert "location 'more' is error: " in anywhere.stderr
        executed = ws.run("job", "execute", "anything")
        assert executed.returncode == 1 and executed.stderr == anywhere.stderr


@pytest.mark.slow
def test_a_run_queued_while_its_location_starts_fails_when_its_code_fails(ws: WorkspaceDir) -> None:
    ws.file("slow.py", "import time\ntime.sleep(4)\nimport no_such_module_either\n")
    ws.file("mine.py", ONE_JOB)
    ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "mine.py", "location_name": "mine"}},
                {"python_file": {"relative_path": "slow.py", "location_name": "slow"}},
            ]
        }
    )
    with WsmUp(ws) as up:
        up.wait_state("slow", "starting")
        done = ws.run("job", "launch", "-l", "slow", "anything", "--wait", timeout=60)
        up.track()
        assert up.location("slow")["state"] == "error"
    run_id = done.stdout.strip().splitlines()[0]  # queued: the location was starting
    assert done.returncode == 1  # was: --wait never returned
    assert done.stderr.strip().endswith(f"run {run_id}: FAILURE")
    record = final(ws, run_id, timeout=5)
    assert record.error is not None
    assert record.error.startswith("location 'slow' is error: ")
    assert "no_such_module_either" in record.error
