"""The probe endpoints of SPEC section 5 (`/livez`, `/healthz`, `/readyz[/NAME]`, `/status`)
and `/metrics`, as Starlette routes over the plain functions of http/routes.py and
http/metrics.py. Each is a bare ASGI app: under a flood of 1,000 probes the cost per
request is the answer itself."""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable, List

from workspace_manager.http.exchange import TEXT, Request, Response, text
from workspace_manager.http.metrics import metrics_route
from workspace_manager.http.routes import Handler, default_routes, livez
from workspace_manager.http.view import ManagerView
from workspace_manager.web import asgi
from workspace_manager.web.context import WebContext

log = logging.getLogger(__name__)

METHODS = ["GET", "HEAD"]


def routes(ctx: WebContext) -> List[Any]:
    """One Starlette Route per probe; a table key ending in `/` takes every path under it
    and hands the rest to its handler as `request.subpath` (still percent-encoded)."""
    from starlette.routing import Route

    table = default_routes()
    if ctx.exposition is not None:
        table["/metrics"] = metrics_route(ctx.exposition)
    out = []
    for path, handler in table.items():
        pattern = path + "{subpath:path}" if path.endswith("/") else path
        # /livez looks at nothing but the loop: at 100 locations a whole view costs ~5 ms,
        # which a probe at 500/s must not pay
        view = _liveness(ctx) if handler is livez else ctx.view
        app = ProbeEndpoint(handler, view, len(path) if path.endswith("/") else None)
        out.append(Route(pattern, app))  # every method: the endpoint answers 405 itself
    return out


def _liveness(ctx: WebContext) -> Callable[[], ManagerView]:
    alive = ctx.alive
    if alive is None:
        return ctx.view
    return lambda: ManagerView(alive=alive(), started_at=0.0)


class ProbeEndpoint:
    """An ASGI app answering with one http/routes.py handler."""

    def __init__(self, handler: Handler, view: Callable[[], Any], prefix: Any) -> None:
        self.handler = handler
        self.view = view
        self.prefix = prefix  # length of a prefix route's path, or None

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if scope["method"] not in METHODS:
            # Starlette's own 405 lists the methods in set order, which varies by run
            allow = (("Allow", ", ".join(METHODS)),)
            await asgi.send_whole(send, 405, b"method not allowed\n", TEXT, allow)
            return
        path = asgi.raw_path(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        request = Request(
            method=scope["method"],
            target=path + ("?" + query if query else ""),
            version="HTTP/" + scope.get("http_version", "1.1"),
            path=path,
            query=asgi.query(scope),
            headers=asgi.headers(scope),
            subpath=path[self.prefix :] if self.prefix is not None else "",
            peer=asgi.peer(scope),
        )
        try:
            response = self.handler(request, self.view())
            if inspect.isawaitable(response):
                response = await response
            assert isinstance(response, Response)
        except Exception:
            log.exception("web: %s %s failed", request.method, path)
            response = text(500, "internal error\n")
        await asgi.send_whole(
            send, response.status, response.body, response.content_type, response.headers
        )
