"""Stopping a service's running installers at once (a manager shutting down never waits for
a long pip run). Its own module so that a manager that builds nothing imports none of the
build machinery (filelock alone is ~10 ms) to hold one."""

from __future__ import annotations

import subprocess
import threading
from typing import Set


class Cancel:
    """Shared by a service's builds: `cancel()` stops running installers (and their children)
    so a shutting-down manager never waits for a long pip run."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._procs: Set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def track(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)
        if self.event.is_set():
            self._kill(proc)

    def untrack(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def cancel(self) -> None:
        self.event.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            self._kill(proc)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        import psutil

        try:
            victims = [psutil.Process(proc.pid)]
            victims += victims[0].children(recursive=True)
        except psutil.Error:
            return
        for victim in victims:
            try:
                victim.kill()
            except psutil.Error:
                pass
