"""Per-location log files: appended, size-capped, rotated like logrotate's numbered backups."""

from __future__ import annotations

from pathlib import Path

from workspace_manager.supervisor.logs import LocationLog, log_path, state_root


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_appends_and_keeps_what_was_there(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "team_a.log"  # the folder is made on first write
    log = LocationLog(path, max_bytes=1000)
    log.write(b"one\n")
    log.close()
    log = LocationLog(path, max_bytes=1000)  # a restarted manager appends
    log.write(b"two\n")
    log.close()
    assert path.read_bytes() == b"one\ntwo\n"


def test_rotates_at_the_cap_and_keeps_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "loc.log"
    log = LocationLog(path, max_bytes=10, backups=2)
    for i in range(7):
        log.write(f"line {i}\n".encode())  # 7 bytes: every second write passes the cap
    log.close()
    # newest in loc.log, then .1, .2; the oldest pair fell off the end
    assert _files(tmp_path) == {
        "loc.log": b"line 6\n",
        "loc.log.1": b"line 4\nline 5\n",
        "loc.log.2": b"line 2\nline 3\n",
    }


def test_a_file_never_grows_past_the_cap_by_more_than_one_write(tmp_path: Path) -> None:
    path = tmp_path / "loc.log"
    log = LocationLog(path, max_bytes=4096, backups=3)
    for i in range(2000):
        log.write(b"x" * (i % 97) + b"\n")
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files] == ["loc.log", "loc.log.1", "loc.log.2", "loc.log.3"]
    for p in files:
        assert p.stat().st_size < 4096 + 97
    for p in files[1:]:
        assert p.stat().st_size >= 4096  # a backup is a full file


def test_size_counts_what_was_there_before_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "loc.log"
    path.write_bytes(b"y" * 95)
    log = LocationLog(path, max_bytes=100, backups=1)
    log.write(b"12345\n")
    log.close()
    assert _files(tmp_path) == {"loc.log.1": b"y" * 95 + b"12345\n"}


def test_no_backups_means_the_file_starts_again(tmp_path: Path) -> None:
    path = tmp_path / "loc.log"
    log = LocationLog(path, max_bytes=8, backups=0)
    log.write(b"aaaaaaaaa\n")
    log.write(b"b\n")
    log.close()
    assert _files(tmp_path) == {"loc.log": b"b\n"}


def test_binary_garbage_is_written_as_is(tmp_path: Path) -> None:
    path = tmp_path / "loc.log"
    garbage = bytes(range(256)) * 4
    log = LocationLog(path)
    log.write(garbage)
    log.close()
    assert path.read_bytes() == garbage


def test_log_paths_follow_the_state_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WSM_STATE_DIR", str(tmp_path / "state"))
    assert state_root() == tmp_path / "state"
    assert log_path("abc123", "team_a") == tmp_path / "state" / "abc123" / "logs" / "team_a.log"
    monkeypatch.delenv("WSM_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_root() == tmp_path / "xdg" / "wsm"


def test_console_summarises_binary_and_cuts_long_lines() -> None:
    from workspace_manager.cli.console import MAX_ECHO, printable

    assert printable(bytes(range(256)) * 3) == "<768 bytes of binary output>"
    assert printable(b"plain \x1b[31mtext") == "plain \ufffd[31mtext"  # no escape reaches the tty
    long = printable(b"x" * 5000)
    assert long.startswith("x" * MAX_ECHO) and long.endswith(f"({5000 - MAX_ECHO} more characters)")
    assert printable(b"") == ""


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_disk_drops_and_counts_lines_warns_once_and_recovers(
    tmp_path: Path, monkeypatch
) -> None:
    import errno
    import os as real_os

    from workspace_manager.supervisor import logs

    full = {"on": False}
    real_write = real_os.write

    def write(fd: int, data) -> int:
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(logs.os, "write", write)
    notes: list = []
    clock = _Clock()
    path = tmp_path / "loc.log"
    log = LocationLog(path, on_trouble=notes.append, clock=clock)
    assert log.write(b"before\n")
    full["on"] = True
    for i in range(100):
        assert not log.write(f"lost {i}\n".encode())  # never raises
    assert log.dropped == 100
    assert len(notes) == 1 and "No space left on device" in notes[0]
    full["on"] = False
    assert not log.write(b"too soon\n")  # no retry before RETRY_SECONDS: one syscall a spell
    clock.now += logs.RETRY_SECONDS
    assert log.write(b"after\n")
    log.close()
    assert path.read_bytes() == (
        b"before\n--- wsm: 101 line(s) dropped: No space left on device\nafter\n"
    )
    assert log.dropped == 101 and len(notes) == 2 and "101 line(s) were dropped" in notes[1]


def test_any_failing_open_or_rotation_is_dropped_never_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    log = LocationLog(blocker / "loc.log")  # its folder cannot be made: ENOTDIR
    assert not log.write(b"x\n") and log.dropped == 1


def test_logs_are_private_and_looser_ones_are_tightened(tmp_path: Path) -> None:
    import stat

    folder = tmp_path / "state" / "key" / "logs"
    log = LocationLog(folder / "loc.log", max_bytes=10, backups=2)
    log.write(b"0123456789\n")  # rotates
    log.write(b"new\n")
    log.close()
    for p in (tmp_path / "state", tmp_path / "state" / "key", folder):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    for p in folder.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    folder.chmod(0o755)
    (folder / "loc.log").chmod(0o644)
    (folder / "loc.log.1").chmod(0o644)
    LocationLog(folder / "loc.log", backups=2).write(b"again\n")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "loc.log").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "loc.log.1").stat().st_mode) == 0o600


def test_prepare_opens_the_file_ahead_of_the_first_line(tmp_path: Path) -> None:
    """The manager opens a location's log in a worker thread before its first line, so the
    loop never makes folders or files at a start."""
    path = tmp_path / "state" / "k" / "logs" / "a.log"
    log = LocationLog(path, root=tmp_path / "state")
    log.prepare()
    assert path.exists() and log._fd is not None
    fd = log._fd
    assert log.write(b"first\n")
    assert log._fd == fd  # the first line used the file prepared, no second open
    assert path.read_bytes() == b"first\n"
    log.close()


def test_prepare_that_cannot_open_leaves_the_report_to_the_first_write(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    troubles: list = []
    log = LocationLog(blocker / "a.log", on_trouble=troubles.append)
    log.prepare()  # never raises
    assert troubles == []
    assert not log.write(b"line\n")
    assert log.dropped == 1 and len(troubles) == 1
