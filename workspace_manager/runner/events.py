"""The run's events to the manager: framed msgpack maps on the status socket, and the
`logging.Handler` that turns `context.log` records into `log` events (docs/daemon.md)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Optional

from ..loader import lifeline


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


class EventHandler(logging.Handler):
    """Every record of the run's logger becomes a `log` event (its level name and its
    formatted message, with the traceback of `log.exception`)."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(logging.DEBUG)
        self.channel = channel
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            self.channel.send("log", time=record.created, level=record.levelname, message=message)
        except Exception:
            self.handleError(record)


def run_logger(run_id: str, channel: Channel) -> logging.Logger:
    """The run's own `context.log`: level DEBUG, its records go to the run's log only (not
    to the root logger, whose handlers the user's code may have pointed at stderr: those
    lines would be kept twice)."""
    logger = logging.getLogger(f"wsm.run.{run_id}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(EventHandler(channel))
    return logger
