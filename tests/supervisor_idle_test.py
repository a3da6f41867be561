"""What a ready location costs an idle manager: a ping each heartbeat, and a memory sample
(a page-table walk of each of its processes) only every STATUS_MEMORY_SECONDS when no
memory limit needs it; the sample a ready location shows is taken off the loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, List, Optional

import pytest

from workspace_manager.supervisor import location as location_mod
from workspace_manager.supervisor.location import Location, LocationHooks
from workspace_manager.supervisor.state import State
from workspace_manager.workspace.model import CodeTarget, LocationConfig, Supervision


class Connection:
    def __init__(self) -> None:
        self.pings = 0

    async def call(self, method: str, params: Any, timeout: Optional[float] = None) -> Any:
        self.pings += 1
        return {}

    def request(self, method: str, params: Any = None) -> asyncio.Future:
        self.pings += 1
        answer = asyncio.get_running_loop().create_future()
        answer.set_result({})
        return answer

    def close(self) -> None:
        pass


class ReadyInstance:
    """Loads at once, answers every ping, never exits; counts its memory samples and the
    threads they ran in."""

    def __init__(self) -> None:
        self.connection = Connection()
        self.snapshot: dict = {"repositories": []}
        self.started_at = 0.0
        self.pid = 4242
        self.returncode = None
        self.samples: List[threading.Thread] = []
        self._exit = asyncio.Event()

    async def start(self, timeout: float) -> None:
        pass

    def rss_bytes(self) -> int:
        self.samples.append(threading.current_thread())
        return 1 << 20

    async def wait_exit(self) -> int:
        await self._exit.wait()
        return 0

    async def stop(self, grace: float = 0) -> None:
        self._exit.set()


def _location(tmp_path: Path, **supervision: Any) -> Location:
    async def plan(config: LocationConfig) -> Any:
        return object()

    target = CodeTarget("python_file", tmp_path, python_file=tmp_path / "repo.py")
    config = LocationConfig("team", target, Supervision(**supervision))
    return Location(
        config, LocationHooks(plan=plan, on_transition=lambda *_: None, on_output=lambda *_: None)
    )


def _serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seconds: float, **sup: Any) -> Any:
    made: List[ReadyInstance] = []

    def make(plan: Any, on_output: Any) -> ReadyInstance:
        made.append(ReadyInstance())
        return made[-1]

    monkeypatch.setattr(location_mod, "make_instance", make)

    async def main() -> Any:
        loc = _location(tmp_path, **sup)
        loc.start()
        await asyncio.sleep(seconds)
        state, rss = loc.state, loc.last_rss
        await loc.stop(grace=0)
        return state, rss

    state, rss = asyncio.run(main())
    return made[0], state, rss


def test_without_a_memory_limit_heartbeats_do_not_each_sample_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(location_mod, "STATUS_MEMORY_SECONDS", 0.5)
    inst, state, rss = _serve(monkeypatch, tmp_path, 1.3, heartbeat_seconds=0.02)
    assert state is State.READY and rss == 1 << 20
    assert inst.connection.pings >= 15  # the heartbeats went on at their own pace
    # one sample when it got ready, then one per 0.5 s: not one per heartbeat
    assert 2 <= len(inst.samples) <= 4, (len(inst.samples), inst.connection.pings)


def test_the_sample_a_ready_location_shows_is_taken_off_the_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    inst, state, rss = _serve(monkeypatch, tmp_path, 0.2, heartbeat_seconds=60.0)
    assert state is State.READY and rss == 1 << 20
    assert inst.samples and threading.main_thread() not in inst.samples


def test_a_memory_limit_is_still_checked_every_second_at_most(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(location_mod, "STATUS_MEMORY_SECONDS", 60.0)
    inst, state, _ = _serve(
        monkeypatch, tmp_path, 1.3, heartbeat_seconds=0.2, memory_limit_mb=100.0
    )
    assert state is State.READY
    assert len(inst.samples) >= 3  # ready + the limit's own samples (min(heartbeat, 1 s))
