"""How `wsm up` and `wsm list` report: one line per event; colour only on a terminal."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from workspace_manager.envs.progress import BuildReporter, LiveReporter, console_reporter
from workspace_manager.supervisor.manager import EventSink
from workspace_manager.supervisor.state import Transition

COLOURS = {
    "building": "36",
    "starting": "36",
    "ready": "32",
    "error": "31",
    "backoff": "33",
    "failed": "31;1",
    "stopped": "2",
}


class Console:
    def __init__(self, stream: Optional[TextIO] = None, show_output: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.show_output = show_output
        self._width = 0
        self._live: Optional[BuildReporter] = None

    def sink(self) -> EventSink:
        return EventSink(transition=self.transition, output=self.output, message=self.message)

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.tty else text

    def build_reporter(self) -> BuildReporter:
        """Env build progress on the same stream: live on a terminal, plain lines otherwise."""
        self._live = console_reporter(self.stream)
        return self._live

    def _emit(self, line: str) -> None:
        text = f"{time.strftime('%H:%M:%S')} {line}"
        try:
            if isinstance(self._live, LiveReporter):
                self._live.print_line(text)
            else:
                self.stream.write(text + "\n")
                self.stream.flush()
        except (OSError, ValueError):
            pass  # stdout closed (piped into a pager that quit): keep supervising

    def width(self, names) -> None:
        self._width = max([self._width, *(len(n) for n in names)])

    def transition(self, name: str, t: Transition) -> None:
        state = t.new.value
        label = self._paint(f"{state:<8}", COLOURS.get(state, "0"))
        reason = f"  {t.reason}" if t.reason else ""
        self._emit(f"{name:<{self._width}}  {label}{reason}")

    def output(self, name: str, stream: str, line: bytes) -> None:
        if not self.show_output:
            return
        text = line.decode("utf-8", "replace").rstrip("\r")
        text = "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in text)
        self._emit(f"{name:<{self._width}} | {text}")

    def message(self, text: str) -> None:
        self._emit(f"wsm: {text}")
