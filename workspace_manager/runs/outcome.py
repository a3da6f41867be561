"""How a run ended, from what its process said and how it exited: a pure function.

The run process reports `success` or `failure` on its status socket before it exits
(runner/main.py). An exit with neither (a signal, `os._exit`, a segfault, the OOM killer) is a
FAILURE naming the exit. A run the manager was stopping ends CANCELED with the reason it
was stopped for, whatever it said, as Dagster's run cancellation does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from workspace_manager.storage.records import CANCELED, FAILURE, SUCCESS
from workspace_manager.supervisor.process import describe_exit


@dataclass(frozen=True)
class Outcome:
    """The final status of a run and the fields of its record that say why."""

    status: str
    message: str  # the status event's message, one line
    error: Optional[str] = None
    traceback: Optional[str] = None
    exit_code: Optional[int] = None
    signal: Optional[int] = None

    def fields(self) -> Dict[str, Any]:
        """The RunRecord fields to store with the status."""
        return {
            "error": self.error,
            "traceback": self.traceback,
            "exit_code": self.exit_code,
            "signal": self.signal,
        }


def outcome(
    returncode: Optional[int],
    final_event: Optional[Dict[str, Any]],
    cancel_reason: Optional[str] = None,
) -> Outcome:
    """`returncode`: the process's (negative: killed by that signal; None: never started);
    `final_event`: its `success` or `failure` event, if it sent one; `cancel_reason`: why
    the manager stopped it, if it did."""
    exit_code = returncode if returncode is not None and returncode >= 0 else None
    sig = -returncode if returncode is not None and returncode < 0 else None
    if cancel_reason is not None:
        return Outcome(
            CANCELED, cancel_reason, error=cancel_reason, exit_code=exit_code, signal=sig
        )
    kind = (final_event or {}).get("event")
    if kind == "success" and returncode == 0:
        return Outcome(SUCCESS, "the job succeeded", exit_code=0)
    if kind == "failure":
        error = final_event.get("error") if isinstance(final_event, dict) else None
        error = error if isinstance(error, dict) else {}
        message = " ".join(str(error.get("message") or "the job failed").split())
        stage = final_event.get("stage") if isinstance(final_event, dict) else None
        if stage == "load":
            message = f"the job could not be loaded: {message}"
        return Outcome(
            FAILURE,
            message,
            error=message,
            traceback=error.get("traceback") or None,
            exit_code=exit_code,
            signal=sig,
        )
    exit_text = describe_exit(returncode)
    if exit_text.startswith("killed"):
        exit_text = "was " + exit_text
    if kind == "success":  # said so, then exited badly (an atexit hook, a killed flush)
        what = f"the job returned, then its process {exit_text}"
    else:
        what = f"the run's process {exit_text}"
        if returncode is not None and returncode < 0:
            what += " before the job finished"
    return Outcome(FAILURE, what, error=what, exit_code=exit_code, signal=sig)
