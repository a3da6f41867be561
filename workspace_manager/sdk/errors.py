"""The two exceptions the SDK raises itself; anything else comes from repository code."""

from __future__ import annotations


class DefinitionError(Exception):
    """Repository code declared something invalid (bad name, cron string, duplicate, ...).

    Raised at load time wherever possible, so a broken repository fails when it is
    imported rather than on its first sensor tick.
    """


class NotFoundError(LookupError):
    """A repository, job, schedule or sensor asked for by name does not exist."""
