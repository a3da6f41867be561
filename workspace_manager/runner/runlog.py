"""The run's `context.log`: a `logging.Logger` whose records become `log` events on the
run's status channel (docs/daemon.md).

Its own module, imported only when a job first reads `context.log` (runner/main.py hands
the SDK a function that makes it): `logging` brings `traceback`, `re` and more, ~10 ms of
a run process's start that a job which never logs need not pay.
"""

from __future__ import annotations

import logging

from .events import Channel


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
    if not logger.handlers:  # two threads may read `context.log` first at once
        logger.addHandler(EventHandler(channel))
    return logger
