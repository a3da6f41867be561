"""Runs: spawning a run process (`process.py`), the queue's order and limits (`queue.py`),
the coordinator (`coordinator.py`) and `wsm job execute` (`execute.py`); docs/daemon.md."""
