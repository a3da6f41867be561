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
from workspace_manager.http.routes import Handler, default_routes, livez, readyz, readyz_location
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
        # which a probe at 500/s must not pay; /readyz reads each location's state only
        view = ctx.view
        reuse = False
        if handler is livez:
            view = _liveness(ctx)
        elif handler in (readyz, readyz_location) and ctx.readiness is not None:
            view = ctx.readiness
            reuse = handler is readyz
        prefix = len(path) if path.endswith("/") else None
        app = ProbeEndpoint(handler, view, prefix, reuse=reuse)
        out.append(Route(pattern, app))  # every method: the endpoint answers 405 itself
    return out


def _liveness(ctx: WebContext) -> Callable[[], ManagerView]:
    alive = ctx.alive
    if alive is None:
        return ctx.view
    return lambda: ManagerView(alive=alive(), started_at=0.0)


class ProbeEndpoint:
    """An ASGI app answering with one http/routes.py handler."""

    def __init__(
        self, handler: Handler, view: Callable[[], Any], prefix: Any, reuse: bool = False
    ) -> None:
        self.handler = handler
        self.view = view
        self.prefix = prefix  # length of a prefix route's path, or None
        # `reuse`: the answer depends on the view's `alive`, its locations and the query
        # only; while `view()` returns the same locations tuple (http/view.ReadinessViews:
        # nothing changed), the last answer to the same query is sent again. At 1,000
        # locations a /readyz answer is 1,000 lines, and a probe polls it.
        self.reuse = reuse
        self._last: Any = None  # (alive, locations, query, response)

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
            view = self.view()
            last = self._last
            if (
                self.reuse
                and last is not None
                and last[0] == view.alive
                and last[1] is view.locations
                and last[2] == query
            ):
                response = last[3]
            else:
                response = self.handler(request, view)
                if inspect.isawaitable(response):
                    response = await response
                assert isinstance(response, Response)
                if self.reuse:
                    self._last = (view.alive, view.locations, query, response)
        except Exception:
            log.exception("web: %s %s failed", request.method, path)
            response = text(500, "internal error\n")
        await asgi.send_whole(
            send, response.status, response.body, response.content_type, response.headers
        )
