"""The manager's view (what /readyz, /status and the pages answer from) is built per request
for every location: what changes only with a transition is made once, and a new transition
still shows at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, List

import pytest

from workspace_manager.supervisor import manager as manager_mod
from workspace_manager.supervisor.location import Location, LocationHooks
from workspace_manager.supervisor.manager import Manager
from workspace_manager.supervisor.state import State, Transition
from workspace_manager.workspace.model import CodeTarget, LocationConfig, Supervision, Workspace


def _manager(tmp_path: Path, n: int) -> Manager:
    manager = Manager(Workspace(None, tmp_path, ()), f"view-test-{tmp_path}")
    for i in range(n):
        target = CodeTarget("python_file", tmp_path, python_file=tmp_path / "repo.py")
        config = LocationConfig(f"l{i}", target, Supervision())
        loc = Location(
            config,
            LocationHooks(plan=None, on_transition=lambda *_: None, on_output=lambda *_: None),  # type: ignore[arg-type]
        )
        _move(loc, State.STARTING)
        manager.locations[config.name] = loc
    return manager


def _move(loc: Location, new: State, reason: str = "") -> None:
    loc.transitions.append(Transition(time.time(), loc.state, new, reason))
    loc.state = new


def test_log_paths_are_made_once_per_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: List[Any] = []
    real = manager_mod.log_path

    def counting(key: str, name: str) -> Path:
        calls.append(name)
        return real(key, name)

    monkeypatch.setattr(manager_mod, "log_path", counting)

    async def main() -> None:
        manager = _manager(tmp_path, 50)
        first = manager.view()
        for _ in range(5):
            again = manager.view()
        assert sorted(calls) == sorted(f"l{i}" for i in range(50))
        assert [v.log for v in again.locations] == [v.log for v in first.locations]
        assert first.locations[0].log == str(real(manager.key, "l0"))

    asyncio.run(main())


def test_a_new_transition_shows_in_the_next_view(tmp_path: Path) -> None:
    async def main() -> None:
        manager = _manager(tmp_path, 3)
        before = manager.view().location("l1")
        assert before is not None and [t["to"] for t in before.transitions] == ["starting"]
        loc = manager.locations["l1"]
        _move(loc, State.READY, "loaded")
        after = manager.view().location("l1")
        assert after is not None
        assert [t["to"] for t in after.transitions] == ["starting", "ready"]
        assert after.transitions[-1]["reason"] == "loaded"
        for _ in range(12):  # past the 10 a view keeps, then the deque's own bound
            _move(loc, State.BACKOFF, "again")
        latest = manager.view().location("l1")
        assert latest is not None and len(latest.transitions) == 10
        assert latest.transitions == tuple(t.to_dict() for t in list(loc.transitions)[-10:])
        other = manager.view().location("l0")
        assert other is not None and [t["to"] for t in other.transitions] == ["starting"]

    asyncio.run(main())


def _readyz(view: Any, query: str = "") -> Any:
    from workspace_manager.http.exchange import Request
    from workspace_manager.http.routes import readyz

    request = Request(
        method="GET",
        target="/readyz" + ("?" + query if query else ""),
        version="HTTP/1.1",
        path="/readyz",
        query={query: [""]} if query else {},
        headers=(),
        subpath="",
        peer=None,
    )
    return readyz(request, view)


def test_readiness_answers_as_the_full_view_and_is_kept_while_nothing_changes(
    tmp_path: Path,
) -> None:
    """/readyz reads `Manager.readiness()`: the same answer as from the full view, in every
    state, and the same locations tuple (so the same answer, web/probes.py) until a location
    changes; a location down after serving is made anew (its `down for` grows)."""

    async def main() -> None:
        manager = _manager(tmp_path, 30)
        first = manager.readiness()
        assert manager.readiness().locations is first.locations  # nothing changed: kept
        for loc in list(manager.locations.values())[:20]:
            _move(loc, State.READY, "loaded")
        moved = manager.readiness()
        assert moved.locations is not first.locations
        assert [v.state for v in moved.locations] == ["ready"] * 20 + ["starting"] * 10
        broken = manager.locations["l25"]
        broken.error = "boom\nwith a second line"
        _move(broken, State.ERROR, "load failed")
        down = manager.locations["l3"]
        down.down_since = down.hooks.clock() - 65.0
        _move(down, State.BACKOFF, "exited")
        down.error = "exited with status 1"  # set after its transition: still seen
        for query in ("", "verbose"):
            full, slim = _readyz(manager.view(), query), _readyz(manager.readiness(), query)
            assert (slim.status, slim.body) == (full.status, full.body)
        assert b"[-]l3 backoff: exited with status 1 (down for 1m05s)" in slim.body
        assert b"[-]l25 error: boom with a second line" in slim.body
        # the down location is made anew at each call; the others are the same objects
        again = manager.readiness().locations
        kept = {v.name: v for v in moved.locations}
        now = {v.name: v for v in again}
        assert now["l0"] is kept["l0"] and now["l29"] is kept["l29"]
        assert now["l3"] is not kept["l3"]
        for loc in manager.locations.values():
            loc.down_since = None
            loc.error = None
            _move(loc, State.READY, "loaded")
        ready = manager.readiness()
        assert manager.readiness().locations is ready.locations
        assert (_readyz(ready).status, _readyz(ready).body) == (200, b"ok")
        assert _readyz(ready, "verbose").body.endswith(b"readyz check passed\n")

    asyncio.run(main())
