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
- `message`: the manager speaking: `message`;
- `run`: a run changed status: `run_id`, `job`, `repository`, `status` (the new status in
  lower case: `queued`, `starting`, `started`, `success`, `failure`, `canceling`,
  `canceled`), `origin` (who launched it), `attempt`, `pid`, and once final
  `duration_seconds`, `exit_code`, `signal`, `error`;
- `tick`: a schedule or sensor was evaluated: `kind`, `name`, `result` (`success`,
  `skipped`, `failure`), `tick_time`, `run_ids`, `run_keys_skipped`, `skip_reason`, `error`.

The text console prints every run change and every tick that launched runs; a `skipped` or
`failure` tick only when its reason (a failure: its error's first line) differs from that
instigator's previous tick, so a sensor skipping or failing every 30 seconds does not drown
the console (the JSON lines and `wsm sensor ticks` have every one).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, Optional, TextIO, Tuple, Union

from workspace_manager.cli.colours import COLOURS
from workspace_manager.cli.table import pad
from workspace_manager.cli.table import width as text_width
from workspace_manager.envs.progress import (
    BuildEvent,
    BuildReporter,
    LiveReporter,
    console_reporter,
)
from workspace_manager.supervisor.manager import EventSink, one_line
from workspace_manager.supervisor.state import State, Transition

LOG_FORMATS = ("text", "json")
#: The kind column of run and tick lines: `run`, `sensor`, `schedule`.
KIND = len("schedule")
#: States whose console line points to `wsm logs NAME` (the traceback is kept there).
FAILURES = frozenset({State.ERROR, State.BACKOFF, State.FAILED})


class Console:
    def __init__(self, stream: Optional[TextIO] = None, show_output: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.show_output = show_output
        self._width = 0
        self._live: Optional[BuildReporter] = None
        self._skips: Dict[Tuple[str, str, str], Tuple[str, str]] = {}  # what each said last
        #: where a failed location's traceback and output are, for its console line: `wsm
        #: logs NAME` for `wsm up`; `wsm serve` (which `wsm logs` cannot name) gives the file
        self.logs_hint: Callable[[str], str] = lambda name: f"`wsm logs {name}`"

    def sink(self) -> EventSink:
        return EventSink(
            transition=self.transition,
            output=self.output,
            message=self.message,
            run=self.run,
            tick=self.tick,
        )

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
        self._width = max([self._width, *(text_width(n) for n in names)])

    def _name(self, name: str) -> str:
        """The location column: padded to the longest name in terminal columns (a wide
        character takes two), so what follows lines up."""
        return pad(name, self._width)

    def transition(self, name: str, t: Transition) -> None:
        """One line per change; a failure says where its traceback and output are."""
        state = t.new.value
        label = self._paint(f"{state:<8}", COLOURS.get(state, "0"))
        reason = f"  {one_line(t.reason)}" if t.reason else ""
        if t.new in FAILURES:
            reason += f" (see {self.logs_hint(name)})"
        self._emit(f"{self._name(name)}  {label}{reason}")

    def output(self, name: str, stream: str, line: bytes) -> None:
        if not self.show_output:
            return
        self._emit(f"{self._name(name)} | {printable(line)}")

    def message(self, text: str) -> None:
        self._emit(f"wsm: {text}")

    def run(self, record: Any, event: str) -> None:
        """`team_a  run       failure    0f3c12ab my_job  in 1.50s  ValueError: boom (see
        `wsm run show 0f3c12ab`)`: kind and event in columns of their own, so every run and
        tick line of a location lines up whatever its job's or instigator's name."""
        short = str(record.run_id)[:8]
        label = self._paint(f"{event:<9}", COLOURS.get(event, "0"))
        detail = ""
        if event == "queued":
            detail = f"  ({run_origin_words(record.origin)})"
        elif event == "started" and record.pid is not None:
            detail = f"  pid {record.pid}"
        elif event in ("success", "failure", "canceled"):
            took = run_seconds(record)
            detail = f"  in {took:.2f}s" if took is not None else ""
            if record.error:
                detail += f"  {one_line(record.error)}"
            if event == "failure":
                detail += f" (see `wsm run show {short}`)"
        line = (
            f"{self._name(record.location)}  {'run':<{KIND}}  {label}  {short} {record.job}{detail}"
        )
        self._emit(line.rstrip())

    def tick(self, tick: Any) -> None:
        """`team_a  sensor    success    watch  launched 2 runs: 0f3c12ab, 77aa01bc`. A skipped or
        failed tick that says what the instigator's previous one said is not printed again."""
        key = (tick.location, tick.kind, tick.name)
        if tick.status == "skipped":
            reason = tick.skip_reason or (
                f"{len(tick.run_keys_skipped)} run key(s) used before"
                if tick.run_keys_skipped
                else None
            )
            detail = one_line(reason) if reason else ""
        elif tick.status == "failure":
            # the error's first line; its traceback is in `wsm sensor|schedule ticks --json`
            first = (tick.error or "").strip().splitlines()[:1]
            detail = one_line(first[0] if first else "")
            detail += f" (see `wsm {tick.kind} ticks {tick.name} --json`)"
        else:
            runs = list(tick.run_ids)
            detail = f"launched {len(runs)} run{'' if len(runs) == 1 else 's'}"
            if runs:
                detail += ": " + ", ".join(r[:8] for r in runs[:5])
                detail += ", ..." if len(runs) > 5 else ""
        said = (tick.status, detail)
        if tick.status in ("skipped", "failure") and self._skips.get(key) == said:
            return
        self._skips[key] = said
        label = self._paint(f"{tick.status:<9}", COLOURS.get(tick.status, "0"))
        self._emit(
            f"{self._name(tick.location)}  {tick.kind:<{KIND}}  {label}  {tick.name}  {detail}".rstrip()
        )


def run_origin_words(origin: Any) -> str:
    """Who launched a run, briefly: `manual by alice`, `schedule nightly`, `retry 2`."""
    origin = origin if isinstance(origin, dict) else {}
    kind = origin.get("kind") or "?"
    if kind in ("schedule", "sensor"):
        return f"{kind} {origin.get('name')}"
    if kind == "retry":
        return f"retry {origin.get('attempt')} of {str(origin.get('parent_run_id'))[:8]}"
    user = origin.get("user")
    if user:
        return f"{kind} by {user}"
    return f"{kind} via {origin['via']} from {origin.get('peer')}" if origin.get("via") else kind


def run_seconds(record: Any) -> Optional[float]:
    """From the run process's start to its end, in seconds; None until both are known."""
    start = record.start_time if record.start_time is not None else record.started_at
    if start is None or record.ended_at is None:
        return None
    return max(record.ended_at - start, 0.0)


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
        return EventSink(
            transition=self.transition,
            output=self.output,
            message=self.message,
            run=self.run,
            tick=self.tick,
        )

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

    def run(self, record: Any, event: str) -> None:
        fields: Dict[str, Any] = {
            "run_id": record.run_id,
            "job": record.job,
            "repository": record.repository,
            "status": event,
            "origin": record.origin,
            "attempt": record.attempt,
            "pid": record.pid,
        }
        if record.status in ("SUCCESS", "FAILURE", "CANCELED"):
            took = run_seconds(record)
            fields["duration_seconds"] = round(took, 3) if took is not None else None
            fields.update(exit_code=record.exit_code, signal=record.signal, error=record.error)
        self._write(self._clock(), "run", record.location, fields)

    def tick(self, tick: Any) -> None:
        fields = {
            "kind": tick.kind,
            "name": tick.name,
            "result": tick.status,
            "tick_id": tick.tick_id,
            "tick_time": iso_utc(tick.tick_time),
            "run_ids": list(tick.run_ids),
            "run_keys_skipped": list(tick.run_keys_skipped),
            "skip_reason": tick.skip_reason,
            "error": tick.error,
        }
        self._write(self._clock(), "tick", tick.location, fields)

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
