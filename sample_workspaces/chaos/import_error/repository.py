"""(a) Raises while being imported: the location goes to `error` with this message and the
traceback, and is not retried until its code or config changes or `wsm reload`."""

from workspace_manager import job, repository

raise RuntimeError("chaos: this repository is broken on purpose")


@job
def never_defined(): ...


@repository
def import_error():
    return [never_defined]
