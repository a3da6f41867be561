"""Location states (SPEC section 4) and the record of how a location moved between them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional


class State(str, enum.Enum):
    BUILDING = "building"  # its environment is being built
    STARTING = "starting"  # process spawned, loading code
    READY = "ready"
    ERROR = "error"  # the code or config is broken; not retried until it changes
    BACKOFF = "backoff"  # died, hung or overran memory; waiting to restart
    FAILED = "failed"  # restarted too often within the window
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


#: States a location can still leave on its own (the rest wait for a reload or shutdown).
ACTIVE = frozenset({State.BUILDING, State.STARTING, State.READY, State.BACKOFF})
#: States in which a location has settled for `wsm list` and for "starting" vs "degraded".
SETTLED = frozenset({State.READY, State.ERROR, State.FAILED, State.STOPPED})


@dataclass(frozen=True)
class Transition:
    at: float  # wall clock (time.time())
    old: Optional[State]
    new: State
    reason: str = ""

    def to_dict(self) -> dict:
        return {
            "at": self.at,
            "from": self.old.value if self.old else None,
            "to": self.new.value,
            "reason": self.reason,
        }
