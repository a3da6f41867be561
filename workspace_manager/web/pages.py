"""The pages for people (SPEC section 8): server-rendered HTML over the JSON API.

    GET  /                      every location: state, interpreter, environment, restarts,
                                uptime, memory, last error, runs in progress / failed recently
    GET  /locations/{name}      its repositories, jobs, schedules, sensors and recent runs
    GET  /runs                  runs, newest first, 50 a page (?status=&location=&job=&before=)
    GET  /runs/{run_id}         one run: status history, origin, config, tags, its logs
    GET  /static/...            wsm.css, live.js, actions.js (shipped in the package)
    GET  /ui/counts             the overview's run counts per location, as JSON
    POST /ui/config/check       YAML or JSON text -> {"config": {...}} or {"error": "line L,
                                column C: ..."} (web/config_check.py)

Every page reads its data through `ctx.view()` and the JSON API's handlers
(`http.api.Api.handle`), so the page and `/api/` cannot disagree; two reads go to the
storage itself: the per-location run counts of the overview
(`Storage.location_run_counts`) and a location page's last ticks (see `add_ticks`). Lists
are paged (50) and nothing renders every run, so a page stays fast with 10,000s of runs.

The pages work without JavaScript (read-only); `static/live.js` follows `/api/events` to
update them in place and `static/actions.js` sends the writes to `/api/` with the page's
per-session CSRF token (`web/session.py`). Jinja2 is imported and its templates compiled
at the first page request, never at the manager's start. Nothing secret is rendered: a
location's `env_vars` and the API token never reach the page's data.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import html
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple
from urllib.parse import quote, urlencode

from workspace_manager.http.api import ApiRequest, plain
from workspace_manager.http.view import ManagerView, location_document
from workspace_manager.storage.records import FINAL_STATUSES, RUN_STATUSES
from workspace_manager.units import binary_size
from workspace_manager.version import __version__
from workspace_manager.web.config_check import MAX_CONFIG_BYTES, check_config_text
from workspace_manager.web.context import WebContext
from workspace_manager.web.session import cookie_header, csrf_token, session_cookie

if TYPE_CHECKING:  # Starlette is imported when the routes are made, as in web/app.py
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger(__name__)
_escape = functools.partial(html.escape, quote=True)

HERE = Path(__file__).parent
PAGE_SIZE = 50
#: Log lines rendered with the run page; later ones stream from /api/events.
LOG_PAGE = 1000
#: "Failed recently" on the overview: FAILURE runs that ended within this many seconds.
RECENT_SECONDS = 24 * 3600
#: Last ticks shown per schedule or sensor on a location page, for at most TICKS_FOR of them.
TICKS_SHOWN = 5
TICKS_FOR = 50
#: Schedules and sensors listed on a location page (each kind; `?all=1` lists every one).
INSTIGATORS_SHOWN = 50
#: Job names offered by the runs filter (a `<datalist>`; the filter matches a whole name).
JOB_CHOICES = 1000
#: The pages load nothing from elsewhere and run no inline script: an injected `<script>`
#: would not run even if escaping failed.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def routes(ctx: WebContext) -> list:
    """The pages' Starlette routes (web/app.py mounts them after the API's)."""
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    pages = Pages(ctx)
    return [
        Route("/", pages.overview, methods=["GET"], name="overview"),
        Route("/locations/{name:path}", pages.location, methods=["GET"], name="location"),
        Route("/runs", pages.runs, methods=["GET"], name="runs"),
        Route("/runs/{run_id:path}", pages.run, methods=["GET"], name="run"),
        Route("/ui/config/check", pages.config_check, methods=["POST"], name="config_check"),
        Route("/ui/counts", pages.counts, methods=["GET"], name="counts"),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]


@functools.lru_cache(maxsize=1)
def environment() -> Any:
    """The one Jinja2 Environment, made at the first page request (jinja2 is imported here,
    not when the manager starts); templates are compiled once and kept."""
    import jinja2

    class Environment(jinja2.Environment):
        """`doc.key` reads a dict's key first: Jinja2 tries getattr first, and the
        AttributeError a dict raises for every key cost a third of a page's render."""

        def getattr(self, obj: Any, attribute: str) -> Any:
            if type(obj) is dict:
                try:
                    return obj[attribute]
                except KeyError:
                    pass
            return super().getattr(obj, attribute)

    env = Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, iso=iso, duration=duration, size=size, pretty=pretty, cell=cell)
    env.globals.update(
        version=__version__,
        run_statuses=RUN_STATUSES,
        final_statuses=FINAL_STATUSES,
        quote=lambda text: quote(str(text), safe=""),
    )
    return env


class Pages:
    """The page handlers over one WebContext."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    # -- data -----------------------------------------------------------------------------

    async def api(self, path: str, **query: Any) -> Tuple[int, Any]:
        """(status, JSON body) of `GET /api/PATH?query` through the API's own handlers;
        (503, None) when the manager keeps no runs (`ctx.api` None)."""
        if self.ctx.api is None:
            return 503, None
        params = {k: [str(v)] for k, v in query.items() if v is not None and v != ""}
        answer = await self.ctx.api.handle(ApiRequest("GET", path, params))
        return answer.status, answer.body

    async def job_names(self, location: str = "") -> List[str]:
        """The names of the jobs of `location` (every location when empty), sorted, at most
        JOB_CHOICES: the runs filter's suggestions, since it matches a job's whole name."""
        names: Set[str] = set()
        for item in await self.items("locations"):
            if location and item.get("name") != location:
                continue
            for repo in item.get("repositories") or []:
                names.update(j.get("name") for j in repo.get("jobs") or [] if j.get("name"))
        return sorted(names)[:JOB_CHOICES]

    async def items(self, path: str, **query: Any) -> List[Dict[str, Any]]:
        status, body = await self.api(path, **query)
        if status != 200 or not isinstance(body, dict):
            return []
        return list(body.get("items") or [])

    async def run_counts(self) -> Dict[str, Dict[str, int]]:
        """{location: {"queued", "in_progress", "failed_recent"}}; {} without storage."""
        api = self.ctx.api
        store = api.sources.storage() if api is not None else None
        if store is None or not hasattr(store, "location_run_counts"):
            return {}
        try:
            counts: Dict[str, Dict[str, int]] = await store.location_run_counts(
                time.time() - RECENT_SECONDS
            )
        except Exception as exc:  # a page without counts beats no page
            log.warning("pages: run counts unavailable: %s", exc)
            return {}
        return counts

    async def add_ticks(self, location: str, instigators: List[Dict[str, Any]]) -> None:
        """Give each schedule or sensor its last TICKS_SHOWN ticks (`"ticks"`), read from the
        storage (the API's `/ticks` endpoint would look every instigator of every location
        up again for each one without ticks); at most TICKS_FOR of them, the others show
        their last tick as the daemon keeps it (`last_tick`)."""
        api = self.ctx.api
        store = api.sources.storage() if api is not None else None
        if store is None:
            return
        shown = instigators[:TICKS_FOR]
        found = await asyncio.gather(
            *(
                store.list_ticks(location, str(i.get("name")), str(i.get("kind")), TICKS_SHOWN)
                for i in shown
            ),
            return_exceptions=True,
        )
        for inst, ticks in zip(shown, found):
            if isinstance(ticks, BaseException):
                log.warning("pages: ticks of %s unavailable: %s", inst.get("name"), ticks)
                continue
            inst["ticks"] = [plain(t) for t in ticks]

    def view(self) -> ManagerView:
        return self.ctx.view()

    def keeps_runs(self) -> bool:
        """Whether this manager keeps runs (`wsm up`; not `wsm serve`, nor a manager still
        opening its storage): without, the pages show no runs and no launch buttons."""
        api = self.ctx.api
        return api is not None and api.sources.storage() is not None

    # -- pages ----------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        view = self.view()
        counts = await self.run_counts()
        locations = [overview_row(loc, counts.get(loc.name)) for loc in view.locations]
        return self.render(
            request,
            "overview.html",
            nav="overview",
            title="Overview",
            live="overview",
            manager=manager_summary(view),
            locations=locations,
            keeps_runs=self.keeps_runs(),
        )

    async def location(self, request: Request) -> Response:
        name = request.path_params["name"]
        view = self.view()
        loc = view.location(name)
        if loc is None:
            return self.error(request, 404, "No such location", f"There is no location {name!r}.")
        doc = {"name": loc.name, **location_document(loc)}
        keeps_runs = self.keeps_runs()
        found, schedules, sensors, runs, counts = await asyncio.gather(
            self.items("locations"),
            self.items("schedules"),
            self.items("sensors"),
            self.api("runs", location=name, limit=10),
            self.run_counts(),
        )
        repositories: List[Dict[str, Any]] = []
        for item in found:
            if item.get("name") == name:
                repositories = list(item.get("repositories") or [])
        schedules = [s for s in schedules if s.get("location") == name]
        sensors = [s for s in sensors if s.get("location") == name]
        show_all = request.query_params.get("all") == "1"
        total = {"schedules": len(schedules), "sensors": len(sensors)}
        if not show_all:  # a row costs ~40 us of CPU to render: bound the page
            schedules, sensors = schedules[:INSTIGATORS_SHOWN], sensors[:INSTIGATORS_SHOWN]
        await self.add_ticks(name, [*schedules, *sensors])
        status, body = runs
        return self.render(
            request,
            "location.html",
            nav="overview",
            title=f"Location {name}",
            live="location",
            loc=doc,
            repositories=repositories,
            schedules=schedules,
            sensors=sensors,
            total=total,
            runs=(body or {}).get("items") or [] if status == 200 else [],
            counts=counts.get(name) or {},
            keeps_runs=keeps_runs,
            daemon=(view.daemon or {}).get("enabled", False) if view.daemon else False,
        )

    async def runs(self, request: Request) -> Response:
        view = self.view()
        q = request.query_params
        status_filter = (q.get("status") or "").strip().upper()
        location_filter = (q.get("location") or "").strip()
        job_filter = (q.get("job") or "").strip()
        before = (q.get("before") or "").strip()
        filters = {"status": status_filter, "location": location_filter, "job": job_filter}
        runs: List[Dict[str, Any]] = []
        next_url: Optional[str] = None
        problem: Optional[str] = None
        code = 200
        if not self.keeps_runs():
            problem = "This manager keeps no runs."
        else:
            status, body = await self.api(
                "runs", limit=PAGE_SIZE, before=before, **{k: v for k, v in filters.items()}
            )
            if status == 200:
                runs = body.get("items") or []
                if body.get("next"):
                    shown = {k: v for k, v in filters.items() if v}
                    next_url = "/runs?" + urlencode({**shown, "before": body["next"]})
            else:
                code = status if status in (400, 404, 409) else 503
                problem = str(((body or {}).get("error") or {}).get("message") or status)
        job_names = await self.job_names(location_filter)
        names = [loc.name for loc in view.locations]
        if location_filter and location_filter not in names:
            names.append(location_filter)
        first_url = None
        if before:
            shown = {k: v for k, v in filters.items() if v}
            first_url = "/runs" + ("?" + urlencode(shown) if shown else "")
        return self.render(
            request,
            "runs.html",
            status_code=code,
            nav="runs",
            title="Runs",
            live="runs",
            runs=runs,
            filters=filters,
            location_names=names,
            job_names=job_names,
            next_url=next_url,
            first_url=first_url,
            problem=problem,
        )

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if not self.keeps_runs():
            return self.error(request, 404, "No such run", "This manager keeps no runs.")
        status, body = await self.api(f"runs/{quote(run_id, safe='')}")
        if status == 404:
            return self.error(request, 404, "No such run", f"There is no run {run_id!r}.")
        if status != 200:
            message = str(((body or {}).get("error") or {}).get("message") or status)
            return self.error(request, status, "Run unavailable", message)
        run = body
        logs_status, logs = await self.api(
            f"runs/{quote(run['run_id'], safe='')}/logs", limit=LOG_PAGE
        )
        lines = (logs or {}).get("items") or [] if logs_status == 200 else []
        last_seq = lines[-1]["seq"] if lines else 0
        more = len(lines) >= LOG_PAGE
        return self.render(
            request,
            "run.html",
            nav="runs",
            title=f"Run {run['run_id'][:8]}",
            live="run",
            run=run,
            lines=log_items(lines),
            line_count=len(lines),
            last_seq=last_seq,
            more_logs=more,
            is_final=run.get("status") in FINAL_STATUSES,
        )

    async def counts(self, request: Request) -> Response:
        """`GET /ui/counts`: {location: {"queued", "in_progress", "failed_recent"}}, what
        live.js re-reads (at most every 2 s) after run events instead of the whole page."""
        from starlette.responses import JSONResponse

        return JSONResponse(await self.run_counts(), headers={"Cache-Control": "no-store"})

    async def config_check(self, request: Request) -> Response:
        """`POST /ui/config/check`: the body is the run config text (JSON or YAML)."""
        from starlette.responses import JSONResponse

        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_CONFIG_BYTES:
                return JSONResponse(
                    {"error": f"the run config is larger than {MAX_CONFIG_BYTES // 1024} KiB"},
                    413,
                    headers={"Cache-Control": "no-store"},
                )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return JSONResponse({"error": "the run config is not UTF-8 text"}, 400)
        result = check_config_text(text)
        headers = {"Cache-Control": "no-store"}
        if result.error is not None:
            return JSONResponse({"error": result.error}, 400, headers=headers)
        return JSONResponse({"config": result.config}, 200, headers=headers)

    # -- rendering ------------------------------------------------------------------------

    def error(self, request: Request, status: int, title: str, message: str) -> Response:
        return self.render(
            request,
            "error.html",
            status_code=status,
            nav="",
            title=title,
            live="",
            message=message,
            code=status,
        )

    def render(
        self, request: Request, template: str, status_code: int = 200, **data: Any
    ) -> Response:
        """The page, with the session cookie set (when new) and its CSRF token in a meta."""
        from starlette.responses import HTMLResponse

        session_id, is_new = session_cookie(request.cookies)
        html = (
            environment()
            .get_template(template)
            .render(
                csrf=csrf_token(self.ctx.secret, session_id),
                **data,
            )
        )
        response = HTMLResponse(html, status_code, headers=HEADERS)
        if is_new:
            response.headers.append("set-cookie", cookie_header(session_id))
        return response


def overview_row(loc: Any, counts: Optional[Dict[str, int]]) -> Dict[str, Any]:
    """One overview row: the location's status document plus what the template would
    otherwise compute per row (its link, uptime and memory in words, its run counts); with
    100 locations, calls inside a template cost more than the page's own query."""
    row = {"name": loc.name, **location_document(loc)}
    row["href"] = "/locations/" + quote(loc.name, safe="")
    row["uptime"] = duration(row["uptime_seconds"])
    row["rss"] = size(row["rss_bytes"])
    row["in_progress"] = (counts or {}).get("in_progress", 0)
    row["failed_recent"] = (counts or {}).get("failed_recent", 0)
    return row


def log_items(lines: List[Dict[str, Any]]) -> Any:
    """The `<li data-seq>` of each log line, as Markup: built here, not in a template loop,
    because a run page renders up to LOG_PAGE lines (1,000 through Jinja2 took 30 ms, this
    takes a few). Every text is escaped (html.escape, quotes included)."""
    from markupsafe import Markup

    out = []
    stamps: Dict[int, Tuple[str, str]] = {}
    for line in lines:
        ts = line.get("time")
        second = int(ts) if isinstance(ts, (int, float)) and math.isfinite(ts) else 0
        stamp = stamps.get(second)
        if stamp is None:
            moment = time.gmtime(second)
            stamp = stamps[second] = (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", moment),
                time.strftime("%H:%M:%S", moment),
            )
        stream = _escape(str(line.get("stream") or ""))
        label = _escape(str(line.get("level") or line.get("stream") or ""))
        out.append(
            f'<li data-seq="{int(line.get("seq") or 0)}" data-stream="{stream}">'
            f'<time datetime="{stamp[0]}">{stamp[1]}</time> <span class="stream">{label}</span>'
            f' <span class="text">{_escape(str(line.get("text") or ""))}</span></li>\n'
        )
    return Markup("".join(out))


def manager_summary(view: ManagerView) -> Dict[str, Any]:
    """What the overview says of the manager itself."""
    target = dict(view.target)
    return {
        "status": view.overall_status(),
        "workspace": target.get("workspace")
        or target.get("python_file")
        or target.get("module_name"),
        "pid": view.pid,
        "uptime_seconds": max(time.time() - view.started_at, 0.0),
        "daemon": dict(view.daemon) if view.daemon else None,
    }


# -- filters ----------------------------------------------------------------------------------


def when(ts: Any) -> str:
    """Unix seconds as `2026-12-01 01:57:41 UTC`; "" when unknown."""
    if not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return ""
    moment = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(ts: Any) -> str:
    """Unix seconds as ISO 8601 for `<time datetime>`."""
    if not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return ""
    moment = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def duration(seconds: Any) -> str:
    """A duration in words a person reads at a glance: `850 ms`, `12.3 s`, `4 min 5 s`,
    `3 h 20 min`, `2 d 4 h`; "" when unknown."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return ""
    s = max(float(seconds), 0.0)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {sec} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def size(n: Any) -> str:
    """Bytes in binary units: `512 B`, `12.3 MiB`; "" when unknown."""
    if not isinstance(n, (int, float)) or isinstance(n, bool) or not math.isfinite(n):
        return ""
    return binary_size(n)


def pretty(value: Any) -> str:
    """JSON, indented, for a `<pre>` (autoescaped by the template)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def cell(value: Any) -> str:
    """A value for a table cell: "" for None, JSON for a list or object."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
