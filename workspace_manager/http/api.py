"""The JSON API of SPEC section 7 on the manager's HTTP address, for programs and the web page.

    GET  /api/runs[?status=S[,S]&location=&job=&limit=&before=CURSOR]
    GET  /api/runs/ID                   one run (ID or a unique prefix), with its status history
    GET  /api/runs/ID/logs[?after=SEQ&limit=N]
    POST /api/runs                      {"location", "job", "run_config", "tags"} -> 201 + run
    POST /api/runs/ID/cancel
    GET  /api/schedules, /api/sensors   every schedule / sensor the daemon knows
    GET  /api/schedules/NAME/ticks, /api/sensors/NAME/ticks[?limit=N]
    POST /api/schedules/NAME/start|stop, /api/sensors/NAME/start|stop   (NAME or LOCATION:NAME)
    GET  /api/locations                 every location with its state and definitions
    POST /api/locations/NAME/reload

Shapes, the same for every answer so a page needs one code path:
- a list is `{"items": [...], "next": CURSOR | null}`; pass `next` back (`?before=` for
  runs, `?after=` for logs) for the next page. For logs, `next` is null only once the run
  is final and every line has been given; until then it is what to poll with.
- an error is `{"error": {"type", "message"}}` with its status: 400 (bad request: a bad
  parameter, a body that is not a JSON object, an unknown key in it, a run config that is
  not plain JSON such as NaN, a bad tag), 401 (a token is needed or wrong), 403 (refused),
  404 (unknown run, schedule, sensor, location, job or endpoint), 405 (method), 409
  (conflict: the run is already final, the daemon is off, a run id prefix names several
  runs), 413 (body too large), 414/431 (URI or headers too large), 415 (not JSON), 500
  (a bug: one line in the manager's log), 503 (the manager is starting or has no storage).
- every answer is strict JSON (RFC 8259): a number JSON cannot hold (NaN, Infinity in a
  record stored before such input was refused) is given as the string "NaN", "Infinity"
  or "-Infinity".

Writes (POST) must send `Content-Type: application/json` (a browser cannot send it
cross-site without a CORS preflight, which is never granted) and, when they carry an
`Origin`, one matching `Host`: together these keep another web page open in the same
browser from driving the API (CSRF). A write from a peer that is not loopback needs
`Authorization: Bearer TOKEN`, the token of `wsm up --api-token-env VAR` (compared in
constant time); with no token configured such writes are refused (403).

The handlers take an `ApiRequest` and return an `ApiResponse`, and know nothing of the
server: `web/api_routes.py` adapts them to Starlette, and reads and caps the body. Every read goes through the manager's
`AsyncStorage`, so no answer blocks the event loop, and nothing waits on a location.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urlsplit

from workspace_manager.http.exchange import JSON
from workspace_manager.runs.queue import check_tags
from workspace_manager.storage.base import AmbiguousRunId, RunNotFound, StorageError
from workspace_manager.storage.records import (
    RUN_STATUSES,
    RunRecord,
    check_run_input,
    finite_json,
)

log = logging.getLogger(__name__)

PREFIX = "/api/"
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
DEFAULT_LOG_LIMIT = 1000
MAX_LOG_LIMIT = 5000
DEFAULT_TICK_LIMIT = 20
_PLURAL = {"schedules": "schedule", "sensors": "sensor"}
_RUNS = "GET, HEAD, POST"
#: Lists longer than this are converted and encoded in a worker thread, not on the loop.
_HEAVY = 100
_FIELDS: Dict[type, Tuple[str, ...]] = {}
_SUBMIT_KEYS = ("location", "job", "run_config", "tags", "repository")


@dataclass(frozen=True)
class ApiRequest:
    """What a handler needs of an HTTP request, whatever server received it.

    `path` is below /api/ and still percent-encoded (a name may hold a `/` as %2F);
    `headers` lower-cased names; `peer` the client's IP address as text (None: unknown)."""

    method: str
    path: str
    query: Dict[str, List[str]] = field(default_factory=dict)
    headers: Tuple[Tuple[str, str], ...] = ()
    body: bytes = b""
    peer: Optional[str] = None

    def header(self, name: str) -> Optional[str]:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any  # JSON-able
    headers: Tuple[Tuple[str, str], ...] = ()
    heavy: bool = False  # large: a server should encode it off its event loop

    def encode(self) -> bytes:
        """The JSON text. A list's items are encoded one by one: json's C encoder holds the
        GIL for a whole call, so in a worker thread one call per item lets the event loop
        in between (a page of 1,000 runs at once would hold it for milliseconds)."""
        body = self.body
        items = body.get("items") if isinstance(body, dict) else None
        if not self.heavy or not isinstance(items, list):
            return (_dumps(body) + "\n").encode("utf-8")
        rest = _dumps({k: v for k, v in body.items() if k != "items"})
        parts = ",".join(_dumps(item) for item in items)
        tail = "}" if rest == "{}" else "," + rest[1:]
        return ('{"items":[' + parts + "]" + tail + "\n").encode("utf-8")


class ApiError(Exception):
    """An answer other than success: `{"error": {"type", "message"}}` with `status`."""

    def __init__(
        self, status: int, type: str, message: str, headers: Tuple[Tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = headers

    def response(self) -> ApiResponse:
        body = {"error": {"type": self.type, "message": self.message}}
        return ApiResponse(self.status, body, self.headers)


@dataclass
class ApiSources:
    """Where the API finds the manager's parts, asked at each request (they are made in
    Manager.start, after the routes; a part is None while absent: `--no-daemon`, starting).

    storage: an `AsyncStorage` (every Storage method as a coroutine); runs: the
    `RunCoordinator`; daemon: the `Daemon`; locations: one dict per location (its status
    document plus `repositories` from its snapshot); reload: `Manager.reload([names])`."""

    storage: Callable[[], Any]
    runs: Callable[[], Any] = lambda: None
    daemon: Callable[[], Any] = lambda: None
    locations: Callable[[], List[Dict[str, Any]]] = lambda: []
    reload: Optional[Callable[[List[str]], Awaitable[Dict[str, Any]]]] = None
    token: Optional[str] = None  # `--api-token-env`; None: only loopback may write


def is_loopback(peer: Optional[str]) -> bool:
    """Whether `peer` (an IP address as text) is this machine's loopback: 127.0.0.0/8, ::1,
    or either mapped into IPv6 (`::ffff:127.0.0.1`, what a dual-stack socket reports)."""
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def check_write(request: ApiRequest, token: Optional[str]) -> None:
    """Refuse a write that is not allowed (ApiError 401/403/415); see the module docstring."""
    if not is_loopback(request.peer):
        if token is None:
            raise ApiError(
                403,
                "Forbidden",
                "writes are accepted from loopback only: start the manager with "
                "`wsm up --api-token-env VAR` to allow them with a token",
            )
        scheme, _, given = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), token.encode("utf-8")
        ):
            raise ApiError(
                401,
                "Unauthorized",
                "this write needs the header `Authorization: Bearer TOKEN`",
                (("WWW-Authenticate", 'Bearer realm="wsm"'),),
            )
    media = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if media != JSON:
        raise ApiError(
            415, "UnsupportedMediaType", "send the request with Content-Type: application/json"
        )
    origin = request.header("origin")
    if origin is not None and origin != "null":
        if urlsplit(origin).netloc.lower() != (request.header("host") or "").lower():
            raise ApiError(403, "Forbidden", "a write from another site's page is refused")
    elif origin == "null":
        raise ApiError(403, "Forbidden", "a write from a page with an opaque origin is refused")


class Api:
    """The handlers; `handle` routes one request and never raises."""

    def __init__(self, sources: ApiSources) -> None:
        self.sources = sources

    async def handle(self, request: ApiRequest) -> ApiResponse:
        try:
            return await self._route(request)
        except ApiError as exc:
            return exc.response()
        except AmbiguousRunId as exc:
            return ApiError(409, "Ambiguous", str(exc)).response()
        except RunNotFound as exc:
            return ApiError(404, "NotFound", str(exc)).response()
        except StorageError as exc:
            return ApiError(503, "StorageError", str(exc)).response()
        except Exception as exc:  # a bug must cost one answer, in the API's shape
            return internal_error(request.method, request.path, exc)

    async def _route(self, request: ApiRequest) -> ApiResponse:
        parts = [unquote(p) for p in request.path.strip("/").split("/")] if request.path else []
        method = "GET" if request.method == "HEAD" else request.method
        top = parts[0] if parts else ""
        n = len(parts)
        if top == "runs":
            if n == 1 and method == "POST":
                return await self._only(request, method, "POST", self.submit)
            if n == 1:
                return await self._only(request, method, "GET", self.list_runs, allow=_RUNS)
            if n == 2:
                return await self._only(request, method, "GET", self.get_run, parts[1])
            if n == 3 and parts[2] == "logs":
                return await self._only(request, method, "GET", self.run_logs, parts[1])
            if n == 3 and parts[2] == "cancel":
                return await self._only(request, method, "POST", self.cancel, parts[1])
        elif top in _PLURAL:
            kind = _PLURAL[top]
            if n == 1:
                return await self._only(request, method, "GET", self.instigators, kind)
            if n == 3 and parts[2] == "ticks":
                return await self._only(request, method, "GET", self.ticks, kind, parts[1])
            if n == 3 and parts[2] in ("start", "stop"):
                status = "RUNNING" if parts[2] == "start" else "STOPPED"
                return await self._only(
                    request, method, "POST", self.set_status, kind, parts[1], status
                )
        elif top == "locations":
            if n == 1:
                return await self._only(request, method, "GET", self.locations)
            if n == 3 and parts[2] == "reload":
                return await self._only(request, method, "POST", self.reload, parts[1])
        raise ApiError(404, "NotFound", f"no API endpoint {PREFIX}{request.path.strip('/')}")

    async def _only(
        self,
        request: ApiRequest,
        method: str,
        allowed: str,
        handler: Callable,
        *args: Any,
        allow: Optional[str] = None,
    ) -> ApiResponse:
        if method != allowed:
            raise _not_allowed(allow or ("GET, HEAD" if allowed == "GET" else allowed))
        if method == "POST":
            check_write(request, self.sources.token)
        result: ApiResponse = await handler(request, *args)
        return result

    # -- runs -----------------------------------------------------------------------------

    def _storage(self) -> Any:
        store = self.sources.storage()
        if store is None:
            raise ApiError(503, "Unavailable", "the manager has no run storage (yet)")
        return store

    async def list_runs(self, request: ApiRequest) -> ApiResponse:
        statuses = _statuses(request.query.get("status"))
        limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        before = _decode_cursor(_param(request, "before"))
        runs: List[RunRecord] = await self._storage().list_runs(
            statuses=statuses,
            location=_param(request, "location"),
            job=_param(request, "job"),
            limit=limit + 1,  # one more says whether there is a next page
            before=before,
        )
        page = runs[:limit]
        following = _encode_cursor(page[-1]) if len(runs) > limit else None
        items = await _off_loop(lambda: [run_summary(r) for r in page], len(page))
        return ApiResponse(200, {"items": items, "next": following}, heavy=len(page) > _HEAVY)

    async def get_run(self, request: ApiRequest, run_id: str) -> ApiResponse:
        store = self._storage()
        run = await store.get_run(run_id)
        events = await store.run_events(run.run_id)
        return ApiResponse(200, run_document(run, events))

    async def run_logs(self, request: ApiRequest, run_id: str) -> ApiResponse:
        store = self._storage()
        after = _int_param(request, "after", 0, 0, None)
        limit = _int_param(request, "limit", DEFAULT_LOG_LIMIT, 1, MAX_LOG_LIMIT)
        run = await store.get_run(run_id)  # read first: a final run's lines are all stored
        lines = await store.read_logs(run.run_id, after, limit)
        last = lines[-1].seq if lines else after
        done = run.is_final and len(lines) < limit
        return ApiResponse(
            200,
            {
                "items": await _off_loop(lambda: [plain(ln) for ln in lines], len(lines)),
                "next": None if done else last,
                "run_id": run.run_id,
                "status": run.status,
            },
            heavy=len(lines) > _HEAVY,
        )

    async def submit(self, request: ApiRequest) -> ApiResponse:
        body = _json_body(request, keys=_SUBMIT_KEYS)
        location, job = body.get("location"), body.get("job")
        if not isinstance(location, str) or not location:
            raise ApiError(400, "InvalidRequest", "`location` must be a location's name")
        if not isinstance(job, str) or not job:
            raise ApiError(400, "InvalidRequest", "`job` must be a job's name")
        run_config = body.get("run_config")
        run_config = {} if run_config is None else run_config
        tags = body.get("tags")
        tags = {} if tags is None else tags
        try:  # here too, so that nothing is stored for a refused request
            check_run_input(run_config, tags)
            check_tags(tags)
        except ValueError as exc:
            raise ApiError(400, "InvalidRequest", str(exc)) from None
        repository = body.get("repository")
        if repository is not None and not isinstance(repository, str):
            raise ApiError(400, "InvalidRequest", "`repository` must be a name")
        coordinator = self._runs()
        try:
            run = await coordinator.submit(
                location,
                job,
                run_config=run_config,
                tags=tags,
                origin=api_origin(request),
                repository=repository,
            )
        except LookupError as exc:
            raise ApiError(404, "NotFound", _message(exc)) from None
        except ValueError as exc:
            raise ApiError(400, "InvalidRequest", str(exc)) from None
        return ApiResponse(201, run_document(run), (("Location", f"{PREFIX}runs/{run.run_id}"),))

    async def cancel(self, request: ApiRequest, run_id: str) -> ApiResponse:
        _json_body(request, required=False)
        run = await self._storage().get_run(run_id)
        if run.is_final:
            raise ApiError(409, "Conflict", f"run {run.run_id} has already ended: {run.status}")
        try:
            run = await self._runs().cancel(run.run_id)
        except LookupError as exc:
            raise ApiError(404, "NotFound", _message(exc)) from None
        return ApiResponse(200, run_document(run))

    def _runs(self) -> Any:
        runs = self.sources.runs()
        if runs is None:
            raise ApiError(503, "Unavailable", "the manager does not launch runs (yet)")
        return runs

    # -- schedules and sensors ------------------------------------------------------------

    def _daemon(self) -> Any:
        daemon = self.sources.daemon()
        if daemon is None:
            raise ApiError(409, "DaemonOff", "the daemon is off (`wsm up --no-daemon`)")
        return daemon

    async def instigators(self, request: ApiRequest, kind: str) -> ApiResponse:
        daemon = self.sources.daemon()
        items = daemon.instigators(kind) if daemon is not None else []
        return ApiResponse(200, {"items": items, "next": None, "daemon": daemon is not None})

    async def set_status(
        self, request: ApiRequest, kind: str, name: str, status: str
    ) -> ApiResponse:
        _json_body(request, required=False)
        try:
            result = await self._daemon().set_status(kind, name, status)
        except LookupError as exc:
            raise ApiError(404, "NotFound", _message(exc)) from None
        return ApiResponse(200, result)

    async def ticks(self, request: ApiRequest, kind: str, name: str) -> ApiResponse:
        limit = _int_param(request, "limit", DEFAULT_TICK_LIMIT, 1, MAX_LIMIT)
        location, _, bare = name.rpartition(":")
        store = self._storage()
        found = await store.list_ticks(location or None, bare, kind, limit)
        if not found and not await self._known(store, kind, location, bare):
            raise ApiError(404, "NotFound", f"no {kind} named {name!r}")
        items = [plain(t) for t in found]
        return ApiResponse(200, {"items": items, "next": None}, heavy=len(found) > _HEAVY)

    async def _known(self, store: Any, kind: str, location: str, name: str) -> bool:
        """Whether a schedule or sensor is defined in a running location, or has state kept
        (it was started or stopped, or ticked, under an older definition): what `wsm
        schedule|sensor ticks` checks before it says `no schedule named ...`."""
        daemon = self.sources.daemon()
        defined = daemon.instigators(kind) if daemon is not None else []
        kept = [plain(s) for s in await store.list_instigators(kind)]
        return any(
            item.get("name") == name and (not location or item.get("location") == location)
            for item in [*defined, *kept]
        )

    # -- locations ------------------------------------------------------------------------

    async def locations(self, request: ApiRequest) -> ApiResponse:
        return ApiResponse(200, {"items": self.sources.locations(), "next": None})

    async def reload(self, request: ApiRequest, name: str) -> ApiResponse:
        _json_body(request, required=False)
        if self.sources.reload is None:
            raise ApiError(409, "Conflict", "this manager cannot reload its locations")
        known = {loc.get("name") for loc in self.sources.locations()}
        if name not in known:
            raise ApiError(404, "NotFound", f"no location named {name!r}")
        try:
            result = await self.sources.reload([name])
        except Exception as exc:  # RemoteError from the manager: an invalid workspace
            raise ApiError(409, getattr(exc, "type", "Conflict"), _message(exc)) from None
        return ApiResponse(200, result)


# -- documents --------------------------------------------------------------------------------


def plain(record: Any) -> Dict[str, Any]:
    """A record's fields as a dict, shallow: its lists and dicts are the record's own (the
    answer is encoded at once); several times faster than `dataclasses.asdict`, which
    deep-copies."""
    names = _FIELDS.get(type(record))
    if names is None:
        names = _FIELDS[type(record)] = tuple(f.name for f in dataclasses.fields(record))
    return {name: getattr(record, name) for name in names}


def run_summary(run: RunRecord) -> Dict[str, Any]:
    """A run in a list: its record without the traceback (GET /api/runs/ID has it)."""
    doc = plain(run)
    doc.pop("traceback", None)
    doc["has_traceback"] = bool(run.traceback)
    doc["duration_seconds"] = run_duration(run)
    return doc


def run_document(run: RunRecord, events: Sequence[Any] = ()) -> Dict[str, Any]:
    """One run: its whole record, its duration and (when given) its status history."""
    doc = plain(run)
    doc["duration_seconds"] = run_duration(run)
    doc["events"] = [plain(e) for e in events]
    return doc


def run_duration(run: RunRecord) -> Optional[float]:
    """Seconds from the process's start to its end (None until both are known)."""
    start = run.start_time if run.start_time is not None else run.started_at
    if start is None or run.ended_at is None:
        return None
    return round(max(run.ended_at - start, 0.0), 3)


def api_origin(request: ApiRequest) -> Dict[str, Any]:
    """Who launched a run through the API: the peer's address and user agent. The API has no
    accounts (a token says only that the caller may write), so it names no user."""
    origin: Dict[str, Any] = {"kind": "manual", "via": "api", "peer": request.peer}
    agent = request.header("user-agent")
    if agent:
        origin["user_agent"] = agent[:200]
    return origin


# -- parameters -------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    """Strict JSON, total: a non-finite float (a record stored before such input was
    refused) becomes the string "NaN", "Infinity" or "-Infinity", anything else not JSON
    its str(). The walk is only taken when the plain encoding refuses."""
    try:
        return json.dumps(value, allow_nan=False, default=str)
    except ValueError:  # only a non-finite float makes allow_nan=False refuse
        return json.dumps(finite_json(value), allow_nan=False, default=str)


def internal_error(method: str, path: str, exc: BaseException) -> ApiResponse:
    """A bug's answer: a JSON 500, and one line in the manager's log (its traceback only
    at DEBUG: a request that keeps failing must not flood the console)."""
    message = " ".join(str(exc).split())[:300]
    log.error("api: %s %s failed: %s: %s", method, path, type(exc).__name__, message)
    log.debug("api: %s %s failed", method, path, exc_info=exc)
    return ApiError(500, "InternalError", "internal error (see the manager's log)").response()


async def _off_loop(build: Callable[[], Any], size: int) -> Any:
    """`build()`, in a worker thread when `size` makes it worth the hop."""
    if size <= _HEAVY:
        return build()
    return await asyncio.get_running_loop().run_in_executor(None, build)


def _not_allowed(allow: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"allowed: {allow}", (("Allow", allow),))


def _param(request: ApiRequest, name: str) -> Optional[str]:
    values = request.query.get(name)
    return values[-1] if values and values[-1] != "" else None


def _int_param(request: ApiRequest, name: str, default: int, low: int, high: Optional[int]) -> int:
    raw = _param(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "InvalidRequest", f"`{name}` must be a whole number") from None
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ApiError(400, "InvalidRequest", f"`{name}` must be {bound}")
    return value


def _statuses(values: Optional[List[str]]) -> Optional[List[str]]:
    """`?status=FAILURE&status=canceled` or `?status=FAILURE,CANCELED`, any case."""
    if not values:
        return None
    wanted = [s.strip().upper() for v in values for s in v.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in RUN_STATUSES]
    if unknown:
        raise ApiError(
            400,
            "InvalidRequest",
            f"unknown status {unknown[0]!r}: one of {', '.join(RUN_STATUSES)}",
        )
    return wanted or None


def _encode_cursor(run: RunRecord) -> str:
    """The keyset of a page's last run, opaque to clients: base64url of [created_at, id]."""
    raw = json.dumps([run.created_at, run.run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: Optional[str]) -> Optional[Tuple[float, str]]:
    if text is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created_at, run_id = json.loads(raw)
        if isinstance(created_at, (int, float)) and isinstance(run_id, str):
            return float(created_at), run_id
    except (ValueError, TypeError, binascii.Error):
        pass
    raise ApiError(400, "InvalidRequest", "`before` is not a cursor this API gave")


def _json_body(
    request: ApiRequest, required: bool = True, keys: Tuple[str, ...] = ()
) -> Dict[str, Any]:
    """The body's JSON object; ApiError 400 when there is none (and `required`), it is not
    a JSON object, or it has a key not in `keys` (a misspelt key must not be ignored)."""
    if not request.body.strip():
        if required:
            raise ApiError(400, "InvalidRequest", "the request needs a JSON object as its body")
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "InvalidRequest", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "InvalidRequest", "the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequest", "the body must be a JSON object")
    unknown = [key for key in body if key not in keys]
    if unknown:
        known = f" (known: {', '.join(keys)})" if keys else " (it takes none)"
        raise ApiError(400, "InvalidRequest", f"unknown key {unknown[0]!r} in the body{known}")
    return body


def _message(exc: BaseException) -> str:
    """A LookupError's text (KeyError's str() adds quotes) or a RemoteError's message."""
    message = getattr(exc, "message", None)
    if isinstance(message, str):
        return message
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def manager_sources(manager: Any, token: Optional[str] = None) -> ApiSources:
    """The API's view of a running `supervisor.manager.Manager`: its AsyncStorage
    (`store`), run coordinator (`runs`), daemon (`daemon`), locations and reload."""

    def locations() -> List[Dict[str, Any]]:
        from workspace_manager.http.view import location_document

        out = []
        view = manager.view()
        for loc_view in view.locations:
            doc = {"name": loc_view.name, **location_document(loc_view)}
            loc = manager.locations.get(loc_view.name)
            snapshot = getattr(loc, "snapshot", None) if loc is not None else None
            doc["repositories"] = (snapshot or {}).get("repositories") or []
            out.append(doc)
        return out

    return ApiSources(
        storage=lambda: getattr(manager, "store", None),
        runs=lambda: getattr(manager, "runs", None),
        daemon=lambda: getattr(manager, "daemon", None),
        locations=locations,
        reload=manager.reload,
        token=token,
    )
