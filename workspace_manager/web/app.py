"""The one ASGI application on the manager's HTTP address (SPEC sections 5, 7 and 8)."""

from __future__ import annotations

from typing import Any

from workspace_manager.web import api_routes, pages, probes, sse
from workspace_manager.web.context import WebContext


def build_app(ctx: WebContext) -> Any:
    """A Starlette app: the probes and /metrics, the JSON API under /api/; an unknown path
    is a plain-text 404, as it was for probes and curl."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse

    async def not_found(request: Any, exc: Any) -> Any:
        return PlainTextResponse("404 page not found\n", status_code=404)

    routes = [*probes.routes(ctx), *sse.routes(ctx), *api_routes.routes(ctx), *pages.routes(ctx)]
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.router.redirect_slashes = False  # `/status/` is not `/status`: a 404, not a redirect
    return app
