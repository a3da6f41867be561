"""Build progress: plain lines when piped, one live line per active build on a terminal."""

from __future__ import annotations

import io
import re

from workspace_manager.envs.progress import (
    BuildEvent,
    LiveReporter,
    PlainReporter,
    console_reporter,
)


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def ev(key: str, kind: str, text: str = "", locations=("a",), elapsed: float = 0.0) -> BuildEvent:
    return BuildEvent(key, tuple(locations), kind, text, elapsed)


def test_plain_one_line_per_step_and_no_installer_output() -> None:
    out = io.StringIO()
    rep = PlainReporter(out)
    rep.report(ev("k1" * 10, "start"))
    rep.report(ev("k1" * 10, "step", "creating virtualenv", ("a", "b")))
    rep.report(ev("k1" * 10, "output", "Collecting foo"))
    rep.report(ev("k1" * 10, "warning", "uv missing"))
    rep.report(ev("k1" * 10, "done", "built", elapsed=3.25))
    rep.report(ev("k2" * 10, "failed", "pip install failed: ERROR: x", elapsed=1.0))
    assert out.getvalue().splitlines() == [
        "wsm: env k1k1k1k1 (a, b): creating virtualenv",
        "wsm: env k1k1k1k1 (a): warning: uv missing",
        "wsm: env k1k1k1k1 (a): built in 3.2s",
        "wsm: env k2k2k2k2 (a): failed after 1.0s: pip install failed: ERROR: x",
    ]


def test_console_reporter_picks_by_terminal() -> None:
    assert isinstance(console_reporter(io.StringIO()), PlainReporter)
    assert isinstance(console_reporter(FakeTty()), LiveReporter)


def test_live_display_updates_lines_in_place() -> None:
    out = FakeTty()
    rep = LiveReporter(out)
    rep.REFRESH_SECONDS = 3600  # no ticker redraws during the test
    rep.report(ev("a" * 20, "step", "creating virtualenv", ("one",)))
    rep.report(ev("b" * 20, "step", "installing 2 requirements with pip", ("two",)))
    rep.report(ev("b" * 20, "output", "Collecting foo", ("two",)))
    rep.report(ev("a" * 20, "done", "built", ("one",), elapsed=2.0))
    text = out.getvalue()
    # each redraw moves up over the lines it drew before and clears them
    assert "\x1b[1F\x1b[J" in text and "\x1b[2F\x1b[J" in text
    final = text.rsplit("\x1b[J", 1)[1]
    lines = final.splitlines()
    assert lines[0] == "wsm: env aaaaaaaa (one): built in 2.0s"
    assert re.fullmatch(
        r"wsm: env bbbbbbbb \(two\): installing 2 requirements with pip \d+\.\ds  Collecting foo",
        lines[1],
    )
    assert len(lines) == 2
