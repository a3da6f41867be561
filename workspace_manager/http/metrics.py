"""GET /metrics: the Prometheus exposition, in the format the scraper's Accept header asks for.

The body comes from the manager's `ManagerMetrics.exposition_async`, which snapshots the
manager's own state on the loop and encodes it in a worker thread, so this route, like the
others, never waits on a location and never stalls the loop:

    table["/metrics"] = metrics_route(manager.metrics.exposition_async)  # web/probes.py
"""

from __future__ import annotations

from typing import Awaitable, Callable, Tuple

from workspace_manager.http.exchange import Request, Response
from workspace_manager.http.routes import Handler
from workspace_manager.http.view import ManagerView

#: Accept header -> (body, content type)
Exposition = Callable[[str], Awaitable[Tuple[bytes, str]]]


def metrics_route(exposition: Exposition) -> Handler:
    async def metrics(request: Request, view: ManagerView) -> Response:
        body, content_type = await exposition(", ".join(request.header_values("accept")))
        return Response(200, body, content_type)

    return metrics
