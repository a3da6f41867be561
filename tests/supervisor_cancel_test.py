"""A stop that comes as a location finishes loading ends it, on every Python we run on.

Before Python 3.12, `asyncio.wait_for` drops a cancel that arrives in the same loop turn
as its result (gh-86296): `Instance.start` then returned as if never cancelled, the
location came `ready` after "shutting down", and `wsm up` waited on it forever (seen in CI:
a SIGTERM right after start-up never ended the manager)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, List, Optional

import pytest

from workspace_manager.cancelling import cancel_and_wait
from workspace_manager.supervisor import location as location_mod
from workspace_manager.supervisor.location import Location, LocationHooks
from workspace_manager.supervisor.state import State, Transition
from workspace_manager.workspace.model import CodeTarget, LocationConfig, Supervision


class _Connection:
    async def call(self, method: str, params: Any, timeout: float) -> Any:
        return {}


class SwallowingInstance:
    """Loads in 0.3 s, and drops a cancel that comes meanwhile, as 3.11's wait_for does
    when the load completes in the cancel's turn."""

    def __init__(self, loading: asyncio.Event) -> None:
        self.loading = loading
        self.snapshot: Optional[dict] = {"repositories": []}
        self.started_at = time.monotonic()
        self.connection = _Connection()
        self.pid = 4242
        self.returncode: Optional[int] = None
        self.stops: List[float] = []
        self.cancels_dropped = 0

    async def start(self, startup_timeout: float) -> None:
        self.loading.set()
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            self.cancels_dropped += 1

    async def stop(self, grace: float) -> None:
        self.stops.append(grace)
        self.returncode = -15

    async def wait_exit(self) -> int:
        await asyncio.Event().wait()
        return 0

    def rss_bytes(self) -> Optional[int]:
        return None


@pytest.mark.parametrize("how", ["stop", "restart"])
def test_a_stop_or_restart_during_a_load_that_drops_the_cancel_still_ends_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str
) -> None:
    made: List[SwallowingInstance] = []
    seen: List[Transition] = []

    async def go() -> None:
        loading = asyncio.Event()

        def make(plan: Any, on_output: Any) -> SwallowingInstance:
            made.append(SwallowingInstance(loading))
            return made[-1]

        async def plan(config: LocationConfig) -> Any:
            return object()

        monkeypatch.setattr(location_mod, "make_instance", make)
        target = CodeTarget("python_file", tmp_path, python_file=tmp_path / "repo.py")
        config = LocationConfig("team", target, Supervision(heartbeat_seconds=60.0))
        loc = Location(
            config,
            LocationHooks(
                plan=plan,
                on_transition=lambda _loc, t: seen.append(t),
                on_output=lambda *_: None,
            ),
        )
        loc.start()
        await asyncio.wait_for(loading.wait(), 5)
        if how == "stop":
            await asyncio.wait_for(loc.stop(grace=0), 5)
            assert loc.state is State.STOPPED
        else:  # a reload of a location that is not ready yet: it starts afresh
            loading.clear()
            await asyncio.wait_for(loc.restart(), 5)
            await asyncio.wait_for(loading.wait(), 5)
            await asyncio.wait_for(loc.stop(grace=0), 5)

    asyncio.run(go())
    assert made[0].cancels_dropped == 1  # the fault was there to be handled
    assert made[0].stops, "the instance whose load dropped the cancel was never stopped"
    if how == "stop":
        # never shown ready after the stop was asked
        assert [t.new for t in seen] == [State.STARTING, State.STOPPED]


def test_cancel_and_wait_cancels_again_until_the_task_ends() -> None:
    async def go() -> tuple:
        dropped = 0  # a task that ignores two cancels: a single cancel would wait forever

        async def stubborn() -> str:
            nonlocal dropped
            while True:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    dropped += 1
                    if dropped == 3:
                        raise

        task = asyncio.ensure_future(stubborn())
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait([task], again_seconds=0.05), 5)
        return dropped, task.cancelled()

    assert asyncio.run(go()) == (3, True)


def test_cancel_and_wait_leaves_finished_tasks_and_their_errors_alone() -> None:
    async def go() -> None:
        async def fails() -> None:
            raise ValueError("kept on the task")

        failed = asyncio.ensure_future(fails())
        await asyncio.sleep(0)
        await cancel_and_wait([failed])
        assert isinstance(failed.exception(), ValueError)
        await cancel_and_wait([])

    asyncio.run(go())
