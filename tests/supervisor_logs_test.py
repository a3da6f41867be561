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
