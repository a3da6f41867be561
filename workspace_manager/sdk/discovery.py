"""Find the repositories an imported module defines (the `attribute` rule of workspace.yaml)."""

from __future__ import annotations

from types import ModuleType
from typing import List, Optional

from .errors import DefinitionError
from .repository import RepositoryDefinition


def find_repositories(
    module: ModuleType, attribute: Optional[str] = None
) -> List[RepositoryDefinition]:
    """With `attribute`: that one repository. Without: every module-level repository.

    Module-level repositories come in definition order; one object bound to two
    names counts once. Two repositories sharing a name cannot be told apart by
    callers, so that is a DefinitionError too.
    """
    module_name = getattr(module, "__name__", repr(module))
    if attribute is not None:
        if not hasattr(module, attribute):
            found = _module_repositories(module)
            known = ", ".join(name for name, _ in found) or "none"
            raise DefinitionError(
                f"module {module_name!r} has no attribute {attribute!r} "
                f"(repositories defined there: {known})"
            )
        value = getattr(module, attribute)
        if not isinstance(value, RepositoryDefinition):
            raise DefinitionError(
                f"{module_name}.{attribute} is {value!r}, not a repository "
                "(decorate the function with @repository)"
            )
        return [value]
    repositories = [repo for _, repo in _module_repositories(module)]
    if not repositories:
        raise DefinitionError(f"no repository found in module {module_name!r}")
    seen = {}
    for repo in repositories:
        if repo.name in seen:
            raise DefinitionError(
                f"module {module_name!r} defines two repositories named {repo.name!r}; "
                "give one another name with @repository(name=...)"
            )
        seen[repo.name] = repo
    return repositories


def _module_repositories(module: ModuleType) -> List[tuple]:
    found = []
    ids = set()
    for name, value in list(vars(module).items()):
        if isinstance(value, RepositoryDefinition) and id(value) not in ids:
            ids.add(id(value))
            found.append((name, value))
    return found
