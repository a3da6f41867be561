"""Run processes started ahead of a schedule's tick, so the run that the tick requests
starts without waiting for an interpreter (docs/daemon.md, "Prestart").

A schedule's loop knows its next tick time; `WARM_LEAD` seconds before it, it asks for a
process of its location (`Prestart.warm`). That process is the location's runner (same
interpreter, working directory, environment, cgroup root) started with no bootstrap: it
imports wsm's SDK and waits, with none of the user's code imported, so a code change before
the tick is still seen. A run of that location that starts before `until` takes it
(`take`) if its plan is still the same (an environment rebuilt meanwhile: a fresh one is
spawned); otherwise the process is killed at `until`. At most `PER_LOCATION` wait for one
location and `TOTAL` in all, so 1,000 schedules on one minute cost a few processes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Dict, List, Optional

from workspace_manager.runs.plan import RunPlan, spawn_runner
from workspace_manager.supervisor.spawn import HeldSpawn

#: How long before a tick its process is started (s): an interpreter's start and the SDK's
#: import take ~0.1 s on an idle machine, a second or more on a loaded one.
WARM_LEAD = 2.0
#: How long after the tick an unused process is kept (s): the schedule's evaluation comes
#: first (a call into its loader), then the record of the tick, then the run's start.
KEEP_AFTER = 10.0
PER_LOCATION = 4
TOTAL = 16


@dataclass
class _Waiting:
    plan: RunPlan
    held: HeldSpawn
    until: float  # time.monotonic()


class Prestart:
    """The waiting processes, by location. `plan(location)` is the coordinator's plan hook
    (raises RunPlanError: no process is started)."""

    def __init__(self, plan: Callable[[str], Awaitable[RunPlan]]) -> None:
        self._plan = plan
        self._waiting: Dict[str, List[_Waiting]] = {}
        self._starting: Dict[str, int] = {}
        self._reaper: Optional[asyncio.TimerHandle] = None
        self._closed = False
        self._tasks: set = set()
        #: processes started / taken by a run / killed unused (for the benchmark and tests)
        self.counts = {"started": 0, "taken": 0, "unused": 0}

    def warm(self, location: str, until: float) -> None:
        """Start one process for `location`, kept until wall time `until`, unless enough
        wait already. Never raises: a location that cannot be planned gets none."""
        if self._closed:
            return
        waiting = len(self._waiting.get(location, ())) + self._starting.get(location, 0)
        total = sum(len(w) for w in self._waiting.values()) + sum(self._starting.values())
        if waiting >= PER_LOCATION or total >= TOTAL:
            return
        self._starting[location] = self._starting.get(location, 0) + 1
        task = asyncio.ensure_future(self._start(location, until))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, location: str, until: float) -> None:
        try:
            plan = await self._plan(location)
            held = spawn_runner(plan, name="prestart")
            held.watch()
        except Exception:  # not ready, gone, remote, cannot exec: the run will say so
            return
        finally:
            self._starting[location] -= 1
        if self._closed:
            await held.discard()
            return
        self.counts["started"] += 1
        deadline = time.monotonic() + max(0.0, until - time.time())
        self._waiting.setdefault(location, []).append(_Waiting(plan, held, deadline))
        self._arm()

    def take(self, location: str, plan: RunPlan) -> Optional[HeldSpawn]:
        """A waiting process of `location` started with this very plan, still alive; None:
        the run spawns its own. Others of the location with another plan are killed."""
        waiting = self._waiting.get(location) or []
        found: Optional[HeldSpawn] = None
        keep: List[_Waiting] = []
        for entry in waiting:
            alive = entry.held.child is not None and entry.held.child.returncode is None
            if found is None and alive and entry.plan == plan:
                found = entry.held
            elif alive and entry.plan == plan:
                keep.append(entry)
            else:
                self._drop(entry.held)
        if keep:
            self._waiting[location] = keep
        else:
            self._waiting.pop(location, None)
        if found is not None:
            self.counts["taken"] += 1
        return found

    def waiting(self) -> int:
        """How many processes wait now."""
        return sum(len(w) for w in self._waiting.values())

    async def close(self) -> None:
        """Kill every waiting process (the manager stops)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        entries = [e for w in self._waiting.values() for e in w]
        self._waiting.clear()
        await asyncio.gather(*(e.held.discard() for e in entries), return_exceptions=True)

    def _drop(self, held: HeldSpawn) -> None:
        self.counts["unused"] += 1
        task = asyncio.ensure_future(held.discard())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arm(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        deadlines = [e.until for w in self._waiting.values() for e in w]
        if deadlines:
            loop = asyncio.get_running_loop()
            self._reaper = loop.call_at(
                loop.time() + max(0.0, min(deadlines) - time.monotonic()), self._expire
            )

    def _expire(self) -> None:
        self._reaper = None
        now = time.monotonic()
        for location in list(self._waiting):
            keep = []
            for entry in self._waiting[location]:
                if entry.until <= now:
                    self._drop(entry.held)
                else:
                    keep.append(entry)
            if keep:
                self._waiting[location] = keep
            else:
                del self._waiting[location]
        self._arm()
