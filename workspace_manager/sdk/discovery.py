"""Find the repositories an imported module defines (the `attribute` rule of workspace.yaml)."""

from __future__ import annotations

from .definitions import Definitions
from .errors import DefinitionError
from .repository import RepositoryDefinition

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from types import ModuleType
    from typing import List, Optional, Tuple


def find_repositories(
    module: ModuleType, attribute: Optional[str] = None
) -> List[RepositoryDefinition]:
    """With `attribute`: that one repository. Without: every module-level repository.

    A repository is a `@repository` or a module-level `Definitions(...)`, which becomes a
    repository named after its attribute (`defs = Definitions(...)`: repository "defs").
    Module-level repositories come in definition order; one object bound to two
    names counts once. Two repositories sharing a name cannot be told apart by
    callers, so that is a DefinitionError too. Messages name the module and its file.
    """
    where = _describe(module)
    if attribute is not None:
        if not hasattr(module, attribute):
            found = _module_repositories(module)
            known = ", ".join(name for name, _ in found) or "none"
            raise DefinitionError(
                f"{where} has no attribute {attribute!r} (repositories defined there: {known})"
            )
        value = getattr(module, attribute)
        if isinstance(value, Definitions):
            return [value.to_repository(attribute)]
        if not isinstance(value, RepositoryDefinition):
            raise DefinitionError(
                f"{attribute!r} in {where} is {value!r}, not a repository "
                "(decorate the function with @repository, or assign a Definitions(...))"
            )
        return [value]
    repositories = [repo for _, repo in _module_repositories(module)]
    if not repositories:
        raise DefinitionError(
            f"no repository found in {where} (define a @repository or a Definitions(...))"
        )
    seen = {}
    for repo in repositories:
        if repo.name in seen:
            raise DefinitionError(
                f"{where} defines two repositories named {repo.name!r}; "
                "give one another name with @repository(name=...)"
            )
        seen[repo.name] = repo
    return repositories


def _module_repositories(module: ModuleType) -> List[Tuple[str, RepositoryDefinition]]:
    found = []
    ids = set()
    for name, value in list(vars(module).items()):
        if isinstance(value, (RepositoryDefinition, Definitions)) and id(value) not in ids:
            ids.add(id(value))
            repo = value.to_repository(name) if isinstance(value, Definitions) else value
            found.append((name, repo))
    return found


def _describe(module: ModuleType) -> str:
    name = getattr(module, "__name__", repr(module))
    path = getattr(module, "__file__", None)
    return f"module {name!r} ({path})" if path else f"module {name!r}"
