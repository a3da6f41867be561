"""Build progress: events from builder threads, shown live on a terminal or as plain lines.

A terminal gets one updating line per active build (env, locations, step, elapsed, the
installer's latest output line), redrawn with plain ANSI; anything else (a pipe, a file,
CI) gets one line per step and one per outcome.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Dict, Optional, Protocol, Sequence, Tuple

# kind: "start" | "step" | "output" (installer line) | "warning" | "done" | "failed"


@dataclass(frozen=True)
class BuildEvent:
    key: str
    locations: Tuple[str, ...]
    kind: str
    text: str = ""
    elapsed: float = 0.0


class BuildReporter(Protocol):
    def report(self, event: BuildEvent) -> None:
        """Called from builder threads; must be thread-safe and fast."""
        ...


class NullReporter:
    def report(self, event: BuildEvent) -> None:
        pass


class RecordingReporter:
    """Keeps every event: for tests and for callers that render progress themselves."""

    def __init__(self) -> None:
        self.events: list = []
        self._lock = threading.Lock()

    def report(self, event: BuildEvent) -> None:
        with self._lock:
            self.events.append(event)


def _label(event: BuildEvent) -> str:
    names = ", ".join(event.locations)
    return f"env {event.key[:8]}" + (f" ({names})" if names else "")


def _outcome_line(event: BuildEvent) -> Optional[str]:
    if event.kind == "done":
        return f"{_label(event)}: {event.text or 'built'} in {event.elapsed:.1f}s"
    if event.kind == "failed":
        return f"{_label(event)}: failed after {event.elapsed:.1f}s: {event.text}"
    if event.kind == "warning":
        return f"{_label(event)}: warning: {event.text}"
    return None


class PlainReporter:
    """One line per step and per outcome; installer output stays in the log file."""

    def __init__(self, stream: Optional[IO[str]] = None, prefix: str = "wsm: ") -> None:
        self._stream = stream
        self._prefix = prefix
        self._lock = threading.Lock()

    def report(self, event: BuildEvent) -> None:
        if event.kind in ("start", "output"):
            return
        line = _outcome_line(event)
        if line is None:
            line = f"{_label(event)}: {event.text}"
        stream = self._stream or sys.stderr
        with self._lock:
            stream.write(self._prefix + line + "\n")
            stream.flush()


@dataclass
class _Active:
    label: str
    step: str
    detail: str
    started: float


class LiveReporter:
    """One updating line per active build; finished builds leave one permanent line."""

    REFRESH_SECONDS = 0.2

    def __init__(self, stream: Optional[IO[str]] = None, prefix: str = "wsm: ") -> None:
        self._stream = stream or sys.stderr
        self._prefix = prefix
        self._lock = threading.Lock()
        self._active: Dict[str, _Active] = {}
        self._drawn = 0
        self._ticker: Optional[threading.Thread] = None

    def report(self, event: BuildEvent) -> None:
        with self._lock:
            now = time.monotonic()
            state = self._active.get(event.key)
            if event.kind in ("start", "step", "output"):
                if state is None:
                    state = _Active(_label(event), "starting", "", now - event.elapsed)
                    self._active[event.key] = state
                state.label = _label(event)
                if event.kind == "output":
                    state.detail = event.text.strip()
                elif event.kind == "step":
                    state.step, state.detail = event.text, ""
                self._redraw(extra=None)
                self._ensure_ticker()
                return
            line = _outcome_line(event)
            if event.kind in ("done", "failed"):
                self._active.pop(event.key, None)
            self._redraw(extra=self._prefix + line if line else None)

    def print_line(self, line: str) -> None:
        """Print a finished line (e.g. a location's state change) above the live block, so
        other output never tears the display."""
        with self._lock:
            if not self._active and not self._drawn:
                self._stream.write(line + "\n")
                self._stream.flush()
                return
            self._redraw(extra=line)

    def _ensure_ticker(self) -> None:
        if self._ticker is None or not self._ticker.is_alive():
            self._ticker = threading.Thread(target=self._tick, name="wsm-env-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while True:
            time.sleep(self.REFRESH_SECONDS)
            with self._lock:
                if not self._active:
                    return
                self._redraw(extra=None)

    def _redraw(self, extra: Optional[str]) -> None:
        """Erase the block of live lines, print ``extra`` above it, draw the block again."""
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        out = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}F")  # to the start of the first live line
        out.append("\x1b[J")  # clear from there to the end of the screen
        if extra:
            out.append(extra + "\n")
        now = time.monotonic()
        for state in self._active.values():
            text = f"{self._prefix}{state.label}: {state.step} {now - state.started:.1f}s"
            if state.detail:
                text += f"  {state.detail}"
            out.append(text[:width] + "\n")
        self._drawn = len(self._active)
        self._stream.write("".join(out))
        self._stream.flush()


def console_reporter(stream: Optional[IO[str]] = None) -> BuildReporter:
    """Live display on a terminal, plain lines otherwise."""
    target = stream or sys.stderr
    try:
        tty = target.isatty()
    except (AttributeError, ValueError):
        tty = False
    return LiveReporter(target) if tty else PlainReporter(target)


def emit(
    reporter: BuildReporter,
    key: str,
    locations: Sequence[str],
    kind: str,
    text: str,
    started: float,
) -> None:
    """Send one event; a reporter that raises never breaks a build."""
    try:
        reporter.report(BuildEvent(key, tuple(locations), kind, text, time.monotonic() - started))
    except Exception:
        pass
