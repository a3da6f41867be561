"""`@job`: a plain function the location can run on request (`execute_job`)."""

from __future__ import annotations

from .callables import getdoc
from .context import JobContext, call, wants_context
from .errors import DefinitionError
from .values import check_description, check_name, check_tags, plain_config

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    import logging
    from typing import Any, Callable, Dict, Mapping, Optional, Union


class JobDefinition:
    """A named job. Calling it calls the wrapped function, which keeps it unit-testable."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: Optional[str] = None,
        description: Optional[str] = None,
        tags: Optional[Mapping[str, Any]] = None,
    ) -> None:
        if isinstance(fn, JobDefinition):
            raise DefinitionError(f"{fn!r} is already a job; apply @job once")
        if not callable(fn):
            raise DefinitionError(f"@job expects a function, got {fn!r}")
        self.name: str = check_name(name if name is not None else _fn_name(fn), "job")
        owner = f"job {self.name!r}"
        self.fn = fn
        self.description: Optional[str] = check_description(
            description if description is not None else getdoc(fn), owner
        )
        self.tags: Dict[str, str] = check_tags(tags, owner)
        self.takes_context: bool = wants_context(fn, owner)
        self.__doc__ = getattr(fn, "__doc__", None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def execute(
        self,
        run_config: Optional[Mapping[str, Any]] = None,
        *,
        run_id: Optional[str] = None,
        tags: Optional[Mapping[str, str]] = None,
        log: Optional[Union[logging.Logger, Callable[[], logging.Logger]]] = None,
    ) -> Any:
        """Run the job's function once, with a JobContext carrying `run_config`, and the
        run's id, tags and logger when a run process gives them (else a fresh id, the
        job's own tags and the logger ``wsm.job.<name>``; `log` may be a function that
        makes the logger when the job first uses it: see JobContext). Returns what the function
        returns; raises what it raises, and DefinitionError for a run_config that is not
        a plain dict."""
        config = plain_config(run_config, f"job {self.name!r}")
        context = JobContext(
            self.name,
            config,
            run_id=run_id,
            tags={**self.tags, **dict(tags or {})},
            log=log,
        )
        return call(self.fn, self.takes_context, context)

    def __repr__(self) -> str:
        return f"<JobDefinition {self.name!r}>"


def job(
    fn: Optional[Callable[..., Any]] = None,
    *,
    name: Optional[str] = None,
    description: Optional[str] = None,
    tags: Optional[Mapping[str, Any]] = None,
) -> Any:
    """Make a job: bare `@job`, or `@job(name=..., description=..., tags=...)`."""
    if fn is not None:
        if not callable(fn):
            raise DefinitionError(f"@job: expected a function, got {fn!r}; use @job(name=...)")
        return JobDefinition(fn, name=name, description=description, tags=tags)

    def decorate(inner: Callable[..., Any]) -> JobDefinition:
        return JobDefinition(inner, name=name, description=description, tags=tags)

    return decorate


def _fn_name(fn: object) -> str:
    return getattr(fn, "__name__", None) or repr(fn)
