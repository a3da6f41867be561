"""The health endpoint: /livez, /healthz, /readyz[/LOCATION], /status (SPEC section 5).

The manager builds a `ManagerView` snapshot on its event loop and runs a
`HealthServer` on the same loop; `parse_listen` reads `--health HOST:PORT`.
"""

from __future__ import annotations

from workspace_manager.http.listen import format_address, parse_listen
from workspace_manager.http.server import HealthServer
from workspace_manager.http.view import LocationView, ManagerView

__all__ = ["HealthServer", "LocationView", "ManagerView", "format_address", "parse_listen"]
