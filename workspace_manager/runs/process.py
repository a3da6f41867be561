"""One run's process: spawn it like a loader (supervisor/process.py: its own session, its
own cgroup, pipes for stdout and stderr, a status socket whose EOF is its lifeline), read
its events and output with their times, see its exit the moment it happens, stop its tree.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import psutil

from workspace_manager.protocol import framing
from workspace_manager.supervisor import process as proc_mod
from workspace_manager.supervisor.cgroup import CgroupRoot
from workspace_manager.supervisor.instance import MAX_LINE
from workspace_manager.version import PROTOCOL_VERSION

_CODE = (
    "import sys; sys.path.insert(0, {sdk_dir!r}); "
    "from workspace_manager.runner.main import main; main()"
)
#: Events are small; a log message this big is the job's own doing and ends the channel.
MAX_EVENT = 16 * 1024 * 1024
#: How long the end of output and events is waited for after the process exited (a
#: grandchild may hold the pipes open).
DRAIN_SECONDS = 1.0


@dataclass(frozen=True)
class RunPlan:
    """Where and how a location's runs start: the same interpreter, working directory,
    environment and code target as its loader (docs/daemon.md)."""

    python: str
    cwd: str
    env: Dict[str, str]
    sdk_dir: str
    target: Dict[str, Any]  # the loader's bootstrap target (supervisor/plan.target_dict)
    dropped_pythonpath: Optional[str] = None
    cgroups: Optional[CgroupRoot] = None

    @property
    def argv(self) -> List[str]:
        """`<python> -c "...runner main()"`; the bootstrap goes to stdin, never argv."""
        return [self.python, "-c", _CODE.format(sdk_dir=self.sdk_dir)]


def bootstrap_for(
    plan: RunPlan,
    *,
    run_id: str,
    location: str,
    job: str,
    repository: Optional[str],
    run_config: Dict[str, Any],
    tags: Dict[str, str],
) -> Dict[str, Any]:
    """The bootstrap line's content (status_fd and cgroup are added at spawn)."""
    return {
        "run_id": run_id,
        "location": location,
        "target": plan.target,
        "repository": repository,
        "job": job,
        "run_config": run_config,
        "tags": tags,
        "protocol": PROTOCOL_VERSION,
        "dropped_pythonpath": plan.dropped_pythonpath,
    }


EventSink = Callable[[Dict[str, Any]], None]  # one decoded event map
OutputSink = Callable[[str, float, str], None]  # (stream, time, one line without newline)


class RunProcess:
    """A started run process. `events` sees each event map in order; `output` each line of
    stdout/stderr with the time it was read. `wait()` returns the exit status (negative: a
    signal) once the process has exited and its events are read."""

    def __init__(self, spawned: proc_mod.SpawnedLoader, events: EventSink, output: OutputSink):
        self.spawned = spawned
        self._events = events
        self._output = output
        self.final_event: Optional[Dict[str, Any]] = None
        self._known: Dict[int, psutil.Process] = {}
        self._reader = asyncio.ensure_future(self._read_events())
        self._pumps = [
            asyncio.ensure_future(self._pump("stdout", spawned.stdout)),
            asyncio.ensure_future(self._pump("stderr", spawned.stderr)),
        ]

    @property
    def pid(self) -> int:
        return self.spawned.pid

    @property
    def returncode(self) -> Optional[int]:
        return self.spawned.process.returncode

    @classmethod
    async def start(
        cls,
        plan: RunPlan,
        bootstrap: Dict[str, Any],
        events: EventSink,
        output: OutputSink,
        *,
        name: str = "run",
    ) -> RunProcess:
        """Spawn the run (in a fresh cgroup `name`-N of the plan's root, when there is
        one). Raises OSError when the interpreter cannot be started."""
        env = dict(plan.env, WSM_RUN_ID=str(bootstrap.get("run_id")))
        spawned = await proc_mod.spawn_loader(
            plan.argv,
            bootstrap,
            cwd=plan.cwd,
            env=env,
            cgroup=plan.cgroups.new(name) if plan.cgroups else None,
        )
        return cls(spawned, events, output)

    async def _read_events(self) -> None:
        decoder = framing.FrameDecoder(MAX_EVENT)
        reader = self.spawned.status_reader
        while True:
            try:
                data = await reader.read(65536)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                return
            try:
                items = decoder.feed(data)
            except framing.FrameError as exc:
                items = exc.objects
                self._deliver(items)
                self._output("wsm", time.time(), f"bad event from the run's process: {exc}")
                return
            self._deliver(items)

    def _deliver(self, items: Sequence[Any]) -> None:
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("event"), str):
                continue
            if item["event"] in ("success", "failure"):
                self.final_event = item
            if item["event"] == "loaded":
                self.record_tree()
            self._events(item)

    async def _pump(self, stream: str, reader: asyncio.StreamReader) -> None:
        buf = b""
        while True:
            try:
                chunk = await reader.read(65536)
            except Exception:
                chunk = b""
            now = time.time()
            if not chunk:
                if buf:
                    self._output(stream, now, _text(buf))
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                self._output(stream, now, _text(line[:MAX_LINE]))
            if len(buf) > MAX_LINE:
                self._output(stream, now, _text(buf[:MAX_LINE]))
                buf = b""

    async def wait(self) -> int:
        """The exit status, once the process has exited and what it wrote is read (at most
        DRAIN_SECONDS after the exit: a grandchild holding a pipe does not hold us)."""
        code = await self.spawned.process.wait()
        await asyncio.wait([self._reader, *self._pumps], timeout=DRAIN_SECONDS)
        return code

    def record_tree(self) -> None:
        """Remember the run's descendants now: without a cgroup, an orphan of an exited
        process is found only through this record."""
        if self.returncode is None:
            for proc in proc_mod.process_tree(self.pid)[1:]:
                self._known.setdefault(proc.pid, proc)

    def terminate(self) -> None:
        """SIGTERM the run's whole tree (its group, its descendants, its cgroup)."""
        self.record_tree()
        proc_mod.signal_tree(
            self.pid,
            self.pid,
            signal.SIGTERM,
            list(self._known.values()) + proc_mod.process_tree(self.pid)[:1],
            self.spawned.cgroup,
        )

    async def kill_tree(self, kill_wait: float = 2.0) -> None:
        """SIGKILL whatever is left of the tree and its cgroup, also after the run exited
        (a job that returned may have left children: they end with it)."""
        self.record_tree()
        known = list(self._known.values())
        cgroup = self.spawned.cgroup
        if self.returncode is None:
            known += proc_mod.process_tree(self.pid)[:1]
        await proc_mod.kill_leftovers(
            self.pid, self.pid, known, time.monotonic(), kill_wait, cgroup
        )

    async def close(self) -> None:
        """After the exit: kill leftovers, remove the cgroup, release the pipes."""
        await self.kill_tree()
        if self.spawned.cgroup is not None:
            cgroup = self.spawned.cgroup
            await asyncio.get_running_loop().run_in_executor(None, cgroup.remove)
        self.spawned.status_writer.close()
        for task in [self._reader, *self._pumps]:
            task.cancel()


def _text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", "replace")


def pid_alive(pid: int) -> bool:
    """A live, non-zombie process has this pid."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


__all__ = ["RunPlan", "RunProcess", "bootstrap_for", "pid_alive", "plan_from_launch"]


def plan_from_launch(launch: Any, sdk_dir: str, cgroups: Optional[CgroupRoot]) -> RunPlan:
    """A location's RunPlan from its loader's LaunchPlan (supervisor/instance.py): the same
    interpreter (`argv[0]`), working directory, environment (env_vars, its env's `bin/`
    first on PATH, wsm's secrets removed) and code target."""
    return RunPlan(
        python=str(launch.argv[0]),
        cwd=str(launch.cwd),
        env=dict(launch.env),
        sdk_dir=sdk_dir,
        target=dict(launch.bootstrap["target"]),
        dropped_pythonpath=launch.bootstrap.get("dropped_pythonpath"),
        cgroups=cgroups,
    )
