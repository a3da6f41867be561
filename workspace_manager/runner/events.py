"""The run's events to the manager: framed msgpack maps on the status socket, and the
`sys.stdout` and `sys.stderr` that turn the job's prints into `output` events
(docs/daemon.md). `context.log`'s records: runner/runlog.py."""

from __future__ import annotations

import io
import socket
import threading
import time

from ..loader import lifeline

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, List, Optional, TextIO


class Channel:
    """The status socket. `send` may be called from any thread (a job logging from worker
    threads): one frame is written whole before the next starts."""

    def __init__(self, sock: Optional[socket.socket]) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def send(self, event: str, **fields: Any) -> None:
        """Send `{"event": event, "time": now, **fields}`; a manager that is gone is not
        an error here (the lifeline thread acts on that)."""
        message = {"event": event, "time": time.time()}
        message.update(fields)
        with self._lock:
            lifeline.send(self.sock, message)


#: The longest text in one `output` event (characters; at most 4 bytes each in UTF-8).
OUTPUT_EVENT_CHARS = 65536


class OutputStream(io.TextIOBase):
    """The job's `sys.stdout` or `sys.stderr`: each line written becomes an `output` event
    (`stream`, `text`, `time` of the write) on the same channel as `context.log`'s records,
    so the run's log keeps the order the job wrote them in (two pipes read by the manager
    cannot). What bypasses Python's `sys.stdout` (a child process, C code, `.buffer`,
    `os.write` to the fd) still goes to the pipe, stamped when the manager reads it. A
    partial line goes out when flushed (or at exit: `lifeline.exit_now` flushes)."""

    def __init__(self, channel: Channel, name: str, original: TextIO) -> None:
        super().__init__()
        self._channel = channel
        self._name = name
        self._original = original
        self._partial: List[str] = []
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", None) or "utf-8"

    @property
    def errors(self) -> Optional[str]:  # type: ignore[override]
        return getattr(self._original, "errors", None)

    @property
    def buffer(self) -> Any:
        return self._original.buffer

    @property
    def name(self) -> str:
        return f"<{self._name}>"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            *lines, rest = text.split("\n")
            if lines:
                lines[0] = "".join(self._partial) + lines[0]
                self._partial = []
            if rest:
                self._partial.append(rest)
            for line in lines:
                self._send(line)
        return len(text)

    def _send(self, line: str) -> None:
        # a huge line in several events: one event must stay far below the channel's limit
        for start in range(0, max(len(line), 1), OUTPUT_EVENT_CHARS):
            self._channel.send(
                "output", stream=self._name, text=line[start : start + OUTPUT_EVENT_CHARS]
            )

    def flush(self) -> None:
        with self._lock:
            if self._partial:
                line, self._partial = "".join(self._partial), []
                self._send(line)


def capture_output(channel: Channel) -> None:
    """Make `sys.stdout` and `sys.stderr` OutputStreams on `channel` (a run with a
    manager to send to)."""
    import sys

    sys.stdout = OutputStream(channel, "stdout", sys.stdout)
    sys.stderr = OutputStream(channel, "stderr", sys.stderr)
