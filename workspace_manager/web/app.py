"""The one ASGI application on the manager's HTTP address (SPEC sections 5, 7 and 8)."""

from __future__ import annotations

from typing import Any

from workspace_manager.web import api_routes, pages, probes, sse, ws
from workspace_manager.web.context import WebContext
from workspace_manager.web.feed import StreamCount


def build_app(ctx: WebContext) -> Any:
    """A Starlette app: the probes and /metrics, the event stream (`/api/events`, SSE, and
    `/api/events/ws`, WebSocket), the JSON API under /api/, the pages; an unknown path
    is a plain-text 404, as it was for probes and curl."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse

    async def not_found(request: Any, exc: Any) -> Any:
        return PlainTextResponse("404 page not found\n", status_code=404)

    streams = StreamCount()  # SSE and WebSocket streams share one cap
    routes = [
        *probes.routes(ctx),
        *sse.routes(ctx, streams),
        *ws.routes(ctx, streams),
        *api_routes.routes(ctx),
        *pages.routes(ctx),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.router.redirect_slashes = False  # `/status/` is not `/status`: a 404, not a redirect
    return app
