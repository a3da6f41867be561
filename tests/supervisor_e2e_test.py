"""Supervision end to end, the cheap cases, under ONE real `wsm up` (a module fixture):
call and startup timeouts, the memory limit, the three restart policies, missed heartbeats
(SIGSTOP), location output in the manager's own output, transitions in /status and
`wsm status`. The long chaos runs are in chaos_test.py (marked slow)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from typing import Any, Dict, Iterator, List

import psutil
import pytest
from cli_up_test import manager_client
from e2e import WorkspaceDir, WsmUp, wait_for

from workspace_manager.protocol.errors import RemoteError

EXITER = """
import os, threading, time
from workspace_manager import job, repository

def _exit_later():
    time.sleep(float(os.environ["EXIT_AFTER"]))
    os._exit(int(os.environ["EXIT_CODE"]))

threading.Thread(target=_exit_later, daemon=True).start()

@job
def j(): ...

@repository
def r():
    return [j]
"""

HANG = """
import threading
from workspace_manager import RunRequest, job, repository, sensor

@job
def j(): ...

@sensor(job=j)
def hang_forever():
    threading.Event().wait()
    yield RunRequest(run_key=None)

@sensor(job=j)
def answers():
    yield RunRequest(run_key="alive")

@repository
def r():
    return [j, hang_forever, answers]
"""

SLOW_LOAD = """
import time
time.sleep(120)
"""

# Allocates well past its limit on its first run only (a marker file says it ran), so the
# restart it earns comes back healthy.
HOG = """
import os, threading, time
from workspace_manager import job, repository

MARKER = os.environ["HOG_MARKER"]
HOARD = []

def _grow():
    while len(HOARD) < 15:
        HOARD.append(b"\\x01" * (16 << 20))
        time.sleep(0.02)
    time.sleep(600)

if not os.path.exists(MARKER):
    open(MARKER, "w").close()
    threading.Thread(target=_grow, daemon=True).start()

@job
def j(): ...

@repository
def r():
    return [j]
"""

PRINTER = """
import sys
from workspace_manager import job, repository
print("hello from the printer", flush=True)
print("a warning on stderr", file=sys.stderr, flush=True)

@job
def j(): ...

@repository
def r():
    return [j]
"""

PLAIN = """
from workspace_manager import job, repository

@job
def j(): ...

@repository
def r():
    return [j]
"""

# Long enough after the load that the exit never lands while loading on a busy machine.
EXIT_AFTER = "1.5"


def _entry(name: str, supervision: Dict[str, Any], env: Dict[str, str] = {}) -> dict:  # noqa: B006
    entry: Dict[str, Any] = {"relative_path": f"{name}/repo.py", "location_name": name}
    if supervision:
        entry["supervision"] = supervision
    if env:
        entry["env_vars"] = env
    return {"python_file": entry}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsmUp]:
    ws = WorkspaceDir(tmp_path_factory.mktemp("supervision"))
    for name, code in [
        ("hang", HANG),
        ("slowload", SLOW_LOAD),
        ("hog", HOG),
        ("printer", PRINTER),
        ("stoppable", PLAIN),
        ("never", EXITER),
        ("onfail_clean", EXITER),
        ("onfail_crash", EXITER),
        ("always_clean", EXITER),
    ]:
        ws.file(f"{name}/repo.py", code)
    crash = {"EXIT_CODE": "1", "EXIT_AFTER": EXIT_AFTER}
    clean = {"EXIT_CODE": "0", "EXIT_AFTER": EXIT_AFTER}
    entries = [
        _entry("hang", {"call_timeout_seconds": 1, "heartbeat_seconds": 0.3}),
        _entry("slowload", {"startup_timeout_seconds": 1}),
        _entry(
            "hog",
            {"memory_limit_mb": 100, "heartbeat_seconds": 0.5},
            {"HOG_MARKER": str(ws.root / "hog.marker")},
        ),
        _entry("printer", {}),
        _entry("stoppable", {"heartbeat_seconds": 0.3}),
        _entry("never", {"restart": "never"}, crash),
        _entry("onfail_clean", {"restart": "on-failure"}, clean),
        _entry("onfail_crash", {"restart": "on-failure", "max_restarts": 1}, crash),
        _entry("always_clean", {"restart": "always", "max_restarts": 1}, clean),
    ]
    path = ws.workspace(
        {
            "load_from": entries,
            "supervision": {
                "backoff_initial_seconds": 0.1,
                "backoff_max_seconds": 0.2,
                "heartbeat_seconds": 1,
                "window_seconds": 60,
            },
        }
    )
    with WsmUp(ws, "-w", str(path)) as running:
        running.workspace_path = path  # type: ignore[attr-defined]
        yield running
        assert running.stop() == 0
    # WsmUp.__exit__ has checked that no process of the run is left


def _settled(up: WsmUp, name: str, *states: str, timeout: float = 30.0) -> Dict[str, Any]:
    return up.wait_state(name, *states, timeout=timeout)


def _path(loc: Dict[str, Any]) -> List[tuple]:
    return [(t["from"], t["to"]) for t in loc["transitions"]]


def test_call_timeout_fails_the_call_but_not_the_location(up: WsmUp) -> None:
    before = _settled(up, "hang", "ready")
    with manager_client(up.ws) as client:
        t = time.monotonic()
        with pytest.raises(RemoteError) as err:
            client.call(
                "call",
                {
                    "location": "hang",
                    "method": "evaluate_sensor",
                    "params": {"sensor": "hang_forever"},
                },
            )
        took = time.monotonic() - t
        assert err.value.type == "Timeout"
        assert "timed out after 1s" in err.value.message
        assert 0.9 <= took < 5
        # the same location still answers, on the same process, and its heartbeats (every
        # 0.3 s, answered beside the stuck call) keep it ready well past 3 missed periods
        ok = client.call(
            "call",
            {"location": "hang", "method": "evaluate_sensor", "params": {"sensor": "answers"}},
        )
        assert ok["run_requests"][0]["run_key"] == "alive"
    time.sleep(1.5)  # 5 heartbeat periods: long enough for a wrong restart to happen
    after = up.location("hang")
    assert after["state"] == "ready"
    assert after["pid"] == before["pid"] and after["restarts"] == 0
    assert _path(after) == [(None, "starting"), ("starting", "ready")]


def test_startup_timeout_is_an_error_with_its_reason(up: WsmUp) -> None:
    loc = _settled(up, "slowload", "error")
    assert loc["error"] == "did not load within 1s"
    assert _path(loc) == [(None, "starting"), ("starting", "error")]
    assert loc["transitions"][-1]["reason"] == "did not load within 1s"
    assert loc["restarts"] == 0 and loc["pid"] is None
    # not retried: still in error a while later
    time.sleep(0.5)
    assert up.location("slowload")["transitions"] == loc["transitions"]


def test_memory_limit_restarts_the_location_with_that_reason(up: WsmUp) -> None:
    loc = wait_for(
        lambda: (lambda x: x if x["state"] == "ready" and x["restarts"] == 1 else None)(
            up.location("hog")
        ),
        30,
        "hog to be restarted",
    )
    assert _path(loc) == [
        (None, "starting"),
        ("starting", "ready"),
        ("ready", "backoff"),
        ("backoff", "starting"),
        ("starting", "ready"),
    ]
    reason = loc["transitions"][2]["reason"]
    m = re.fullmatch(
        r"memory (\d+) MB above the limit of 100 MB; restarting in (\d+\.\d\d)s", reason
    )
    assert m, reason
    assert int(m.group(1)) > 100
    assert 0.08 <= float(m.group(2)) <= 0.2  # backoff_initial_seconds 0.1, +-20% jitter
    assert loc["transitions"][3]["reason"] == "restart"
    assert loc["rss_bytes"] < 100 * 2**20  # the new process did not hoard


@pytest.mark.parametrize(
    "name, state, path, reason, restarts",
    [
        # restart: never -> a crash is final
        (
            "never",
            "failed",
            ["starting", "ready", "failed"],
            "exited with status 1; restart is never",
            0,
        ),
        # restart: on-failure -> a clean exit stays stopped
        ("onfail_clean", "stopped", ["starting", "ready", "stopped"], "exited with status 0", 0),
        # restart: on-failure -> a crash is restarted, max_restarts 1 -> failed on the second
        (
            "onfail_crash",
            "failed",
            ["starting", "ready", "backoff", "starting", "ready", "failed"],
            "exited with status 1; restarted 1 time within 60s",
            1,
        ),
        # restart: always -> a clean exit is restarted too
        (
            "always_clean",
            "failed",
            ["starting", "ready", "backoff", "starting", "ready", "failed"],
            "exited with status 0; restarted 1 time within 60s",
            1,
        ),
    ],
)
def test_restart_policies(
    up: WsmUp, name: str, state: str, path: List[str], reason: str, restarts: int
) -> None:
    def settled() -> Any:
        loc = up.location(name)
        return loc if [t["to"] for t in loc["transitions"]] == path else None

    loc = wait_for(settled, 30, f"{name} to go through {path}")
    time.sleep(0.3)  # and to stay there
    loc = up.location(name)
    assert [t["to"] for t in loc["transitions"]] == path
    assert loc["state"] == state
    assert loc["transitions"][-1]["reason"] == reason
    assert loc["restarts"] == restarts
    if state == "failed":
        assert loc["error"] == reason  # what `wsm status` shows in its table
    if "backoff" in path:
        backoff = loc["transitions"][path.index("backoff")]
        assert re.fullmatch(
            reason.split(";")[0] + r"; restarting in 0\.\d\ds", backoff["reason"]
        ), backoff["reason"]
    stamps = [t["at"] for t in loc["transitions"]]
    assert stamps == sorted(stamps) and time.time() - 120 < stamps[0] <= time.time()


def test_a_stopped_process_misses_heartbeats_and_is_restarted(up: WsmUp) -> None:
    before = _settled(up, "stoppable", "ready")
    os.kill(before["pid"], signal.SIGSTOP)
    try:
        t = time.monotonic()
        loc = wait_for(
            lambda: (lambda x: x if x["state"] == "ready" and x["pid"] != before["pid"] else None)(
                up.location("stoppable")
            ),
            20,
            "stoppable to be restarted",
        )
        took = time.monotonic() - t
    finally:
        try:
            os.kill(before["pid"], signal.SIGKILL)
        except OSError:
            pass
    assert _path(loc)[-3:] == [("ready", "backoff"), ("backoff", "starting"), ("starting", "ready")]
    assert loc["transitions"][-3]["reason"].startswith("missed 3 heartbeats (0.3s each)")
    assert loc["restarts"] == 1
    assert took < 8  # 3 periods of 0.3 s, a kill, a backoff of ~0.1 s and a start
    assert not psutil.pid_exists(before["pid"]) or (
        psutil.Process(before["pid"]).status() == psutil.STATUS_ZOMBIE
    )


def test_location_output_reaches_the_manager_output_with_its_name(up: WsmUp) -> None:
    _settled(up, "printer", "ready")

    def lines() -> List[str]:
        return [
            line
            for line in up.lines
            if re.fullmatch(
                r"\d\d:\d\d:\d\d printer\s+\| (hello from the printer|a warning on stderr)", line
            )
        ]

    found = wait_for(lambda: len(lines()) == 2 and lines(), 10, "the printer's two lines")
    assert len(found) == 2
    # and in its log file, for `wsm logs`
    logs = up.ws.run("logs", "-w", str(up.workspace_path), "printer")  # type: ignore[attr-defined]
    assert "hello from the printer" in logs.stdout and "a warning on stderr" in logs.stdout


def test_status_shows_transitions_with_times_and_reasons(up: WsmUp) -> None:
    _settled(up, "slowload", "error")
    health = up.location("slowload")
    cli = json.loads(
        up.ws.run("status", "-w", str(up.workspace_path), "--json").stdout  # type: ignore[attr-defined]
    )["locations"]["slowload"]
    assert health["transitions"] == cli["transitions"]
    assert [set(t) for t in health["transitions"]] == [{"at", "from", "to", "reason"}] * 2
    _settled(up, "never", "failed")
    table = up.ws.run("status", "-w", str(up.workspace_path)).stdout  # type: ignore[attr-defined]
    rows = {line.split()[0]: line for line in table.splitlines()[2:]}
    assert "error" in rows["slowload"] and "did not load within 1s" in rows["slowload"]
    # a location that stays down says why: its last transition's reason
    assert "failed" in rows["never"] and "exited with status 1; restart is never" in rows["never"]
