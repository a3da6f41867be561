"""Cancelling asyncio tasks so that they end, on every Python the manager runs on.

Before Python 3.12, `asyncio.wait_for` returns its inner result and drops a cancel that
arrives in the same loop turn as that result (gh-86296, fixed by 3.12's rewrite over
`asyncio.timeout`). A task cancelled at that moment runs on as if never asked: a location
would come `ready` during shutdown and be waited on forever. So a cancel here is repeated
until the task ends.
"""

from __future__ import annotations

import asyncio
from typing import Iterable

CANCEL_AGAIN_SECONDS = 0.5


async def cancel_and_wait(
    tasks: Iterable[asyncio.Future], again_seconds: float = CANCEL_AGAIN_SECONDS
) -> None:
    """Cancel every task and wait until all have ended, cancelling again each
    `again_seconds` (seconds) those that ignored it. Their results and exceptions are left
    on them, never raised here. A task that catches CancelledError for good still hangs this:
    that is a bug in the task, and the hang shows it."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_seconds)
