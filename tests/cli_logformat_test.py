"""`wsm up --log-format json`: the JsonConsole on scripted events, then a real `wsm up` whose
every stdout line must be one JSON object, through an env build, a kill -9 and a shutdown."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import threading
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

import pytest
from e2e import WorkspaceDir, WsmUp, wait_for, wsm_argv

from workspace_manager.cli.console import Console, JsonConsole, iso_utc, make_console
from workspace_manager.envs.progress import BuildEvent
from workspace_manager.supervisor.state import State, Transition

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class FakeLocation:
    def __init__(self) -> None:
        self.restarts = 0
        self.error: Optional[str] = None


def records(stream: io.StringIO) -> List[Dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    out = [json.loads(line) for line in lines]
    for rec in out:
        assert ISO.match(rec["ts"]), rec
        assert "event" in rec and "location" in rec
    return out


def test_iso_timestamps_are_utc_with_milliseconds() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"


def test_state_changes_and_a_restart_with_its_reason() -> None:
    out = io.StringIO()
    console = JsonConsole(out, clock=lambda: 1_700_000_000.0)
    loc = FakeLocation()
    console.attach({"a": loc}.get)
    sink = console.sink()
    sink.transition("a", Transition(1.0, None, State.STARTING, "start"))
    sink.transition("a", Transition(2.0, State.STARTING, State.READY, "1 repository in 70 ms"))
    loc.error = "killed by SIGKILL"
    sink.transition("a", Transition(3.0, State.READY, State.BACKOFF, "killed by SIGKILL; in 0.5s"))
    loc.restarts, loc.error = 1, None
    sink.transition("a", Transition(3.5, State.BACKOFF, State.STARTING, "restart"))
    recs = records(out)
    assert [(r["event"], r.get("to")) for r in recs] == [
        ("state", "starting"),
        ("state", "ready"),
        ("state", "backoff"),
        ("restart", None),
        ("state", "starting"),
    ]
    assert recs[0] == {
        "ts": "1970-01-01T00:00:01.000Z",
        "event": "state",
        "location": "a",
        "from": None,
        "to": "starting",
        "reason": "start",
        "restarts": 0,
    }
    assert recs[2]["from"] == "ready" and recs[2]["reason"].startswith("killed by SIGKILL")
    assert recs[3] == {
        "ts": "1970-01-01T00:00:03.500Z",
        "event": "restart",
        "location": "a",
        "reason": "killed by SIGKILL",
        "restarts": 1,
    }
    assert recs[4]["restarts"] == 1


def test_leaving_backoff_without_a_policy_restart_is_not_a_restart() -> None:
    out = io.StringIO()
    console = JsonConsole(out)
    loc = FakeLocation()
    console.attach({"a": loc}.get)
    loc.error = "exited with status 1"
    console.transition("a", Transition(1.0, State.READY, State.BACKOFF, "exited; in 1s"))
    console.transition("a", Transition(2.0, State.BACKOFF, State.STARTING, "start"))  # reload
    console.transition("a", Transition(3.0, State.STARTING, State.READY, "ok"))
    console.transition("a", Transition(4.0, State.READY, State.BACKOFF, "exited; in 1s"))
    console.transition("a", Transition(5.0, State.BACKOFF, State.STOPPED, "shut down"))
    assert [r["event"] for r in records(out)] == ["state"] * 5


def test_a_location_the_manager_no_longer_has_still_logs() -> None:
    out = io.StringIO()
    console = JsonConsole(out)  # nothing attached: restarts unknown
    console.transition("gone", Transition(1.0, State.READY, State.STOPPED, "shut down"))
    (rec,) = records(out)
    assert rec["location"] == "gone" and rec["restarts"] is None


def test_output_messages_and_env_builds() -> None:
    out = io.StringIO()
    console = JsonConsole(out)
    console.output("a", "stderr", b"caf\xc3\xa9 \xff\x00 tab\tend\r")
    console.message("health endpoint on http://127.0.0.1:8765")
    reporter = console.build_reporter()
    reporter.report(BuildEvent("abc123", ("a",), "start"))
    reporter.report(BuildEvent("abc123", ("a",), "output", "Collecting x", 0.5))
    reporter.report(BuildEvent("abc123", ("a", "b"), "done", "built", 2.34567))
    reporter.report(BuildEvent("def456", ("c",), "failed", "pip install failed: no x", 1.0))
    recs = records(out)
    assert recs[0]["event"] == "output" and recs[0]["stream"] == "stderr"
    assert recs[0]["line"] == "café \ufffd\x00 tab\tend"
    assert recs[1] == {
        "ts": recs[1]["ts"],
        "event": "message",
        "location": None,
        "message": "health endpoint on http://127.0.0.1:8765",
    }
    builds = [r for r in recs if r["event"] == "env_build"]
    assert [b["phase"] for b in builds] == ["start", "done", "failed"]  # installer lines skipped
    assert builds[0]["location"] == "a" and builds[0]["env"] == "abc123"
    assert builds[1]["location"] is None and builds[1]["locations"] == ["a", "b"]
    assert builds[1]["seconds"] == 2.346
    assert builds[2]["message"] == "pip install failed: no x"


def test_quiet_output_drops_output_lines_only() -> None:
    out = io.StringIO()
    console = JsonConsole(out, show_output=False)
    console.output("a", "stdout", b"hello")
    console.message("hi")
    assert [r["event"] for r in records(out)] == ["message"]


def test_lines_from_many_threads_never_interleave() -> None:
    out = io.StringIO()
    console = JsonConsole(out)

    def build(i: int) -> None:
        for k in range(200):
            console.report(BuildEvent(f"key{i}", (f"loc{i}",), "step", "x" * 500, k))

    threads = [threading.Thread(target=build, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(records(out)) == 800


def test_a_closed_stream_does_not_stop_the_manager() -> None:
    out = io.StringIO()
    out.close()
    console = JsonConsole(out)
    console.message("nobody listens")  # no exception


def test_text_stays_the_default() -> None:
    assert isinstance(make_console(), Console)
    assert isinstance(make_console("json"), JsonConsole)


# -- a real `wsm up --log-format json` -----------------------------------------------------------

REPO = """
import sys
from workspace_manager import job, repository

print("hello from", __name__)
print("and on stderr", file=sys.stderr)

@job
def j(): ...

@repository
def repo():
    return [j]
"""


class JsonWsmUp(WsmUp):
    """WsmUp with stdout and stderr apart: every stdout line must be JSON."""

    def __init__(self, ws: WorkspaceDir, *args: str) -> None:
        self.ws = ws
        self.proc = subprocess.Popen(
            wsm_argv("up", *args, "--health", "127.0.0.1:0", "--log-format", "json"),
            cwd=ws.root,
            env=ws.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.lines: List[str] = []
        self.errors: List[str] = []
        self.seen_pids: set = set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_errors, daemon=True)
        self._err_reader.start()
        self.port = None
        match = wait_for(self._health_line, 60, "the health endpoint line")
        self.port = int(match.group(1))

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line.rstrip("\n"))

    def events(self) -> List[Dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]


def test_every_line_of_a_real_run_is_a_json_event(ws: WorkspaceDir) -> None:
    ws.file("alpha/repo.py", REPO)
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "alpha/repo.py", "location_name": "alpha"}},
                {
                    "python_file": {
                        "relative_path": "alpha/repo.py",
                        "location_name": "built",
                        "environment": {"requirements": []},
                    }
                },
            ]
        }
    )
    with JsonWsmUp(ws, "-w", str(path)) as up:
        up.wait_all_settled(timeout=120)
        old_pid = up.location("alpha")["pid"]
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: any(e["event"] == "restart" for e in up.events()), 30, "a restart event")
        up.wait_state("alpha", "ready")
        assert up.stop(signal.SIGTERM) == 0

    events = up.events()  # every line parsed, or json.loads raised
    assert events and all(ISO.match(e["ts"]) for e in events)
    for e in events:
        datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)

    def of(kind: str, location: Optional[str] = None) -> List[Dict[str, Any]]:
        return [
            e
            for e in events
            if e["event"] == kind and (location is None or e["location"] == location)
        ]

    states = [(e["from"], e["to"]) for e in of("state", "alpha")]
    assert states[:2] == [(None, "starting"), ("starting", "ready")]
    assert ("ready", "backoff") in states and ("backoff", "starting") in states
    assert states[-1] == ("ready", "stopped")
    (restart,) = of("restart", "alpha")
    assert "SIGKILL" in restart["reason"] and restart["restarts"] == 1
    backoff = next(e for e in of("state", "alpha") if e["to"] == "backoff")
    assert backoff["restarts"] == 0

    builds = of("env_build", "built")
    assert [b["phase"] for b in builds][0] == "start" and builds[-1]["phase"] == "done"
    assert builds[-1]["seconds"] > 0
    assert [(e["from"], e["to"]) for e in of("state", "built")][:3] == [
        (None, "building"),
        ("building", "starting"),
        ("starting", "ready"),
    ]

    output = of("output", "alpha")
    assert any(o["stream"] == "stdout" and o["line"].startswith("hello from ") for o in output)
    assert any(o["stream"] == "stderr" and o["line"] == "and on stderr" for o in output)
    messages = [e["message"] for e in of("message")]
    assert any(m.startswith("health endpoint on http://") for m in messages)
    assert any("shutting down" in m for m in messages)
    assert all(e["location"] is None for e in of("message"))
    assert up.errors == []  # nothing went around the JSON stream


@pytest.mark.parametrize("value", ["xml", ""])
def test_unknown_log_format_is_a_usage_error(ws: WorkspaceDir, value: str) -> None:
    result = ws.run("up", "--log-format", value)
    assert result.returncode == 2
    assert "--log-format" in result.stderr and "Traceback" not in result.stderr
