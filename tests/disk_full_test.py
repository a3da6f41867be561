"""A full disk loses log lines, never a location (issue 8, section 7).

The state folder is put on a real 256 KiB tmpfs that a filler file makes full; the
manager must keep every location supervised and answering, drop (and count) what it cannot
write, warn once, and write again when space returns. Needs root (to mount); skipped
otherwise.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from e2e import WorkspaceDir, WsmUp, wait_for


def _mount_small_fs(where: Path, size: str = "256k") -> None:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of its own, unmounted afterwards whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "small"
    try:
        _mount_small_fs(where)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)
        if os.path.ismount(where):
            subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem is full (ENOSPC); return it, to free space later."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 4096
        while True:
            try:
                f.write(chunk)
            except OSError:
                break
    # and the last crumbs, a byte at a time
    with open(filler, "ab", buffering=0) as f:
        while True:
            try:
                f.write(b"\0")
            except OSError:
                break
    return filler


EARLY = """
    import sys
    for i in range(4000):  # ~0.8 MB at import: far more than a pipe holds
        print("early line %d " % i + "x" * 180)
    from workspace_manager import job, repository

    @job
    def noop(): ...

    @repository
    def early_repo():
        return [noop]
"""

CHATTY = """
    import glob, os, threading, time

    def chatter():
        time.sleep(0.5)
        # the first process only: a restarted one's 800 kB would fill the 256 KiB folder
        # again after the test frees it, while the manager still logs them
        if not glob.glob(os.environ["DONE_FILE"] + ".*"):
            for i in range(4000):  # while ready: must not block in print
                print("ready line %d " % i + "y" * 180, flush=True)
            with open(os.environ["DONE_FILE"] + ".%d" % os.getpid(), "w") as f:
                f.write("done")
        n = 0
        while True:
            n += 1
            print("tick %d" % n, flush=True)
            time.sleep(0.2)

    threading.Thread(target=chatter, daemon=True).start()
    from workspace_manager import job, repository

    @job
    def noop(): ...

    @repository
    def chatty_repo():
        return [noop]
"""


def _metric(up: WsmUp, name: str, location: str) -> float:
    code, body = up.get("/metrics")
    assert code == 200
    m = re.search(rf'^{name}\{{location="{location}"\}} (\S+)$', body, re.M)
    return float(m.group(1)) if m else -1.0


def test_a_full_state_folder_loses_lines_never_a_location(
    ws: WorkspaceDir, small_fs: Path, tmp_path: Path
) -> None:
    ws.env["WSM_STATE_DIR"] = str(small_fs / "state")
    done = tmp_path / "chatty-done"
    ws.env["DONE_FILE"] = str(done)
    ws.file("early.py", EARLY)
    ws.file("chatty.py", CHATTY)
    ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "early.py", "location_name": "early"}},
                {"python_file": {"relative_path": "chatty.py", "location_name": "chatty"}},
            ],
            "supervision": {"backoff_initial_seconds": 0.1, "startup_timeout_seconds": 60},
        }
    )
    filler = fill(small_fs)
    with WsmUp(ws) as up:
        # printing at start-up: ready, not `starting` forever
        up.wait_state("early", "ready", timeout=45)
        chatty = up.wait_state("chatty", "ready", timeout=45)
        # printing while ready: the thread gets past its 4,000 prints
        wait_for(lambda: list(tmp_path.glob("chatty-done.*")), 45, "chatty to finish printing")
        assert _metric(up, "wsm_log_lines_dropped_total", "early") >= 4000
        assert _metric(up, "wsm_log_lines_dropped_total", "chatty") >= 4000
        warnings = [line for line in up.lines if "cannot write" in line]
        assert len([w for w in warnings if "early" in w]) == 1, up.output()
        assert len([w for w in warnings if "chatty" in w]) == 1, up.output()

        # a kill -9 is seen, and the location restarted
        os.kill(chatty["pid"], signal.SIGKILL)

        def restarted() -> bool:
            loc = up.location("chatty")
            return loc["restarts"] >= 1 and loc["state"] == "ready" and loc["pid"] != chatty["pid"]

        wait_for(restarted, 45, "chatty to be restarted after kill -9")

        # `wsm reload` answers
        result = ws.run("reload", "early", timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        up.wait_state("early", "ready", timeout=45)
        assert up.location("chatty")["state"] == "ready"

        # space returns: new lines are written again, with a note of what was lost
        filler.unlink()
        log = Path(up.location("chatty")["log"]) if "log" in up.location("chatty") else None
        log = log or next((small_fs / "state").glob("*/logs/chatty.log"))

        def ticks_written() -> bool:
            try:
                text = log.read_text(errors="replace")
            except OSError:
                return False
            return "line(s) dropped" in text and re.search(r"^tick \d+$", text, re.M) is not None

        wait_for(ticks_written, 30, "chatty's log to be written again")
        wait_for(lambda: any("again" in ln and "chatty" in ln for ln in up.lines), 10, "notice")
        assert up.stop() == 0


def test_a_full_env_cache_is_a_clear_error_not_a_hang(ws: WorkspaceDir, small_fs: Path) -> None:
    ws.env["WSM_CACHE_DIR"] = str(small_fs / "cache")
    ws.file("plain.py", PLAIN)
    ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "plain.py",
                        "location_name": "built",
                        "environment": {"requirements": []},
                    }
                },
                {"python_file": {"relative_path": "plain.py", "location_name": "shared"}},
            ]
        }
    )
    fill(small_fs)
    with WsmUp(ws) as up:
        loc = up.wait_state("built", "error", timeout=60)
        assert "No space left on device" in loc["error"], loc["error"]
        assert "Traceback" not in loc["error"]
        up.wait_state("shared", "ready", timeout=30)  # the others are not held up
        assert up.stop() == 0
    assert "Traceback" not in up.output(), up.output()


def test_a_read_only_env_cache_is_a_clear_error(ws: WorkspaceDir, small_fs: Path) -> None:
    ws.env["WSM_CACHE_DIR"] = str(small_fs / "cache")
    ws.file("plain.py", PLAIN)
    entry = {"relative_path": "plain.py", "environment": {"requirements": []}}
    ws.workspace({"load_from": [{"python_file": entry}]})
    (small_fs / "cache" / "envs" / ".locks").mkdir(parents=True)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        with WsmUp(ws) as up:
            loc = up.wait_state("plain", "error", timeout=60)
            assert "Read-only file system" in loc["error"], loc["error"]
            assert up.stop() == 0
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)


def test_a_full_runtime_folder_is_one_clear_line(ws: WorkspaceDir, small_fs: Path) -> None:
    ws.env["WSM_RUNTIME_DIR"] = str(small_fs / "run")
    ws.file("plain.py", PLAIN)
    ws.workspace({"load_from": [{"python_file": {"relative_path": "plain.py"}}]})
    (small_fs / "run").mkdir(mode=0o700)
    fill(small_fs)
    result = ws.run("up", timeout=60)
    assert result.returncode != 0
    assert "No space left on device" in result.stderr + result.stdout
    assert str(small_fs / "run") in result.stderr  # names what it could not write
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


PLAIN = """
    from workspace_manager import job, repository

    @job
    def noop(): ...

    @repository
    def plain_repo():
        return [noop]
"""


TICKER = """
    import itertools, sys, time, threading

    def tick():
        for n in itertools.count():
            print("tick %d " % n + "z" * 200, flush=True)
            print("err %d" % n, file=sys.stderr, flush=True)
            time.sleep(0.01)

    threading.Thread(target=tick, daemon=True).start()
    from workspace_manager import job, repository

    @job
    def noop(): ...

    @repository
    def ticker_repo():
        return [noop]
"""


@pytest.mark.slow
def test_a_state_folder_that_fills_empties_and_turns_read_only_never_costs_a_location(
    ws: WorkspaceDir, small_fs: Path
) -> None:
    """Chaos: locations print without pause while their logs' filesystem fills up (and
    rotation needs room), is freed, turns read-only (EROFS) and back; kill -9 and
    reloads in between are handled each time, and lines are written again at the end."""
    ws.env["WSM_STATE_DIR"] = str(small_fs / "state")
    for name in ("t1", "t2", "t3"):
        ws.file(f"{name}.py", TICKER)
    ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": f"{n}.py", "location_name": n}}
                for n in ("t1", "t2", "t3")
            ],
            "supervision": {"backoff_initial_seconds": 0.1, "max_restarts": 100},
        }
    )
    with WsmUp(ws) as up:
        for name in ("t1", "t2", "t3"):
            up.wait_state(name, "ready", timeout=60)
        for round_ in range(3):
            filler = fill(small_fs)
            kill_and_see_it_back(up, f"t{round_ + 1}")
            assert ws.run("reload", "t1", timeout=60).returncode == 0
            # The logs folder turns read-only: a read-only bind mount over it (the filesystem
            # itself cannot be remounted read-only while the run database beside the logs is
            # open for writing: the kernel refuses with EBUSY). New opens and rotations there
            # get EROFS.
            logs = next((small_fs / "state").glob("*/logs"))
            subprocess.run(["mount", "--bind", str(logs), str(logs)], check=True)
            try:
                subprocess.run(["mount", "-o", "remount,bind,ro", str(logs)], check=True)
                kill_and_see_it_back(up, "t2")
                assert ws.run("reload", timeout=60).returncode == 0
            finally:
                subprocess.run(["umount", "-l", str(logs)], check=True)
            filler.unlink()
        for name in ("t1", "t2", "t3"):
            up.wait_state(name, "ready", timeout=45)
        assert _metric(up, "wsm_log_lines_dropped_total", "t3") > 0
        log = next((small_fs / "state").glob("*/logs/t3.log"))
        mark = log.stat().st_size if log.exists() else 0

        def grew() -> bool:
            try:
                return log.stat().st_size != mark
            except OSError:
                return False

        wait_for(grew, 30, "t3's log to be written again")
        assert up.stop() == 0


def kill_and_see_it_back(up: WsmUp, name: str) -> None:
    old = up.wait_state(name, "ready", timeout=45)["pid"]
    os.kill(old, signal.SIGKILL)

    def back() -> bool:
        loc = up.location(name)
        return loc["state"] == "ready" and loc["pid"] not in (None, old)

    wait_for(back, 45, f"{name} to be back after kill -9")
