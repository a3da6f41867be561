"""What the web side may read of and ask from the manager: one object, built by the manager.

Every field is cheap to call on the event loop and never waits on a location."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Tuple

if TYPE_CHECKING:
    from workspace_manager.http.api import Api
    from workspace_manager.http.view import ManagerView


@dataclass
class WebContext:
    """`view()`: the manager's latest `ManagerView` (locations, daemon counts); it costs
    tens of microseconds a location. `alive()`: whether the supervision loop is alive, all
    `/livez` needs (None: read from `view()`). `readiness()`: a view whose locations carry
    only what `/readyz` reads, the same tuple while nothing changed (None: `view()`).
    `api`: the JSON API's handlers (`http/api.Api`), which the pages read through too; None
    where the manager keeps no runs (`wsm serve`): the API then answers 503.
    `hub`: the live event hub (`web/events.EventHub`); None: no `/api/events`.
    `exposition(accept)`: (body, content type) of `/metrics`, encoded off the loop; None: no
    `/metrics`.
    `api_token`: the token of `wsm up --api-token-env VAR`, or None.
    `secret`: random bytes of this manager's life, keying the pages' per-session tokens."""

    view: Callable[[], ManagerView]
    alive: Optional[Callable[[], bool]] = None
    readiness: Optional[Callable[[], ManagerView]] = None
    api: Optional[Api] = None
    hub: Any = None
    exposition: Optional[Callable[[str], Awaitable[Tuple[bytes, str]]]] = None
    api_token: Optional[str] = None
    secret: bytes = b""
