"""The terminal colour (an ANSI SGR code) of each location state, run status and tick result.

A module of its own so that `wsm status` colours its table without importing the console,
which imports the whole manager (~160 ms).
"""

COLOURS = {
    "building": "36",
    "starting": "36",
    "ready": "32",
    "error": "31",
    "backoff": "33",
    "failed": "31;1",
    "stopped": "2",
    # runs and ticks
    "queued": "2",
    "started": "36",
    "success": "32",
    "failure": "31",
    "canceling": "33",
    "canceled": "33",
    "skipped": "2",
}
