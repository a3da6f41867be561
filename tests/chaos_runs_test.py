"""Random `kill -9`s of the manager during a burst of sensor runs (issue 9).

A sensor asks for runs with keys from a fixed set (a counter file, not the cursor, picks
them, so the same keys come back after every restart); each job writes its run id and key
to a file at its first line, then takes 0-500 ms (one key in 8: 8 s, with a child process
of its own, so a kill always finds runs that only their lifeline can end). The real
`wsm up` (`max_concurrent_runs: 10`) is started, killed with SIGKILL after a random
0.2-3 s (one time in three during its shutdown: SIGTERM, a random 0-1.5 s of drain
(`run_drain_seconds: 0.5`) and cancel, then SIGKILL), and checked after every kill:

- no process of its tree (manager, loader, run processes and their children) is left;
- the database passes `PRAGMA integrity_check`;
- no run_key has two runs in the database, and no key's job function ran under two run ids
  (the jobs' own file: the strongest form of "launched twice");
- what a tick commits is whole (its runs, their used keys, the tick), every run's last status
  event is its status, every final run has its end_seq;
- after the restart, every run that was in progress at the kill is `FAILURE` with
  "the manager was killed while the run was in progress".

One key in 5 fails on purpose; a `@run_failure_sensor` asks for one `page` run per failed
run (run_key `page-<run id>`): at the end each failed run has exactly one page.

At the end one more `wsm up` drains: every key has run, every run is final. The fast
variant kills 5 times, the slow one 50.
"""

from __future__ import annotations

import collections
import random
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import psutil
import pytest
from e2e import WorkspaceDir, WsmUp, wait_for, wsm_argv

from workspace_manager.runs.coordinator import KILLED_REASON, SHUTDOWN_REASON
from workspace_manager.storage.records import RunRecord
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.supervisor import runtime

REPO = """
import os, random, subprocess, sys, time
from workspace_manager import (
    DefaultSensorStatus, RunRequest, job, repository, run_failure_sensor, sensor,
)

NOTES = os.environ["NOTES"]
KEYS = int(os.environ["CHAOS_KEYS"])
BATCH = 20  # keys asked for per tick
STEP = 10  # the window moves by less than it is wide: each key is asked for twice a lap


@job
def chaos_work(context):
    # first line: one write with O_APPEND, so lines of concurrent runs never interleave
    fd = os.open(os.path.join(NOTES, "launched"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, ("%s %s\\n" % (context.run_id, context.tags["chaos/key"])).encode())
    os.close(fd)
    number = int(context.tags["chaos/key"][1:])
    if number % 8 == 7:
        # a straggler with a child: at a kill, only the run's lifeline can end them
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        time.sleep(8)
        child.kill()
        child.wait()
    else:
        time.sleep(random.uniform(0, 0.5))
    if number % 5 == 3:
        raise ValueError("chaos: %s fails on purpose" % context.tags["chaos/key"])
    context.log.info("done with %s", context.tags["chaos/key"])


@job
def page(context):
    context.log.warning("run %s failed", context.run_config["run_id"])


@run_failure_sensor(
    monitored_jobs=[chaos_work],
    request_job=page,
    minimum_interval_seconds=0.5,
    default_status=DefaultSensorStatus.RUNNING,
)
def on_failure(context):
    run_id = context.dagster_run.run_id
    return RunRequest(run_key="page-" + run_id, run_config={"run_id": run_id})


@sensor(job=chaos_work, minimum_interval_seconds=0.5, default_status=DefaultSensorStatus.RUNNING)
def burst(context):
    path = os.path.join(NOTES, "counter")
    try:
        with open(path) as f:
            start = int(f.read())
    except (OSError, ValueError):
        start = 0
    for i in range(start, start + BATCH):
        key = "k%03d" % (i % KEYS)
        yield RunRequest(run_key=key, tags={"chaos/key": key})
    with open(path + ".tmp", "w") as f:
        f.write(str(start + STEP))
    os.replace(path + ".tmp", path)


@repository
def chaos_repo():
    return [chaos_work, burst, page, on_failure]
"""

IN_PROGRESS = ("STARTING", "STARTED", "CANCELING")
# failed runs of the work without the page the run failure sensor asks for
UNPAGED = (
    "SELECT run_id FROM runs AS f WHERE job = 'chaos_work' AND status = 'FAILURE' "
    "AND NOT EXISTS (SELECT 1 FROM runs AS p WHERE p.run_key = 'page-' || f.run_id)"
)
FINAL = ("SUCCESS", "FAILURE", "CANCELED")


def make(ws: WorkspaceDir, keys: int) -> None:
    ws.file("code/chaos_repo.py", REPO)
    (ws.root / "notes").mkdir(exist_ok=True)
    entry = {
        "relative_path": "code/chaos_repo.py",
        "location_name": "chaos",
        "env_vars": {"NOTES": str(ws.root / "notes"), "CHAOS_KEYS": str(keys)},
    }
    ws.workspace(
        {
            "daemon": {"max_concurrent_runs": 10, "run_drain_seconds": 0.5},
            "load_from": [{"python_file": entry}],
        }
    )


def db_path(ws: WorkspaceDir) -> Path:
    key = runtime.manager_key(f"workspace:{ws.root / 'workspace.yaml'}")
    return Path(ws.env["WSM_STATE_DIR"]) / key / "runs.db"


def query(ws: WorkspaceDir, sql: str) -> List[Tuple[Any, ...]]:
    """Read the database with plain sqlite3, read only, as a third party would."""
    path = db_path(ws)
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def launched(ws: WorkspaceDir) -> List[Tuple[str, str]]:
    """(run_id, key) for every time a job's function started, from the jobs' own file."""
    try:
        text = (ws.root / "notes" / "launched").read_text()
    except OSError:
        return []
    return [tuple(line.split()) for line in text.splitlines() if line]  # type: ignore[misc]


class Sampler(threading.Thread):
    """Records every process of `wsm up`'s tree every few ms while it runs."""

    def __init__(self, up: WsmUp) -> None:
        super().__init__(daemon=True)
        self.up = up
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.is_set():
            self.up.track()
            self.done.wait(0.02)

    def stop(self) -> None:
        self.done.set()
        self.join(5)


def run_processes_alive(run_ids: Set[str]) -> List[int]:
    """Processes of ours still alive that are run processes of these runs (their pid may
    have been reused by anyone else's process: the environment says whose run it is)."""
    left = []
    for p in psutil.process_iter(["pid", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if p.environ().get("WSM_RUN_ID") in run_ids:
                left.append(p.pid)
        except psutil.Error:
            continue
    return left


def check_database(ws: WorkspaceDir, when: str) -> None:
    assert query(ws, "PRAGMA integrity_check") in ([], [("ok",)]), when
    twice = query(
        ws,
        "SELECT run_key, count(*) FROM runs WHERE run_key IS NOT NULL "
        "GROUP BY run_key HAVING count(*) > 1",
    )
    assert twice == [], f"{when}: run_keys with several runs: {twice}"
    # what one tick commits is all there or not at all: its runs, their keys, the tick
    for what, sql in (
        (
            "runs of a tick that is not there",
            "SELECT run_id FROM runs WHERE json_extract(origin, '$.tick_id') NOT IN "
            "(SELECT tick_id FROM ticks)",
        ),
        (
            "a tick's runs that are not there",
            "SELECT j.value FROM ticks, json_each(ticks.run_ids) AS j "
            "WHERE j.value NOT IN (SELECT run_id FROM runs)",
        ),
        (
            "runs whose key is not kept as used",
            "SELECT run_id FROM runs WHERE run_id NOT IN (SELECT run_id FROM run_keys)",
        ),
        (
            "runs whose last status event is not their status",
            "SELECT run_id FROM runs WHERE status != (SELECT e.status FROM run_events e "
            "WHERE e.run_id = runs.run_id ORDER BY e.event_id DESC LIMIT 1)",
        ),
        (
            "final runs without their place in the order of ends",
            "SELECT run_id FROM runs WHERE status IN ('SUCCESS', 'FAILURE', 'CANCELED') "
            "AND end_seq IS NULL",
        ),
    ):
        found = query(ws, sql)
        assert found == [], f"{when}: {what}: {found}"


def check_launched_once(ws: WorkspaceDir, when: str) -> int:
    """No key's function ran under two run ids, nor one run id's function twice."""
    lines = launched(ws)
    ids_by_key: Dict[str, Set[str]] = collections.defaultdict(set)
    for run_id, key in lines:
        ids_by_key[key].add(run_id)
    twice = {k: sorted(ids) for k, ids in ids_by_key.items() if len(ids) > 1}
    assert twice == {}, f"{when}: keys whose job ran under several run ids: {twice}"
    again = [r for r, n in collections.Counter(r for r, _ in lines).items() if n > 1]
    assert again == [], f"{when}: runs whose job function ran more than once: {again}"
    return len(lines)


def check_recovery(ws: WorkspaceDir, pending: Set[str], recovered: Set[str], when: str) -> None:
    """A run in progress at a kill stays so until the next manager has started, which fails
    it with the reason; then it never changes. Moves the failed ones from `pending` to
    `recovered`, adds the runs in progress now to `pending`."""
    rows = dict((r[0], (r[1], r[2])) for r in query(ws, "SELECT run_id, status, error FROM runs"))
    for run_id in pending | recovered:
        status, error = rows[run_id]
        if (status, error) == ("FAILURE", KILLED_REASON):
            pending.discard(run_id)
            recovered.add(run_id)
        else:
            assert run_id in pending and status in IN_PROGRESS, (when, run_id, status, error)
    pending.update(r for r, (status, _) in rows.items() if status in IN_PROGRESS)


def chaos(ws: WorkspaceDir, kills: int, keys: int, seed: int) -> None:
    rng = random.Random(seed)
    make(ws, keys)
    began = time.monotonic()
    # runs in progress at a kill, until a later manager has failed them with the reason
    pending: Set[str] = set()
    recovered: Set[str] = set()
    cleanup = 0.0  # the longest time from a kill to its last process gone
    graceful = 0  # kills during a shutdown
    processes = 0
    for n in range(kills):
        when = f"kill {n + 1} of {kills} (seed {seed})"
        up = WsmUp(ws)
        sampler = Sampler(up)
        try:
            time.sleep(rng.uniform(0.2, 3.0))
            if rng.random() < 1 / 3:  # killed in the middle of its shutdown: drain, cancel
                graceful += 1
                up.proc.send_signal(signal.SIGTERM)
                time.sleep(rng.uniform(0, 1.5))
        finally:
            sampler.stop()
            killed_at = time.monotonic()
            up.stop(signal.SIGKILL)
        ours = {r[0] for r in query(ws, "SELECT run_id FROM runs")}
        up.assert_no_leftovers(timeout=5)
        wait_for(
            lambda ours=ours: not run_processes_alive(ours),
            5,
            f"{when}: every run process to exit",
        )
        cleanup = max(cleanup, time.monotonic() - killed_at)
        processes += len(up.seen_pids)
        check_database(ws, when)
        check_launched_once(ws, when)
        check_recovery(ws, pending, recovered, when)

    # the last manager drains: every key runs once, every run ends
    with WsmUp(ws) as up:
        sampler = Sampler(up)
        try:
            wait_for(
                lambda: (
                    query(
                        ws,
                        "SELECT count(DISTINCT run_key) FILTER (WHERE job = 'chaos_work'), "
                        "count(*) FILTER (WHERE status NOT IN "
                        "('SUCCESS', 'FAILURE', 'CANCELED')) FROM runs",
                    )
                    == [(keys, 0)]
                    and not query(ws, UNPAGED)
                ),
                60 + 2 * keys,
                "every key to have a finished run, every failed one its page",
            )
        finally:
            sampler.stop()
        assert up.stop() == 0
    check_database(ws, "after the drain")
    functions = check_launched_once(ws, "after the drain")
    statuses = dict(query(ws, "SELECT status, count(*) FROM runs GROUP BY status"))
    assert set(statuses) <= set(FINAL), statuses
    total = sum(statuses.values())
    killed = query(ws, f"SELECT count(*) FROM runs WHERE error = '{KILLED_REASON}'")[0][0]
    canceled = query(ws, f"SELECT count(*) FROM runs WHERE error = '{SHUTDOWN_REASON}'")[0][0]
    assert canceled == statuses.get("CANCELED", 0)
    # every other run did its work: one key in 5 fails on purpose, the rest succeed
    ends = set(
        (job, status, int(key[1:]) % 5 == 3 if job == "chaos_work" else None, error)
        for job, status, key, error in query(
            ws,
            "SELECT job, status, run_key, error FROM runs "
            f"WHERE coalesce(error, '') NOT IN ('{KILLED_REASON}', '{SHUTDOWN_REASON}')",
        )
    )
    for job, status, failing, error in ends:
        if job == "chaos_work" and failing:
            assert status == "FAILURE" and error.startswith("ValueError: chaos: k"), error
        else:
            assert (status, error) == ("SUCCESS", None), (job, status, error)
    # the run failure sensor got each failed run once: one page each (the drain waited for
    # them all; a second would have needed its run_key twice)
    failed = query(ws, "SELECT count(*) FROM runs WHERE job = 'chaos_work' AND status = 'FAILURE'")
    pages = query(ws, "SELECT count(*) FROM runs WHERE job = 'page'")
    assert pages == failed
    check_recovery(ws, pending, recovered, "after the drain")
    assert pending == set(), f"runs in progress at a kill never recovered: {pending}"
    assert killed == len(recovered)
    print(
        f"\nchaos: {kills} kills ({graceful} during a shutdown) in "
        f"{time.monotonic() - began:.0f} s, {total} runs "
        f"({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}), "
        f"{killed} failed by a kill, {canceled} canceled by a shutdown, {pages[0][0]} pages; "
        f"{functions} job functions started, {keys} keys; "
        f"{processes} processes seen at kills, all gone at most {cleanup:.2f} s after a kill"
    )


@pytest.mark.slow
def test_kill_9_of_the_manager_during_a_burst_of_runs(ws: WorkspaceDir) -> None:
    chaos(ws, kills=5, keys=40, seed=random.randrange(1 << 30))


@pytest.mark.slow
def test_50_kill_9s_of_the_manager_during_a_burst_of_runs(ws: WorkspaceDir) -> None:
    chaos(ws, kills=50, keys=200, seed=random.randrange(1 << 30))


def test_sigterm_while_the_manager_recovers_runs_is_a_clean_stop(ws: WorkspaceDir) -> None:
    """Recovery (and the daemon's start) follow the health line: a SIGTERM then must stop
    the manager as at any other time (exit 0), not kill it with the signal's default."""
    ws.file(
        "repo.py",
        """
        from workspace_manager import job, repository

        @job
        def j():
            pass

        @repository
        def r():
            return [j]
        """,
    )
    ws.workspace({"load_from": [{"python_file": {"relative_path": "repo.py"}}]})
    db_path(ws).parent.mkdir(parents=True)
    store = SqliteStorage(db_path(ws), create=True)
    try:
        for _ in range(500):  # left in progress by a killed manager: recovery takes a while
            run = store.add_run(RunRecord(uuid.uuid4().hex, "repo", "j", created_at=time.time()))
            store.update_run(run.run_id, status="STARTED")
    finally:
        store.close()
    with WsmUp(ws) as up:
        assert up.stop(signal.SIGTERM) == 0, up.output()
    assert "received SIGTERM, shutting down" in up.output()
    assert query(ws, "SELECT status, error, count(*) FROM runs GROUP BY status, error") == [
        ("FAILURE", KILLED_REASON, 500)
    ]


def test_launch_wait_ends_when_the_manager_is_killed(ws: WorkspaceDir) -> None:
    """`wsm job launch --wait` follows the run in the database; once the manager is killed
    nothing writes to it until the next `wsm up`: it says so (one line, exit 1) instead of
    waiting forever."""
    ws.file(
        "repo.py",
        """
        import time
        from workspace_manager import job, repository

        @job
        def slow(context):
            context.log.info("started")
            time.sleep(600)

        @repository
        def r():
            return [slow]
        """,
    )
    ws.workspace({"load_from": [{"python_file": {"relative_path": "repo.py"}}]})
    with WsmUp(ws) as up:
        up.wait_all_settled()
        follow = subprocess.Popen(
            wsm_argv("job", "launch", "slow", "--wait"),
            cwd=ws.root,
            env=ws.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: List[str] = []
        assert follow.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(follow.stdout), daemon=True)
        reader.start()
        try:
            # killed once --wait has shown the job's first log line (a STARTED run may not
            # have logged yet)
            wait_for(lambda: any("INFO started" in line for line in lines), 30, "the log line")
            up.track()
            up.stop(signal.SIGKILL)
            follow.wait(timeout=30)
            reader.join(timeout=10)
            out = "".join(lines)
            err = follow.stderr.read() if follow.stderr is not None else ""
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
    assert follow.returncode == 1, (out, err)
    assert "INFO started" in out
    assert err.strip().endswith("the next `wsm up` marks it FAILURE"), err
    assert "Traceback" not in err
