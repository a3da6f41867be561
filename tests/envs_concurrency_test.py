"""Atomic builds across processes: a killed build is never reused and is cleaned up, two
processes building the same env build it once, and one process shares a build between
locations while bounding parallel builds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import List

import psutil
import pytest
from e2e import wait_for
from fixtures.envs_support import HOLD_SETUP, location, make_package

from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.progress import RecordingReporter
from workspace_manager.envs.service import EnvironmentService

BUILDER = Path(__file__).resolve().parent / "fixtures" / "env_builder.py"


def start_builder(tmp_path: Path, hold: Path, name: str) -> subprocess.Popen:
    spec = {"cache": str(tmp_path / "cache"), "workdir": str(tmp_path), "name": name,
            "requirements": ["./wsm-slow"]}  # fmt: skip
    env = {**os.environ, "WSM_TEST_HOLD": str(hold)}
    env.pop("PYTHONPATH", None)
    return subprocess.Popen(
        [sys.executable, str(BUILDER), json.dumps(spec)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: killing it kills pip and the build backend too
    )


def tree(proc: subprocess.Popen) -> List[psutil.Process]:
    try:
        return [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        return []


def assert_gone(procs: List[psutil.Process]) -> None:
    wait_for(lambda: not [p for p in procs if p.is_running() and p.status() != "zombie"], 10,
             "the builder's processes to exit")  # fmt: skip


def slow_package(tmp_path: Path) -> Path:
    return make_package(tmp_path, "wsm-slow", "wsm_slow", "VALUE = 1\n", setup_py=HOLD_SETUP)


def builds_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "envs" / ".builds"


@pytest.mark.slow
def test_killed_build_is_never_reused_and_is_cleaned(tmp_path: Path) -> None:
    slow_package(tmp_path)
    hold = tmp_path / "hold"
    hold.write_text("")
    proc = start_builder(tmp_path, hold, "a")
    try:
        wait_for(lambda: Path(str(hold) + ".started").exists(), 60, "pip to reach the build")
        procs = tree(proc)
        assert len(procs) >= 2  # the builder and pip (and the build backend)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert_gone(procs)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    leftovers = list(builds_dir(tmp_path).iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.split(".")[1] == str(proc.pid)
    loc = location(tmp_path, "a", ["./wsm-slow"])
    svc = EnvironmentService(tmp_path / "cache")
    assert svc.cached(loc) is None  # the half-built env is not visible
    hold.unlink()
    result = asyncio.run(svc.ensure(loc))
    assert result.built
    assert [p.name for p in builds_dir(tmp_path).iterdir()] == [
        os.path.basename(os.readlink(tmp_path / "cache" / "envs" / result.key))
    ]


@pytest.mark.slow
def test_two_processes_build_the_same_env_once(tmp_path: Path) -> None:
    slow_package(tmp_path)
    hold = tmp_path / "hold"
    hold.write_text("")
    first = start_builder(tmp_path, hold, "a")
    second = None
    try:
        wait_for(lambda: Path(str(hold) + ".started").exists(), 60, "the first build to start")
        second = start_builder(tmp_path, hold, "b")
        lines: List[str] = []

        def second_waits() -> bool:
            lines.append(second.stderr.readline())  # type: ignore[union-attr]
            return "waiting for another wsm building this env" in lines[-1]

        wait_for(second_waits, 60, "the second process to wait for the first")
        hold.unlink()
        out_a, _ = first.communicate(timeout=120)
        out_b, err_b = second.communicate(timeout=120)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    a, b = json.loads(out_a), json.loads(out_b)
    assert (a["built"], b["built"]) == (True, False)
    assert a["python"] == b["python"] and a["key"] == b["key"]
    assert len(list(builds_dir(tmp_path).iterdir())) == 1
    assert "built by another wsm, reused" in err_b


def test_locations_with_one_spec_share_one_build(tmp_path: Path) -> None:
    make_package(tmp_path, "wsm-shared", "wsm_shared", "")
    reporter = RecordingReporter()
    svc = EnvironmentService(tmp_path / "cache", reporter=reporter)
    locs = [location(tmp_path, f"loc{i}", ["./wsm-shared"]) for i in range(5)]

    async def all_of_them():
        return await asyncio.gather(*(svc.ensure(loc) for loc in locs))

    results = asyncio.run(all_of_them())
    assert len({r.key for r in results}) == 1
    assert [e.kind for e in reporter.events].count("start") == 1
    assert len(list(builds_dir(tmp_path).iterdir())) == 1
    done = [e for e in reporter.events if e.kind == "done"]
    assert set(done[0].locations) == {f"loc{i}" for i in range(5)}


def test_parallel_builds_are_bounded(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    svc = EnvironmentService(tmp_path / "cache", reporter=reporter, max_parallel=1)
    locs = [
        location(tmp_path, "plain", pip_args=()),
        location(tmp_path, "other", pip_args=("--pre",)),
    ]

    async def both():
        return await asyncio.gather(*(svc.ensure(loc) for loc in locs))

    results = asyncio.run(both())
    assert results[0].key != results[1].key and all(r.built for r in results)
    kinds = [(e.kind, e.key) for e in reporter.events if e.kind in ("start", "done")]
    # one at a time: each build finishes before the next starts
    assert [k for k, _ in kinds] == ["start", "done", "start", "done"]
    assert kinds[0][1] == kinds[1][1] and kinds[2][1] == kinds[3][1]


def test_different_envs_build_in_parallel(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    svc = EnvironmentService(tmp_path / "cache", reporter=reporter, max_parallel=2)
    locs = [
        location(tmp_path, "plain", pip_args=()),
        location(tmp_path, "other", pip_args=("--pre",)),
    ]

    async def both():
        return await asyncio.gather(*(svc.ensure(loc) for loc in locs))

    asyncio.run(both())
    kinds = [e.kind for e in reporter.events if e.kind in ("start", "done")]
    assert kinds[:2] == ["start", "start"]


@pytest.mark.slow
def test_shutdown_cancels_a_running_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_package(tmp_path)
    hold = tmp_path / "hold"
    hold.write_text("")
    monkeypatch.setenv("WSM_TEST_HOLD", str(hold))
    svc = EnvironmentService(tmp_path / "cache")
    loc = location(tmp_path, "a", ["./wsm-slow"])
    children: List[psutil.Process] = []

    async def build_then_cancel() -> BaseException:
        task = asyncio.ensure_future(svc.ensure(loc))
        started = Path(str(hold) + ".started")
        while not started.exists():  # polled with a deadline by the timeout below
            await asyncio.sleep(0.02)
        children.extend(psutil.Process().children(recursive=True))
        svc.close(cancel_builds=True)
        try:
            await asyncio.wait_for(task, 60)
        except EnvBuildError as exc:
            return exc
        raise AssertionError("the build was not cancelled")

    error = asyncio.run(asyncio.wait_for(build_then_cancel(), 120))
    assert "build cancelled" in str(error)
    assert children  # pip and the build backend were running
    assert_gone(children)
    assert svc.cached(loc) is None
    assert list(builds_dir(tmp_path).iterdir()) == []
