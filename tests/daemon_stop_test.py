"""The daemon stops when asked, even when a location poked it in the same instant: asyncio's
`wait_for` (before Python 3.12, python/cpython#86296) swallows a cancel that arrives as the
awaited thing finishes, so a stop must not rest on the cancel alone. Found by
tests/chaos_runs_test.py: a SIGTERM as a location became ready left `wsm up` ticking its
sensors and never exiting."""

from __future__ import annotations

import asyncio
from pathlib import Path

from daemon_service_test import FakeClock, FakeLocation, Harness, answer, quiet, run, sensor


def test_stop_right_after_a_poke_stops_the_daemon(tmp_path: Path) -> None:
    async def main() -> None:
        loc = FakeLocation("loc", sensors=[sensor("s", interval=5)])
        loc.handlers["s"] = answer({"run_requests": []})
        h = Harness(tmp_path / "runs.db", [loc], FakeClock(1_000_000.0))
        daemon = await h.start()
        for _ in range(20):
            await quiet(0.05)  # its loop waits for a poke
            daemon.poke()  # a location changed state ...
            await asyncio.wait_for(daemon.stop(), 5)  # ... as the manager shuts down
            assert daemon._loop_task is not None and daemon._loop_task.done()
            await daemon.start()
        await h.stop()

    run(main())


def test_stop_ends_a_task_whose_location_call_swallowed_the_cancel(tmp_path: Path) -> None:
    """The location's call (supervisor/rpc.py: asyncio.wait_for) may swallow the cancel as
    its answer comes: the task goes on ticking, and the stop cancels it again."""

    async def main() -> None:
        clock = FakeClock(1_000_000.0)
        loc = FakeLocation("loc", sensors=[sensor("s", interval=5)])
        called = asyncio.Event()

        async def swallows(params: dict) -> dict:
            called.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # the answer came as the cancel did
            return {"run_requests": []}

        loc.handlers["s"] = swallows
        h = Harness(tmp_path / "runs.db", [loc], clock)
        daemon = await h.start()
        await asyncio.wait_for(called.wait(), 5)
        await asyncio.wait_for(daemon.stop(), 10)
        await h.store.close()  # type: ignore[union-attr]

    run(main())
