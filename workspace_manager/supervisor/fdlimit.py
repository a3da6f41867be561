"""The manager's open-file limit: raised to the hard limit at start, and the user's own soft
limit given back to every process it starts.

A location costs the manager about six descriptors (stdout and stderr pipes, the status
socket, a pidfd, the RPC connection, its log file), so 1,000 locations need ~6,000: more
than the soft limit of 1,024 most systems give. getrlimit(2): an unprivileged process may
raise its soft limit up to the hard one. The soft limit stays low by default because
select(2) cannot watch a descriptor above 1,023 (systemd.exec(5), "LimitNOFILE="): the
manager never uses select, but a location's code might, so each child gets the limit it
would have had (prlimit(2) on the new process, before its bootstrap line lets user code run;
a preexec function would cost Popen its vfork path).
"""

from __future__ import annotations

import resource
from typing import Optional, Tuple

#: The soft and hard limits found before `raise_to_hard` raised them; None until it did.
_original: Optional[Tuple[int, int]] = None


def raise_to_hard() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force
    (unchanged when it cannot be raised)."""
    global _original
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 1024
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        return soft
    if _original is None:
        _original = (soft, hard)
    return hard


def restore_for(pid: int) -> None:
    """Give process `pid` (a child just started) the soft limit the manager started with,
    if `raise_to_hard` changed it. Never raises: a child that keeps the higher limit is
    no worse off than the manager."""
    if _original is None:
        return
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, _original)  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        pass
