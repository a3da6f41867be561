"""Heartbeats through shared memory (supervisor/heartbeats.py, loader/heartbeat.py) and cheap
memory samples (supervisor/memsample.py): what an idle manager no longer pays for, and the
hangs it still finds (SPEC section 4: 3 missed heartbeats)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any, List, Optional

import pytest
from cli_up_test import manager_client
from e2e import WorkspaceDir, WsmUp, wait_for

from workspace_manager.loader.heartbeat import Beat
from workspace_manager.loader.server import Server
from workspace_manager.supervisor import heartbeats, looplag, memsample
from workspace_manager.supervisor import location as location_mod
from workspace_manager.supervisor.heartbeats import HeartbeatFile, HeartbeatWatch

# -- the file and the loader's counter -----------------------------------------------------------


def test_each_loader_counts_in_its_own_page(tmp_path: Path) -> None:
    board = HeartbeatFile(str(tmp_path / "heartbeats"))
    try:
        slots = [board.take() for _ in range(3)]
        assert len(set(slots)) == 3
        assert os.stat(board.path).st_mode & 0o777 == 0o600
        beat = Beat(board.path, board.offset(slots[1]))
        before = [board.count(s) for s in slots]
        for _ in range(5):
            beat.bump()
        assert [board.count(s) for s in slots] == [before[0], before[1] + 5, before[2]]
        board.give_back(slots[0])
        fresh = [board.take() for _ in range(heartbeats.CHUNK_PAGES)]  # grows a chunk
        # a freed slot is reused after the others: its process may still write for a moment
        assert fresh.index(slots[0]) == heartbeats.CHUNK_PAGES - 3
        assert fresh[-1] > heartbeats.CHUNK_PAGES  # in the second chunk
        far = Beat(board.path, board.offset(fresh[-1]))
        far.bump()
        assert board.count(fresh[-1]) == 1
    finally:
        board.close()
    assert not os.path.exists(tmp_path / "heartbeats")


def test_the_server_loop_counts_while_idle_and_stops_counting_when_stopped(
    tmp_path: Path,
) -> None:
    board = HeartbeatFile(str(tmp_path / "heartbeats"))
    slot = board.take()
    server = Server(
        listen=f"unix:{tmp_path / 's.sock'}",
        secret="x",
        location="t",
        methods=None,  # type: ignore[arg-type]  # no call is made
        max_frame=1 << 20,
        beat=Beat(board.path, board.offset(slot)),
        beat_seconds=0.02,
    )
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        first = board.count(slot)
        wait_for(lambda: board.count(slot) - first >= 5, 10, "five turns of an idle loop")
    finally:
        server.request_stop()
        thread.join(10)
        server.close()
    stopped = board.count(slot)
    time.sleep(0.1)
    assert board.count(slot) == stopped
    board.close()


# -- the manager's one timer ---------------------------------------------------------------------


def test_one_timer_reads_every_counter_and_finds_the_still_ones() -> None:
    async def main() -> Any:
        watch = HeartbeatWatch()
        counters = [0] * 50
        closed = [False] * 50

        def counter(i: int) -> Any:
            return lambda: counters[i]

        def is_closed(i: int) -> Any:
            return lambda: closed[i]

        futures = [watch.watch(counter(i), is_closed(i), 0.05) for i in range(50)]
        closed[7] = True  # a closed connection misses its heartbeats too
        start = time.monotonic()
        while time.monotonic() - start < 0.6:
            for i in range(50):
                if i not in (3, 7):
                    counters[i] += 1
            await asyncio.sleep(0.01)
        hung = {i: f.result() for i, f in enumerate(futures) if f.done()}
        looks = watch.looks
        for f in futures:
            f.cancel()
        await asyncio.sleep(0)
        return hung, looks, dict(watch._tickers)

    hung, looks, tickers = asyncio.run(main())
    assert hung == {3: "missed 3 heartbeats (0.05s each)", 7: "missed 3 heartbeats (0.05s each)"}
    # one wake-up per period for the 50 of them (0.6 s / 0.05 s = 12), not one each
    assert 5 <= looks <= 16, looks
    assert tickers == {}  # nothing watched: no timer left


# -- memory samples ------------------------------------------------------------------------------


def test_pss_is_read_again_only_when_rss_moves_or_it_is_old() -> None:
    reads: List[int] = []
    now = [0.0]

    def pss(pid: int) -> Optional[int]:
        reads.append(pid)
        return 1234

    sampler = memsample.MemorySampler(pss, clock=lambda: now[0])
    me = os.getpid()
    assert sampler.sample([me])[0] == 1234
    for _ in range(5):
        assert sampler.sample([me])[0] == 1234
    assert len(reads) == 1
    import mmap

    little = mmap.mmap(-1, 512 * 1024)  # fresh pages: RSS moves by 512 KiB when touched
    for i in range(0, len(little), 4096):
        little[i] = 1  # a small move: the last PSS plus the move, nothing read
    total, _ = sampler.sample([me])
    assert len(reads) == 1 and 1234 < total <= 1234 + memsample.PSS_DRIFT_BYTES
    # fresh pages again: a bytearray this size may come from memory malloc keeps resident
    # after an earlier test freed it (glibc raises its mmap threshold up to 32 MiB), and
    # touching it then moves no RSS (seen in CI's full suite)
    grown = mmap.mmap(-1, 32 * 2**20)
    for i in range(0, len(grown), 4096):
        grown[i] = 1  # touch it: RSS moves
    total, _ = sampler.sample([me])  # 32 MB more: more than PSS_DRIFT_BYTES
    assert len(reads) == 2 and total == 1234
    now[0] += 2 * memsample.PSS_REFRESH_SECONDS
    sampler.sample([me])
    assert len(reads) == 3
    assert sampler.sample([2**22 + 12345]) == (None, 0.0)  # no such process
    grown.close()
    little.close()


def test_samples_asked_in_one_turn_go_off_the_loop_in_one_job() -> None:
    class Inst:
        def __init__(self, n: int) -> None:
            self.n = n
            self.thread: Optional[threading.Thread] = None

        def rss_bytes(self) -> int:
            self.thread = threading.current_thread()
            if self.n == 3:
                raise ProcessLookupError("gone")
            return self.n

    async def main() -> Any:
        insts = [Inst(n) for n in range(10)]
        answers = await asyncio.gather(
            *(location_mod._sample_memory(i) for i in insts), return_exceptions=True
        )
        return insts, answers

    insts, answers = asyncio.run(main())
    assert [a if not isinstance(a, Exception) else "error" for a in answers] == [
        0,
        1,
        2,
        "error",
        4,
        5,
        6,
        7,
        8,
        9,
    ]
    threads = {i.thread for i in insts}
    assert len(threads) == 1 and threading.main_thread() not in threads


# -- end to end ----------------------------------------------------------------------------------

GIL_HOLDER = """
import itertools
from workspace_manager import RunRequest, job, repository, sensor

@job
def j(): ...

@sensor(job=j)
def hold_the_interpreter():
    # sum() over an iterator written in C never lets go of the GIL: no thread of the
    # loader runs again, its server loop included
    sum(itertools.repeat(1, 10**15))
    yield RunRequest(run_key=None)

@repository
def r():
    return [j, hold_the_interpreter]
"""

PLAIN = """
from workspace_manager import job, repository

@job
def j(): ...

@repository
def r():
    return [j]
"""


def test_a_loader_whose_interpreter_is_held_is_restarted_and_the_others_are_not_pinged(
    tmp_path: Path,
) -> None:
    ws = WorkspaceDir(tmp_path)
    ws.file("gil/repo.py", GIL_HOLDER)
    ws.file("quiet/repo.py", PLAIN)
    path = ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": f"{name}/repo.py",
                        "location_name": name,
                        "supervision": {"heartbeat_seconds": 0.3, "call_timeout_seconds": 30},
                    }
                }
                for name in ("gil", "quiet")
            ],
            "supervision": {"backoff_initial_seconds": 0.1, "backoff_max_seconds": 0.2},
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_all_settled(timeout=120)
        before = up.location("gil")
        quiet = up.location("quiet")
        assert before["state"] == quiet["state"] == "ready"

        def call() -> None:
            try:
                with manager_client(ws) as client:
                    client.call(
                        "call",
                        {
                            "location": "gil",
                            "method": "evaluate_sensor",
                            "params": {"sensor": "hold_the_interpreter"},
                        },
                    )
            except Exception:
                pass  # the location is killed under the call

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        loc = wait_for(
            lambda: (lambda x: x if x["state"] == "ready" and x["pid"] != before["pid"] else None)(
                up.location("gil")
            ),
            30,
            "gil to be restarted",
        )
        reasons = [t["reason"] for t in loc["transitions"]]
        assert any(r.startswith("missed 3 heartbeats (0.3s each)") for r in reasons), reasons
        caller.join(30)
        after = up.location("quiet")
        assert after["state"] == "ready" and after["pid"] == quiet["pid"]
        assert after["restarts"] == 0
        assert up.stop() == 0


def test_the_loop_lag_probe_wakes_only_while_a_ping_waits() -> None:
    async def main() -> Any:
        probe = looplag.LoopLag(period=0.01).start()
        idle = probe._task
        answer = asyncio.get_running_loop().create_future()
        waiting = asyncio.ensure_future(looplag.wait_allowing_for_lag(answer, 1.0))
        await asyncio.sleep(0.03)
        during = probe._task is not None
        answer.set_result("pong")
        got = await waiting
        after = probe._task
        probe.stop()
        return idle, during, got, after

    assert asyncio.run(main()) == (None, True, "pong", None)


ORPHAN_SCRIPT = r"""
import builtins, os, signal, sys, threading, time
from workspace_manager.supervisor import orphans

assert orphans.become_subreaper()
stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(8)]  # an idle manager's workers
for t in threads:
    t.start()
r, w = os.pipe()
if os.fork() == 0:  # the middle process: a leftover's dead loader
    os.setsid()
    if os.fork() == 0:
        os.close(r)
        os.write(w, str(os.getpid()).encode())
        os.close(w)
        time.sleep(60)
        os._exit(0)
    os._exit(0)
os.close(w)
leftover = int(os.read(r, 32))
deadline = time.monotonic() + 10
while leftover not in orphans._children() and time.monotonic() < deadline:
    time.sleep(0.01)
opened = []
real_open = builtins.open
builtins.open = lambda path, *a, **k: (opened.append(path), real_open(path, *a, **k))[1]
killed = orphans.collect()
builtins.open = real_open
stop.set()
print(leftover in killed, sum("children" in str(p) for p in opened))
"""


def test_leftovers_are_found_in_the_main_threads_children_alone(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", ORPHAN_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    found, children_files = out.stdout.split()
    assert found == "True"  # killed: it was reparented to the main thread
    assert children_files == "1"  # one file read, not one per thread


class _BeatingInstance:
    """Loads at once, counts its heartbeats, never exits; counts its memory samples."""

    class Connection:
        closed = False

        def request(self, method: str, params: Any = None) -> Any:
            raise AssertionError("a location with a heartbeat page is never pinged")

    def __init__(self) -> None:
        self.connection = self.Connection()
        self.snapshot: dict = {"repositories": []}
        self.started_at = 0.0
        self.pid = 4242
        self.returncode = None
        self.beat_slot = 1
        self.beats = 0
        self._exit = asyncio.Event()

    def beat_count(self) -> int:
        self.beats += 1  # moves at every look: alive
        return self.beats

    async def start(self, timeout: float) -> None:
        pass

    def rss_bytes(self) -> int:
        return 1 << 20

    async def wait_exit(self) -> int:
        await self._exit.wait()
        return 0

    async def stop(self, grace: float = 0) -> None:
        self._exit.set()


def test_status_samples_of_every_location_go_off_together_and_no_ping_is_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from workspace_manager.supervisor.location import Location, LocationHooks
    from workspace_manager.supervisor.state import State
    from workspace_manager.workspace.model import CodeTarget, LocationConfig, Supervision

    monkeypatch.setattr(location_mod, "STATUS_MEMORY_SECONDS", 0.2)
    batches: List[int] = []
    real = location_mod._sample_all

    def sample_all(instances: List[Any]) -> Any:
        batches.append(len(instances))
        return real(instances)

    monkeypatch.setattr(location_mod, "_sample_all", sample_all)
    monkeypatch.setattr(location_mod, "make_instance", lambda plan, out: _BeatingInstance())

    async def main() -> Any:
        watch = HeartbeatWatch()

        async def plan(config: LocationConfig) -> Any:
            return object()

        locs = []
        for i in range(5):
            target = CodeTarget("python_file", tmp_path, python_file=tmp_path / "repo.py")
            config = LocationConfig(f"l{i}", target, Supervision(heartbeat_seconds=0.05))
            hooks = LocationHooks(
                plan=plan,
                on_transition=lambda *_: None,
                on_output=lambda *_: None,
                heartbeats=watch,
            )
            locs.append(Location(config, hooks))
            locs[-1].start()
            await asyncio.sleep(0.03)  # each gets ready at a time of its own
        await asyncio.sleep(1.0)
        states = {loc.state for loc in locs}
        for loc in locs:
            await loc.stop(grace=0)
        watch.close()
        return states, watch.looks

    states, looks = asyncio.run(main())
    assert states == {State.READY}  # the counters moved: nobody hung; no connection to ping
    assert looks >= 10
    # once all are ready (each took a sample then, at a time of its own), every round
    # samples the five of them in one job
    assert batches[-2:] == [5, 5], batches
