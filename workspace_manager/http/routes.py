"""The endpoints: pure functions of (request, snapshot) -> response.

Routes are a dict from path to handler; a key ending in "/" matches every path
under it and hands the rest to the handler as `request.subpath`. Adding an
endpoint (e.g. `/metrics`) is one entry:

    routes = default_routes()
    routes["/metrics"] = metrics_handler

The text endpoints follow Kubernetes' /livez and /readyz: `ok` when healthy; on
failure, or with `?verbose`, one `[+]name ok` / `[-]name ...` line per check and
then `readyz check passed` / `readyz check failed`.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Awaitable, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import unquote

from workspace_manager.http.exchange import JSON, Request, Response, text
from workspace_manager.http.view import LocationView, ManagerView, status_document

#: A handler answers at once, or returns an awaitable (a route that does its work off the
#: loop, like /metrics); either way it must not wait on a location.
Handler = Callable[[Request, ManagerView], Union[Response, Awaitable[Response]]]

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")
_MAX_REASON = 300
_LOOP_DOWN = "the manager's supervision loop is not running"


def default_routes() -> Dict[str, Handler]:
    return {
        "/livez": livez,
        "/healthz": livez,
        "/readyz": readyz,
        "/readyz/": readyz_location,
        "/status": status,
    }


def resolve(routes: Dict[str, Handler], path: str) -> Optional[Tuple[Handler, str]]:
    """The handler for `path` and the subpath after its prefix; None when nothing matches."""
    handler = routes.get(path)
    if handler is not None:
        return handler, ""
    best = ""
    for key in routes:
        if key.endswith("/") and path.startswith(key) and len(path) > len(key) > len(best):
            best = key
    return (routes[best], path[len(best) :]) if best else None


def livez(request: Request, view: ManagerView) -> Response:
    """Alive while the manager's own loop is; never looks at a location."""
    name = request.path.strip("/")
    if view.alive:
        line = "[+]supervisor ok"
    else:
        line = f"[-]supervisor failed: {_LOOP_DOWN}"
    return _checks(name, [(view.alive, line)], _verbose(request))


def readyz(request: Request, view: ManagerView) -> Response:
    verbose = _verbose(request)
    if view.alive and not verbose and all(loc.ready for loc in view.locations):
        return text(200, "ok")  # no line per location to make
    checks: List[Tuple[bool, str]] = []
    if not view.alive:
        # The snapshot is stale once the loop is gone: never report it as ready.
        checks.append((False, f"[-]supervisor failed: {_LOOP_DOWN}"))
    checks.extend((loc.ready, _location_line(loc)) for loc in view.locations)
    return _checks("readyz", checks, verbose)


def readyz_location(request: Request, view: ManagerView) -> Response:
    name = unquote(request.subpath)
    loc = view.location(name)
    if loc is None:
        return text(404, f"no location named {_one_line(name)!r}\n")
    if not view.alive:
        return text(503, f"{_LOOP_DOWN}\n")
    if loc.ready:
        return text(200, "ok")
    return text(503, _state_reason(loc) + "\n")


def status(request: Request, view: ManagerView) -> Response:
    """Everything the manager knows, as JSON; always 200 (it is a report, not a probe). The
    same document as `wsm status --json` (`status_document`).

    Compact by default: json's C encoder is 7x faster than its indenting one, which matters
    to a monitor polling many managers; `?pretty` indents it for a human with curl."""
    body = status_document(view, time.time())
    indent = 2 if _flag(request, "pretty") else None
    data = json.dumps(body, indent=indent, allow_nan=False) + "\n"
    return Response(200, data.encode("utf-8"), JSON)


def _checks(name: str, checks: List[Tuple[bool, str]], verbose: bool) -> Response:
    """Kubernetes' answer: `ok`, or the per-check lines and a verdict (always on failure)."""
    passed = all(ok for ok, _ in checks)
    if passed and not verbose:
        return text(200, "ok")
    lines = [line for _, line in checks]
    lines.append(f"{name} check {'passed' if passed else 'failed'}")
    return text(200 if passed else 503, "\n".join(lines) + "\n")


def _verbose(request: Request) -> bool:
    return _flag(request, "verbose")


def _flag(request: Request, name: str) -> bool:
    """`?name`, `?name=1`: on; absent, `?name=0|false|no`: off."""
    values = request.query.get(name)
    return values is not None and values[-1].lower() not in ("0", "false", "no")


def _location_line(loc: LocationView) -> str:
    if loc.ready:
        return f"[+]{_one_line(loc.name)} ok"
    return f"[-]{_one_line(loc.name)} {_state_reason(loc)}"


def _state_reason(loc: LocationView) -> str:
    state = _one_line(loc.state) or "unknown"
    reason = _one_line(loc.error or "")
    if loc.down_seconds is not None:  # `[-]NAME STATE: REASON` keeps its shape for parsers
        down = f"down for {_duration(loc.down_seconds)}"
        reason = f"{reason} ({down})" if reason else down
    return f"{state}: {reason}" if reason else state


def _duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`: how long a location has been down, at a glance."""
    s = int(seconds) if math.isfinite(seconds) else 0
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _one_line(value: str) -> str:
    """A reason fit for one line of a text body: no control characters, bounded length."""
    flat = " ".join(_UNSAFE.sub(" ", value).split())
    return flat if len(flat) <= _MAX_REASON else flat[: _MAX_REASON - 1] + "…"
