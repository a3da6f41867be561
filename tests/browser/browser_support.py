"""Helpers of the real-browser tests (tests/browser/): Debian's Chromium by Playwright, the
small workspace they serve, screenshots as test artefacts, another origin's page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from e2e import WorkspaceDir, WsmUp, wait_for  # noqa: E402

CHROMIUM = os.environ.get("WSM_CHROMIUM", "/usr/bin/chromium")
# The flags that work on this kind of machine (root, no GPU, no display, no network
# beyond loopback): the browser must not phone home or update anything while measured.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ROOT = Path(__file__).resolve().parent.parent.parent

REPO = """
import time

from workspace_manager import (
    DefaultScheduleStatus, DefaultSensorStatus, ScheduleDefinition, job, repository, sensor,
)

@job(description="logs a line every 0.2 s", tags={"team": "web"})
def ticker(context):
    for i in range(int(context.run_config.get("lines", 50))):
        context.log.info("tick %d", i)
        time.sleep(0.2)

@job(description="sleeps until canceled")
def sleeper(context):
    context.log.info("going to sleep")
    time.sleep(float(context.run_config.get("seconds", 600)))

@job
def quick(context):
    context.log.info("done")

nightly = ScheduleDefinition(
    name="nightly", job=quick, cron_schedule="0 3 * * *",
    execution_timezone="Europe/Berlin", default_status=DefaultScheduleStatus.RUNNING,
)

@sensor(job=quick, minimum_interval_seconds=3600, default_status=DefaultSensorStatus.RUNNING)
def watcher(context):
    return None

@repository
def web_repo():
    return [ticker, sleeper, quick, nightly, watcher]
"""

SPARE = """
from workspace_manager import job, repository

@job
def noop(context):
    pass

@repository
def spare_repo():
    return [noop]
"""


def chromium_or_skip() -> str:
    """The Chromium to drive; skips (fails under CI) when it or Playwright is missing."""
    problem = None
    if not os.access(CHROMIUM, os.X_OK):
        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the Python package playwright is not installed (pip install -e '.[test]')"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return CHROMIUM


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless, on a fresh temporary profile (Playwright makes one)."""
    return playwright.chromium.launch(
        executable_path=chromium_or_skip(), headless=True, args=CHROMIUM_ARGS
    )


def artifacts_dir() -> Path:
    """Where screenshots go: $WSM_ARTIFACTS/browser, default test-artifacts/browser."""
    base = Path(os.environ.get("WSM_ARTIFACTS") or ROOT / "test-artifacts")
    folder = base / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page PNG of `page` as artefact `name`.png; returns its path."""
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class Served:
    """A running `wsm up` and what the tests need of it."""

    ws: WorkspaceDir
    up: WsmUp
    url: str
    locations: List[str] = field(default_factory=list)

    def wsm_json(self, *args: str) -> Any:
        """`wsm ARGS --json` against this manager, parsed."""
        done = self.ws.run(*args, "--json", "-w", str(self.ws.root / "workspace.yaml"))
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    def api(self, path: str) -> Any:
        code, body = self.up.get(path)
        assert code == 200, f"{path}: {code} {body}"
        return json.loads(body)

    def runs(self) -> List[Dict[str, Any]]:
        """Every run the manager's API lists, newest first."""
        self.up.track()
        return list(self.api("/api/runs?limit=1000")["items"])

    def run(self, run_id: str) -> Dict[str, Any]:
        self.up.track()
        return dict(self.api(f"/api/runs/{run_id}"))

    def wait_run(self, run_id: str, *statuses: str, timeout: float = 60.0) -> Dict[str, Any]:
        def check() -> Optional[Dict[str, Any]]:
            rec = self.run(run_id)
            return rec if rec.get("status") in statuses else None

        return wait_for(check, timeout, f"run {run_id} to be {'/'.join(statuses)}")


def write_workspace(ws: WorkspaceDir, spare: int = 1) -> List[str]:
    """The browser tests' workspace: `team` (jobs, a schedule, a sensor) and `spare` small
    locations `spare0`... (one of them is killed by a test); returns the location names."""
    ws.file("code/web_repo.py", REPO)
    entries: List[Dict[str, Any]] = [
        {"python_file": {"relative_path": "code/web_repo.py", "location_name": "team"}}
    ]
    names = ["team"]
    for i in range(spare):
        ws.file(f"spare{i}/spare_repo.py", SPARE)
        entries.append(
            {
                "python_file": {
                    "relative_path": f"spare{i}/spare_repo.py",
                    "location_name": f"spare{i}",
                }
            }
        )
        names.append(f"spare{i}")
    ws.workspace({"load_from": entries})
    return names


def wait_live(page: Any, timeout_ms: float = 10_000) -> None:
    """Until the page's event stream is open (the page sets body[data-live=open])."""
    page.wait_for_function(
        "() => document.body && document.body.dataset.live === 'open'", timeout=timeout_ms
    )


def no_horizontal_scroll(page: Any) -> Dict[str, int]:
    """The page's scroll width and its viewport's width (equal when nothing overflows)."""
    return page.evaluate(
        "({scroll: document.documentElement.scrollWidth,"
        " client: document.documentElement.clientWidth})"
    )


class OtherOrigin:
    """A tiny static site on another loopback port (another origin), serving `pages`
    {path: html}; a subprocess, stopped by `close()`."""

    def __init__(self, pages: Dict[str, str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wsm-other-origin-"))
        for rel, html in pages.items():
            (self.dir / rel).write_text(html)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "-d",
                str(self.dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (...) ..."
        self.port = int(line.split(" port ")[1].split()[0])
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def monotonic_ms() -> float:
    return time.monotonic() * 1000.0
