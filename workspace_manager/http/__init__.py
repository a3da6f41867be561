"""What the manager's HTTP address answers, independent of the server that carries it
(web/ serves it on Starlette and uvicorn):

- `routes.py`: /livez, /healthz, /readyz[/LOCATION], /status (SPEC section 5) as plain
  functions of (request, `ManagerView`); `metrics.py`: /metrics;
- `api.py`: the JSON API of SPEC section 7;
- `view.py`: the snapshot they answer from; `listen.py`: `--health HOST:PORT`;
- `exchange.py`: the request and response values the endpoint functions take.
"""

from __future__ import annotations

from workspace_manager.http.listen import format_address, parse_listen
from workspace_manager.http.view import LocationView, ManagerView

__all__ = ["LocationView", "ManagerView", "format_address", "parse_listen"]
