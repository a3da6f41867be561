"""Fork servers (issue 11, part "fork"): a location forked from its interpreter's server is
indistinguishable from a spawned one, and every guarantee holds for it.

Every test runs the real `wsm up`. A forked location shows the fork server's command line
(/proc/PID/cmdline is inherited memory): that is how the tests know which path was taken.
The repositories record what they start (containment_e2e_test.Pids), so the checks follow
exactly those processes, never a scan of the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import psutil
import pytest
from containment_e2e_test import CRASHER, SPAWNER, Pids, _alive, _identity, _wsm
from e2e import WorkspaceDir, WsmUp, wait_for

from workspace_manager.loader.forkserver import start_vars

SERVER_MARK = "workspace_manager.loader.forkserver"

# Records, at import time, everything a location could see differently when forked.
FACTS = """
import json, os, sys, threading, time
def fds():
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return out
facts = {
    "pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "pgid": os.getpgrp(),
    "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path, "argv": sys.argv,
    "cgroup": open("/proc/self/cgroup").read(), "fds": fds(),
    "threads": threading.active_count(), "tasks": len(os.listdir("/proc/self/task")),
    "modules": sorted(sys.modules), "tzname": list(time.tzname), "umask": os.umask(0o22),
    "executable": sys.executable, "flags": repr(sys.flags), "main": sorted(vars(sys.modules["__main__"])),
    "stdout_isatty": os.isatty(1), "encoding": [sys.getfilesystemencoding(), sys.stdout.encoding],
}
print("hello from", os.getpid(), flush=True)
with open(os.path.join(os.environ["FACTS_DIR"], f"{os.environ['WSM_LOCATION']}-{os.getpid()}.json"), "w") as f:
    json.dump(facts, f)
from workspace_manager import job, repository
@job
def noop(): ...
@repository
def facts_repo():
    return [noop]
"""


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def _forked(pid: int) -> bool:
    return SERVER_MARK in _cmdline(pid)


def _servers(up: WsmUp) -> List[int]:
    """The manager's children that are fork servers (not locations forked from them)."""
    locations = {loc["pid"] for loc in up.status()["locations"].values()}
    try:
        children = psutil.Process(up.proc.pid).children()
    except psutil.Error:
        return []
    return [p.pid for p in children if p.pid not in locations and _forked(p.pid)]


def _env(ws: WorkspaceDir, **extra: str) -> Dict[str, str]:
    env = dict(ws.env)
    env.pop("WSM_FORKSERVER", None)
    env.update(extra)
    return env


def _facts_workspace(ws: WorkspaceDir, facts_dir: Path) -> Path:
    ws.file("plain/repo.py", FACTS)
    ws.file("custom/repo.py", FACTS)
    (ws.root / "extra").mkdir(exist_ok=True)
    return ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "plain/repo.py",
                        "location_name": "plain",
                        "env_vars": {"FACTS_DIR": str(facts_dir), "TEAM": "a", "TZ": "Asia/Tokyo"},
                    }
                },
                {
                    # start-up variables of its own: a server of its own, or a spawn
                    "python_file": {
                        "relative_path": "custom/repo.py",
                        "location_name": "custom",
                        "working_directory": ".",
                        "env_vars": {
                            "FACTS_DIR": str(facts_dir),
                            "PYTHONPATH": str(ws.root / "extra"),
                            "LANG": "C",
                        },
                    }
                },
            ]
        }
    )


def _read_facts(facts_dir: Path, name: str, pid: int) -> Dict[str, Any]:
    path = facts_dir / f"{name}-{pid}.json"
    return json.loads(wait_for(lambda: path.exists() and path.read_text(), 30, str(path)))


def _run_facts(ws: WorkspaceDir, off: bool) -> Dict[str, Dict[str, Any]]:
    facts_dir = ws.root / ("facts-off" if off else "facts-on")
    facts_dir.mkdir()
    path = _facts_workspace(ws, facts_dir)
    env = _env(ws, WSM_FORKSERVER="off") if off else _env(ws)
    found: Dict[str, Dict[str, Any]] = {}
    with WsmUp(ws, "-w", str(path), "--no-daemon", env=env) as up:
        for name in ("plain", "custom"):
            pid = up.wait_state(name, "ready")["pid"]
            found[name] = _read_facts(facts_dir, name, pid)
            found[name]["forked"] = _forked(pid)
            found[name]["manager"] = up.proc.pid
            assert f"hello from {pid}" in up.output()  # stdout reaches the manager's pumps
        servers = _servers(up)
        up.track()
        if off:
            assert servers == []
        else:
            assert len(servers) == 2, up.output()  # one per set of start-up variables
            for server in servers:
                assert len(os.listdir(f"/proc/{server}/task")) == 1  # it never started a thread
                assert os.readlink(f"/proc/{server}/cwd") == "/"  # no repository folder
    return found


#: what C msgpack imports: its package, Cython's runtime (named for Cython's version) and
#: datetime (for its Timestamp)
C_MSGPACK = ("msgpack", "_cython_", "cython_runtime", "datetime", "_datetime")


def test_a_forked_location_sees_what_a_spawned_one_sees(ws: WorkspaceDir) -> None:
    spawned = _run_facts(ws, off=True)
    forked = _run_facts(ws, off=False)
    for name in ("plain", "custom"):
        s, f = spawned[name], forked[name]
        assert not s["forked"] and f["forked"], name
        for facts in (s, f):
            assert facts["sid"] == facts["pid"] == facts["pgid"]  # a session of its own
            assert facts["ppid"] == facts["manager"]  # the manager's child: it reaps it
            assert "/wsm-" in facts["cgroup"] and f"/{name}-" in facts["cgroup"]
            assert facts["tasks"] == 2  # the main thread and the lifeline
        # the same environment, but for the test's own folder and switch
        skip = ("FACTS_DIR", "WSM_FORKSERVER")
        assert {k: v for k, v in f["env"].items() if k not in skip} == {
            k: v for k, v in s["env"].items() if k not in skip
        }
        for key in ("cwd", "path", "argv", "tzname", "umask", "executable", "flags", "encoding"):
            assert f[key] == s[key], (name, key, f[key], s[key])
        assert f["main"] == s["main"]
        # the same descriptors: stdin /dev/null, stdout and stderr pipes, the status socket
        # (its number is the bootstrap's status_fd: 3 when forked)
        assert _kinds(f["fds"]) == _kinds(s["fds"]), (f["fds"], s["fds"])
        assert f["fds"]["0"] == "/dev/null"
        assert f["fds"]["1"].startswith("pipe:") and f["fds"]["2"].startswith("pipe:")
        assert f["fds"]["3"].startswith("socket:")
        # no more imported than a spawned loader has, but the fork server's own few modules
        # and C msgpack, which the server imports for its children to share (a spawned
        # loader imports it at its first large payload: protocol/codec.py)
        extra = set(f["modules"]) - set(s["modules"])
        extra = {m for m in extra if not m.startswith(C_MSGPACK)}
        assert extra <= {SERVER_MARK, "fcntl", "gc"}, extra
        assert "msgpack" in f["modules"]
        assert not set(s["modules"]) - set(f["modules"])
    assert forked["plain"]["tzname"][0] == "JST"  # TZ from env_vars, though the server had none
    assert str(ws.root / "extra") in forked["custom"]["path"]


def _kinds(fds: Dict[str, str]) -> List[str]:
    return sorted(target.split(":")[0] for target in fds.values())


def _spawner_workspace(ws: WorkspaceDir, pids: Path, code: str = SPAWNER, **sup: object) -> Path:
    ws.file("spawner/repo.py", code)
    supervision = {"heartbeat_seconds": 1, "backoff_initial_seconds": 0.2}
    supervision.update(sup)  # type: ignore[arg-type]
    return ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "spawner/repo.py",
                        "location_name": "spawner",
                        "env_vars": {"PIDFILE": str(pids)},
                    }
                }
            ],
            "supervision": supervision,
        }
    )


@contextlib.contextmanager
def _forked_spawner(
    ws: WorkspaceDir, gone_after: bool = False
) -> Iterator[Tuple[WsmUp, Pids, Path, int, int]]:
    """`wsm up` of the spawner location, forked from its server: (up, the pids it recorded
    with the server's, the workspace file, the loader's pid, the server's pid). With
    `gone_after`, every one of them must be gone once `wsm up` is stopped; whatever is left
    is killed at the end."""
    pids = Pids(ws.root / "pids")
    path = _spawner_workspace(ws, pids.path)
    try:
        with WsmUp(ws, "-w", str(path), env=_env(ws)) as up:
            loader = up.wait_state("spawner", "ready")["pid"]
            assert _forked(loader)
            [server] = _servers(up)
            pids.known[server] = _identity(server)
            pids.wait(2)
            yield up, pids, path, loader, server
        if gone_after:
            pids.assert_all_gone()
    finally:
        pids.kill_all()


def test_wsm_down_leaves_nothing_of_a_forked_location_or_its_server(ws: WorkspaceDir) -> None:
    with _forked_spawner(ws) as (up, pids, path, _, _):
        time.sleep(2.5)  # the sweep of leftovers (every second) leaves a live one alone
        assert len(pids.alive()) >= 4, up.output()  # server, loader, child, daemon
        assert "left by a location" not in up.output()
        down = subprocess.run(
            [*_wsm(), "down", "-w", str(path)],
            cwd=ws.root,
            env=_env(ws),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert down.returncode == 0, down.stderr
        assert up.proc.wait(30) == 0
        pids.assert_all_gone()


def test_manager_sigkill_leaves_nothing_of_a_forked_location_or_its_server(
    ws: WorkspaceDir,
) -> None:
    with _forked_spawner(ws) as (up, pids, _, _, _):
        up.stop(signal.SIGKILL)
        pids.assert_all_gone(timeout=10)  # the lifeline, and the server's EOF


def test_fork_server_sigkill_leaves_locations_serving_and_restarts_spawn(
    ws: WorkspaceDir,
) -> None:
    with _forked_spawner(ws, gone_after=True) as (up, pids, path, first, server):
        ident = pids.known[server]
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: not _alive(ident), 10, "the server to go")
        wait_for(lambda: "spawned from now on" in up.output(), 10, "the server's death said")
        time.sleep(1.5)  # the location is not the server's: it goes on serving
        assert up.location("spawner")["pid"] == first
        assert up.get("/readyz")[0] == 200
        assert len(pids.alive()) >= 3
        os.kill(first, signal.SIGKILL)  # its successor is spawned: the server is gone
        second = wait_for(
            lambda: (p := up.location("spawner")["pid"]) not in (None, first) and p,
            30,
            "the successor",
        )
        up.wait_state("spawner", "ready")
        assert not _forked(second)
        pids.wait(4)


def test_a_forked_location_exit_status_is_seen_at_once(ws: WorkspaceDir) -> None:
    pids = Pids(ws.root / "pids")
    code = CRASHER.replace("os._exit(1)", "os._exit(7)")
    path = _spawner_workspace(
        ws, pids.path, code, heartbeat_seconds=5, backoff_initial_seconds=5, backoff_max_seconds=5
    )
    try:
        with WsmUp(ws, "-w", str(path), env=_env(ws)) as up:
            loader = up.wait_state("spawner", "ready")["pid"]
            assert _forked(loader)
            [(_, child)] = pids.wait(1)
            ident = pids.known[loader]
            wait_for(lambda: not _alive(ident), 10, "the crash")
            died = time.monotonic()
            loc = up.wait_state("spawner", "backoff", timeout=10)
            seen = time.monotonic() - died
            assert seen < 2.0, f"the exit took {seen:.1f}s to be seen"  # heartbeats: ~12 s
            assert "exited with status 7" in loc["error"], loc
            wait_for(lambda: not _alive(pids.known[child]), 10, "the child holding the pipes")
    finally:
        pids.kill_all()


@pytest.mark.slow
def test_requests_beyond_the_socket_buffer_are_all_forked(ws: WorkspaceDir) -> None:
    """Sixteen locations at once, each request carrying a 300 KiB variable: together more
    than the socket's buffer (the manager asks 1 MiB: the kernel doubles it, and caps it at
    net.core.wmem_max), so requests wait for room, and every one is served (the loop keeps
    one writer callback per descriptor: waiters once lost their wake-up)."""
    big = "x" * 300 * 1024
    entries = []
    for i in range(16):
        ws.file(
            f"l{i}/repo{i}.py",
            "from workspace_manager import job, repository\n"
            "@job\ndef noop(): ...\n@repository\ndef r():\n    return [noop]\n",
        )
        entries.append(
            {
                "python_file": {
                    "relative_path": f"l{i}/repo{i}.py",
                    "location_name": f"l{i}",
                    "env_vars": {"BIG": big},
                }
            }
        )
    path = ws.workspace({"load_from": entries})
    with WsmUp(ws, "-w", str(path), "--no-daemon", env=_env(ws)) as up:
        wait_for(lambda: up.get("/readyz")[0] == 200, 60, "every location to be ready")
        pids = [loc["pid"] for loc in up.status()["locations"].values()]
        assert all(_forked(pid) for pid in pids)
        up.track()


def test_fork_server_sigkill_amid_a_burst_of_starts(ws: WorkspaceDir) -> None:
    """The server killed while the locations' forks are in flight: those not yet answered
    are spawned instead, any child forked but never answered exits (no bootstrap comes), and
    every location gets ready; `wsm down` then leaves nothing."""
    entries = []
    for i in range(16):
        ws.file(
            f"l{i}/repo{i}.py",
            "from workspace_manager import job, repository\n"
            "@job\ndef noop(): ...\n@repository\ndef r():\n    return [noop]\n",
        )
        entries.append(
            {"python_file": {"relative_path": f"l{i}/repo{i}.py", "location_name": f"l{i}"}}
        )
    path = ws.workspace({"load_from": entries})
    with WsmUp(ws, "-w", str(path), "--no-daemon", env=_env(ws)) as up:

        def server() -> int:
            """The server: forked command line, working directory `/` (a location leaves it
            at once), the oldest such child (a location is forked from it)."""
            up.track()
            found = []
            for p in psutil.Process(up.proc.pid).children():
                try:
                    if _forked(p.pid) and p.cwd() == "/":
                        found.append((p.create_time(), p.pid))
                except psutil.Error:
                    continue
            return min(found)[1] if found else 0

        pid = wait_for(server, 30, "the fork server")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: up.get("/readyz")[0] == 200 and up.track(), 90, "every location ready")
        assert "spawned from now on" in up.output()
        time.sleep(1.5)  # a child forked but never answered is gone (collected) by now
        up.track()


def test_an_interpreter_whose_server_cannot_start_is_spawned(ws: WorkspaceDir) -> None:
    """An interpreter that runs the loader but not the fork server (a wrapper that refuses
    the server's command line): the server's failure is said once and the location is
    spawned as before."""
    wrapper = ws.file(
        "bin/python-wrapper",
        f"""#!/bin/sh
        case "$2" in *loader.forkserver*) echo "no fork server here" >&2; exit 1;; esac
        exec {sys.executable} "$@"
        """,
    )
    wrapper.chmod(0o755)
    ws.file(
        "w/repo.py",
        "from workspace_manager import job, repository\n"
        "@job\ndef noop(): ...\n@repository\ndef r():\n    return [noop]\n",
    )
    path = ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "w/repo.py",
                        "location_name": "w",
                        "executable_path": str(wrapper),
                    }
                }
            ]
        }
    )
    with WsmUp(ws, "-w", str(path), "--no-daemon", env=_env(ws)) as up:
        pid = up.wait_state("w", "ready")["pid"]
        assert not _forked(pid)
        assert "no fork server here" in up.output()
        assert _servers(up) == []


@pytest.mark.parametrize(
    "env,expected",
    [
        ({"TEAM": "a", "PATH": "/x"}, {}),
        ({"PYTHONPATH": "/p", "LD_PRELOAD": "x.so", "LANG": "C", "HOME": "/h"}, None),
    ],
)
def test_start_vars_are_those_an_interpreter_reads_as_it_starts(
    env: Dict[str, str], expected: Any
) -> None:
    assert start_vars(env) == (env if expected is None else expected)
