"""How `wsm up` and `wsm list` report: one line per event; colour only on a terminal.

`--log-format json` swaps `Console` for `JsonConsole`: one JSON object per line per event,
for log shippers (Fluent Bit, Vector, Promtail). Every object has `ts` (ISO 8601, UTC),
`event` and `location` (null for the manager's own messages); the events are

- `state`: a location changed state: `from`, `to`, `reason`, `restarts`;
- `restart`: the restart policy restarted a location: `reason` (why the previous process
  ended), `restarts` (the count, this one included);
- `env_build`: `phase` (`start`, `step`, `warning`, `done`, `failed`), `env` (the key),
  `locations`, `seconds` since the build started, `message`;
- `output`: a line a location wrote: `stream` (`stdout`/`stderr`), `line`;
- `message`: the manager speaking: `message`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, Optional, TextIO, Tuple, Union

from workspace_manager.envs.progress import (
    BuildEvent,
    BuildReporter,
    LiveReporter,
    console_reporter,
)
from workspace_manager.supervisor.manager import EventSink, one_line
from workspace_manager.supervisor.state import State, Transition

LOG_FORMATS = ("text", "json")
#: States whose console line points to `wsm logs NAME` (the traceback is kept there).
FAILURES = frozenset({State.ERROR, State.BACKOFF, State.FAILED})

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
        """One line per change; a failure says where its traceback and output are."""
        state = t.new.value
        label = self._paint(f"{state:<8}", COLOURS.get(state, "0"))
        reason = f"  {one_line(t.reason)}" if t.reason else ""
        if t.new in FAILURES:
            reason += f" (see `wsm logs {name}`)"
        self._emit(f"{name:<{self._width}}  {label}{reason}")

    def output(self, name: str, stream: str, line: bytes) -> None:
        if not self.show_output:
            return
        self._emit(f"{name:<{self._width}} | {printable(line)}")

    def message(self, text: str) -> None:
        self._emit(f"wsm: {text}")


#: Longest output line echoed to the console; the location's log keeps every byte.
MAX_ECHO = 1000


def printable(line: bytes) -> str:
    """A location's output line made safe for a terminal: mostly-binary lines are summarised,
    control characters replaced, long lines cut."""
    text = line.decode("utf-8", "replace").rstrip("\r")
    bad = sum(1 for ch in text if not (ch.isprintable() or ch == "\t") or ch == "\ufffd")
    if text and bad > len(text) * 0.3:
        return f"<{len(line)} bytes of binary output>"
    text = "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in text)
    if len(text) > MAX_ECHO:
        text = text[:MAX_ECHO] + f"... ({len(text) - MAX_ECHO} more characters)"
    return text


class JsonConsole:
    """`--log-format json`: the same events as Console, one JSON object per line."""

    def __init__(
        self,
        stream: Optional[TextIO] = None,
        show_output: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream or sys.stdout
        self.show_output = show_output
        self._clock = clock
        self._lock = threading.Lock()  # env builds report from worker threads
        self._lookup: Callable[[str], Any] = lambda name: None
        self._backoff: Dict[str, Tuple[Optional[str], int]] = {}  # name -> (why, restarts)

    def attach(self, lookup: Callable[[str], Any]) -> None:
        """How to find a location by name (for its restart count and last exit reason)."""
        self._lookup = lookup

    def sink(self) -> EventSink:
        return EventSink(transition=self.transition, output=self.output, message=self.message)

    def build_reporter(self) -> BuildReporter:
        return self

    def width(self, names: Iterable[str]) -> None:
        """Column widths are a text-console concern."""

    def transition(self, name: str, t: Transition) -> None:
        loc = self._lookup(name)
        restarts = getattr(loc, "restarts", None)
        if t.new is State.BACKOFF:  # the location's error is why its process ended
            self._backoff[name] = (getattr(loc, "error", None) or t.reason, restarts or 0)
        elif t.old is State.BACKOFF:
            why, before = self._backoff.pop(name, (None, 0))
            # a restart by policy counts itself; leaving backoff by reload or shutdown does not
            if t.new is State.STARTING and restarts is not None and restarts > before:
                self._write(t.at, "restart", name, {"reason": why, "restarts": restarts})
        fields = {
            "from": t.old.value if t.old else None,
            "to": t.new.value,
            "reason": t.reason,
            "restarts": restarts,
        }
        self._write(t.at, "state", name, fields)

    def output(self, name: str, stream: str, line: bytes) -> None:
        if self.show_output:
            text = line.decode("utf-8", "replace").rstrip("\r")
            self._write(self._clock(), "output", name, {"stream": stream, "line": text})

    def message(self, text: str) -> None:
        self._write(self._clock(), "message", None, {"message": text})

    def report(self, event: BuildEvent) -> None:
        """A BuildReporter: env build phases; the installer's own lines stay in its log."""
        if event.kind == "output":
            return
        locations = list(event.locations)
        fields = {
            "phase": event.kind,
            "env": event.key,
            "locations": locations,
            "seconds": round(event.elapsed, 3),
            "message": event.text,
        }
        self._write(
            self._clock(), "env_build", locations[0] if len(locations) == 1 else None, fields
        )

    def _write(
        self, at: float, event: str, location: Optional[str], fields: Dict[str, Any]
    ) -> None:
        record: Dict[str, Any] = {"ts": iso_utc(at), "event": event, "location": location}
        record.update(fields)
        line = json.dumps(record, ensure_ascii=True, default=str) + "\n"
        try:
            with self._lock:
                self.stream.write(line)
                self.stream.flush()
        except (OSError, ValueError):
            pass  # stdout closed (a log shipper went away): keep supervising


def iso_utc(at: float) -> str:
    """`2024-05-01T12:00:00.123Z`"""
    stamp = datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def make_console(log_format: str = "text", show_output: bool = True) -> Union[Console, JsonConsole]:
    """The console for `--log-format`: human text (the default) or JSON lines."""
    if log_format == "json":
        return JsonConsole(show_output=show_output)
    return Console(show_output=show_output)
