"""The pages for people (web/pages.py, templates/, static/), over real HTTP.

Served by the manager's own web server and app (web/server.py, web/app.py) on a real
socket, in front of a real `Api` over a real `SqliteStorage`; the manager's side (its view, daemon and run coordinator) is faked, so
each test controls exactly what the page shows. The DOM contract checked here is the one
the browser tests rely on (WEB_CONTRACT.md, "DOM contract")."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import threading
import time
import uuid
from html.parser import HTMLParser
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote

import pytest

from workspace_manager.http.api import Api, ApiSources
from workspace_manager.http.view import LocationView, ManagerView
from workspace_manager.storage.records import LogLine, RunRecord
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.storage.writer import AsyncStorage
from workspace_manager.web.app import build_app
from workspace_manager.web.context import WebContext
from workspace_manager.web.server import WebServer

DEADLINE = 10.0
HOSTILE = '<script>alert("x")</script>'
TOKEN = "tok-DO-NOT-SHOW-4711"
SECRET_VALUE = "env-value-DO-NOT-SHOW-0815"


# -- a served app ------------------------------------------------------------------------------


class FakeDaemon:
    def __init__(self) -> None:
        self.items = [
            {
                "location": "a",
                "name": "nightly",
                "kind": "schedule",
                "job_name": "hello",
                "description": "every night",
                "status": "RUNNING",
                "cron_schedule": "0 2 * * *",
                "execution_timezone": "Europe/Berlin",
                "next_tick": time.time() + 3600,
                "cursor": None,
                "last_tick": None,
            },
            {
                "location": "a",
                "name": "watch",
                "kind": "sensor",
                "job_name": "hello",
                "description": None,
                "status": "STOPPED",
                "minimum_interval_seconds": 30.0,
                "sensor_type": "standard",
                "cursor": HOSTILE,
                "last_tick": None,
            },
        ]

    def instigators(self, kind: Optional[str] = None) -> List[dict]:
        return [i for i in self.items if kind is None or i["kind"] == kind]

    async def set_status(self, kind: str, name: str, status: str) -> dict:
        raise LookupError(name)


def location_docs() -> List[Dict[str, Any]]:
    return [
        {
            "name": "a",
            "state": "ready",
            "repositories": [
                {
                    "name": "repo_a",
                    "jobs": [
                        {"name": "hello", "description": "says hello", "tags": {"team": "a"}},
                        {"name": "slow", "description": HOSTILE, "tags": {}},
                    ],
                }
            ],
        },
        {"name": HOSTILE, "state": "error", "repositories": []},
    ]


def manager_view() -> ManagerView:
    return ManagerView(
        alive=True,
        started_at=time.time() - 100,
        pid=1234,
        target={"workspace": "/tmp/ws/workspace.yaml"},
        locations=(
            LocationView(
                "a",
                "ready",
                pid=99,
                restarts=1,
                python="3.11.2",
                environment="abc123",
                uptime_seconds=50.0,
                rss_bytes=30_000_000,
            ),
            LocationView("b", "backoff", restarts=3, error="died", traceback="Traceback...\nX"),
            LocationView(HOSTILE, "error", error=HOSTILE, traceback=f"Traceback\n{HOSTILE}"),
        ),
        daemon={
            "enabled": True,
            "last_loop": time.time(),
            "runs": {},
            "queue_length": 0,
            "in_progress": 0,
        },
    )


class Served:
    """The manager's web app (web/app.py: probes, API, pages) on its WebServer, on an event
    loop in a background thread."""

    def __init__(self, tmp_path, keeps_runs: bool = True) -> None:
        self.storage = SqliteStorage(tmp_path / "runs.db", create=True)
        self.async_storage = AsyncStorage(self.storage)
        self.async_storage_of_api: Optional[AsyncStorage] = self.async_storage
        self.daemon = FakeDaemon()
        self.reloaded: List[List[str]] = []
        api = None
        if keeps_runs:
            api = Api(
                ApiSources(
                    storage=lambda: self.async_storage_of_api,
                    daemon=lambda: self.daemon,
                    locations=location_docs,
                    reload=self.reload,
                    token=TOKEN,
                )
            )
        ctx = WebContext(view=manager_view, api=api, api_token=TOKEN, secret=b"k" * 32)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = WebServer("127.0.0.1", 0, build_app(ctx))
        self.port = self.run(self.server.start())[1]

    async def reload(self, names: List[str]) -> Dict[str, Any]:
        self.reloaded.append(names)
        return {"restarted": names}

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(DEADLINE)

    def close(self) -> None:
        try:
            self.run(self.server.close())
            self.run(self.async_storage.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(DEADLINE)
            self.loop.close()
            self.storage.close()

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        headers: Optional[Dict[str, str]] = None,
    ) -> Tuple[int, Dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            text = resp.read().decode()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, text
        finally:
            conn.close()

    def get(self, path: str) -> Tuple[int, str]:
        status, _, text = self.request("GET", path)
        return status, text


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def add_runs(
    storage: SqliteStorage,
    n: int,
    location: str = "a",
    job: str = "hello",
    status: str = "SUCCESS",
    base: float = 0.0,
    **fields: Any,
) -> List[RunRecord]:
    base = base or time.time() - 1000
    out = []
    for i in range(n):
        run = storage.add_run(
            RunRecord(
                uuid.uuid4().hex, location, job, created_at=base + i, origin={"kind": "manual"}
            )
        )
        if status != "QUEUED":
            extra = dict(fields)
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                extra.setdefault("ended_at", time.time())
            run = storage.update_run(run.run_id, status=status, **extra)
        out.append(run)
    return out


# -- reading the HTML --------------------------------------------------------------------------


class Dom(HTMLParser):
    """Every start tag with its attributes, in order, and the text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: List[Tuple[str, Dict[str, Optional[str]]]] = []
        self.text: List[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: Any) -> List[Dict[str, Optional[str]]]:
        """Elements `tag` ("*": any) whose attributes match (value True: present)."""
        found = []
        for name, have in self.tags:
            if tag != "*" and name != tag:
                continue
            ok = True
            for key, want in attrs.items():
                key = key.replace("_", "-")
                if want is True:
                    ok = ok and key in have
                else:
                    ok = ok and have.get(key) == want
            if ok:
                found.append(have)
        return found

    def one(self, tag: str, **attrs: Any) -> Dict[str, Optional[str]]:
        found = self.find(tag, **attrs)
        assert found, f"no <{tag} {attrs}>"
        return found[0]


def page(served: Served, path: str, status: int = 200) -> Dom:
    code, text = served.get(path)
    assert code == status, (path, code, text[:500])
    dom = Dom(text)
    dom.one("main", id="main")
    dom.one("a", data_nav="overview")
    dom.one("a", data_nav="runs")
    dom.one("meta", name="wsm-csrf")
    return dom


# -- tests -------------------------------------------------------------------------------------


def test_overview_lists_every_location_with_state_word_counts_and_actions(served: Served):
    add_runs(served.storage, 2, status="STARTED")
    add_runs(served.storage, 3, status="FAILURE", error="boom")
    add_runs(served.storage, 1, status="FAILURE", ended_at=time.time() - 3 * 86400)  # not recent
    add_runs(served.storage, 4, location="b", status="CANCELING")
    dom = page(served, "/")
    dom.one("table", id="locations")
    rows = dom.find("tr", data_location=True)
    assert [r["data-location"] for r in rows] == ["a", "b", HOSTILE]
    assert [r["data-state"] for r in rows] == ["ready", "backoff", "error"]
    assert "ready" in dom.text and "backoff" in dom.text  # the state as a word
    assert len(dom.find("button", data_action="reload")) == 3
    assert len(dom.find("a", data_link="location")) == 3
    assert dom.find("details", **{"class": "traceback"})
    _, html = served.get("/")
    counts = [
        (m.split('"')[0], m.split(">")[1].split("<")[0]) for m in html.split('data-count="')[1:]
    ]
    assert counts[:4] == [
        ("in_progress", "2"),
        ("failed_recent", "3"),
        ("in_progress", "4"),
        ("failed_recent", "0"),
    ]


def test_location_page_has_jobs_schedules_sensors_and_the_launch_form(served: Served):
    from workspace_manager.storage.records import TickRecord

    add_runs(served.storage, 3)
    for i, status in enumerate(("failure", "skipped", "success")):
        tick = TickRecord("a", "watch", "sensor", time.time() - 100 + i, status=status)
        tick.skip_reason = "nothing new" if status == "skipped" else None
        tick.error = HOSTILE if status == "failure" else None
        served.storage.record_tick(tick)
    dom = page(served, "/locations/a")
    dom.one("section", id="jobs")
    assert {r["data-job"] for r in dom.find("tr", data_job=True)} == {"hello", "slow"}
    assert len(dom.find("button", data_action="launch")) == 2
    dom.one("form", id="launch")
    dom.one("textarea", name="run_config")
    dom.one("textarea", name="tags")
    dom.one("button", type="submit")
    assert dom.find("*", role="alert")
    dom.one("section", id="schedules")
    dom.one("tr", data_schedule="nightly", data_status="RUNNING")
    dom.one("button", data_action="stop", data_name="nightly")
    dom.one("section", id="sensors")
    dom.one("tr", data_sensor="watch", data_status="STOPPED")
    dom.one("button", data_action="start", data_name="watch")
    text = "".join(dom.text)
    assert "0 2 * * *" in text and "Europe/Berlin" in text and "says hello" in text
    assert "team=a" in text
    assert len(dom.find("tr", data_run=True)) == 3  # its recent runs
    ticks = [t["class"] for t in dom.find("span", **{"class": True}) if "tick " in t["class"]]
    assert ticks == ["tick tick-success", "tick tick-skipped", "tick tick-failure"]  # newest first
    assert "nothing new" in text


def test_runs_list_pages_by_50_with_the_api_cursor_and_filters(served: Served):
    runs = add_runs(served.storage, 60)
    add_runs(served.storage, 5, location="b", job="other", status="FAILURE", base=time.time())
    dom = page(served, "/runs")
    dom.one("table", id="runs")
    dom.one("form", id="run-filters")
    dom.one("select", name="status")
    dom.one("select", name="location")
    dom.one("input", name="job")
    first = [r["data-run"] for r in dom.find("tr", data_run=True)]
    assert len(first) == 50
    seen = list(first)
    nxt = dom.one("a", rel="next")["href"]
    while nxt:
        dom = page(served, nxt)
        seen += [r["data-run"] for r in dom.find("tr", data_run=True)]
        found = dom.find("a", rel="next")
        nxt = found[0]["href"] if found else None
    assert len(seen) == 65 and len(set(seen)) == 65  # every run once, none twice
    assert seen[5:] == [r.run_id for r in reversed(runs)]  # newest first

    failed = page(served, "/runs?status=FAILURE").find("tr", data_run=True)
    assert len(failed) == 5 and {r["data-status"] for r in failed} == {"FAILURE"}
    assert len(page(served, "/runs?location=b").find("tr", data_run=True)) == 5
    by_job = page(served, "/runs?job=hello&location=a")
    assert len(by_job.find("tr", data_run=True)) == 50
    assert "job=hello" in by_job.one("a", rel="next")["href"]  # paging keeps the filters
    assert page(served, "/runs?job=nope").find("tr", data_run=True) == []
    dom = page(served, "/runs?status=bogus", status=400)
    assert dom.find("*", role="alert")


def test_run_page_has_history_origin_config_and_its_log_lines(served: Served):
    run = add_runs(served.storage, 1, status="STARTED")[0]
    served.storage.append_logs(
        [LogLine(run.run_id, time.time(), "stdout", f"line {i}") for i in range(3)]
    )
    dom = page(served, f"/runs/{run.run_id}")
    holder = dom.one("*", data_run_status=True)
    assert holder["data-run-status"] == "STARTED"
    lines = dom.find("li", data_seq=True)
    assert [x["data-seq"] for x in lines] == ["1", "2", "3"]
    for section in ("history", "config", "origin"):
        dom.one("section", id=section)
    dom.one("ol", id="log")
    dom.one("button", data_action="cancel")
    body = dom.one("body")
    assert body["data-run-id"] == run.run_id and body["data-after"] == "3"
    # a unique prefix finds it; a final run has no cancel button
    served.storage.update_run(run.run_id, status="SUCCESS")
    dom = page(served, f"/runs/{run.run_id[:10]}")
    assert dom.one("*", data_run_status=True)["data-run-status"] == "SUCCESS"
    assert dom.find("button", data_action="cancel") == []


def test_hostile_names_messages_and_log_text_are_escaped(served: Served):
    run = served.storage.add_run(
        RunRecord(
            uuid.uuid4().hex,
            HOSTILE,
            HOSTILE,
            run_config={HOSTILE: HOSTILE},
            tags={"t": HOSTILE},
            origin={"kind": "manual", "user": HOSTILE},
        )
    )
    served.storage.update_run(
        run.run_id, status="FAILURE", error=HOSTILE, traceback=HOSTILE, message=HOSTILE
    )
    served.storage.append_logs([LogLine(run.run_id, time.time(), "stderr", HOSTILE)])
    paths = [
        "/",
        "/locations/a",
        f"/locations/{quote(HOSTILE, safe='')}",
        "/runs",
        f"/runs?location={quote(HOSTILE)}&job={quote(HOSTILE)}",
        f"/runs/{run.run_id}",
        f"/runs/{quote(HOSTILE, safe='')}",
    ]
    for path in paths:
        code, headers, html = served.request("GET", path)
        assert code in (200, 404), (path, code)
        assert "<script>alert" not in html, path
        assert "script-src 'self'" in headers["content-security-policy"]
    _, html = served.get(f"/runs/{run.run_id}")
    assert html.count("&lt;script&gt;") >= 5  # shown, as text


def test_unknown_location_or_run_is_a_404_page_in_the_page_look(served: Served):
    for path in ("/locations/nope", "/runs/0123456789abcdef"):
        dom = page(served, path, status=404)
        assert "text/html" in served.request("GET", path)[1]["content-type"]
        dom.one("p", data_error_code="404")


def test_no_secret_value_on_any_page(served: Served):
    run = add_runs(served.storage, 1, status="STARTED")[0]
    for path in ("/", "/locations/a", "/locations/b", "/runs", f"/runs/{run.run_id}", "/nope"):
        _, _, html = served.request("GET", path)
        assert TOKEN not in html and SECRET_VALUE not in html, path


@pytest.mark.parametrize(
    "text, config",
    [
        ('{"ops": {"a": {"config": {"n": 1}}}}', {"ops": {"a": {"config": {"n": 1}}}}),
        ("ops:\n  a:\n    config: {n: 1}\n", {"ops": {"a": {"config": {"n": 1}}}}),
        ("", {}),
        ("  \n", {}),
    ],
)
def test_config_check_accepts_json_and_yaml(served: Served, text: str, config: dict):
    code, headers, body = served.request("POST", "/ui/config/check", text.encode())
    assert code == 200, body
    assert json.loads(body) == {"config": config}
    assert headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"a": 1,\n  "b": }', "line 2, column 8"),
        ("a: 1\n b: 2\n", "line 2, column 3"),
        ("a: [1, 2\n", "line 2, column 1"),
        ("[1, 2]", "must be an object"),
        ("- a\n- b\n", "must be an object"),
        ("just text", "must be an object"),
        ("a: .nan\n", "NaN"),
        ("when: 2024-01-01\n", "not a JSON value"),
        ("a: !!python/object/apply:os.system ['true']\n", "line 1"),
    ],
)
def test_config_check_refuses_bad_input_with_where(served: Served, text: str, words: str):
    code, _, body = served.request("POST", "/ui/config/check", text.encode())
    assert code == 400, body
    error = json.loads(body)["error"]
    assert words in error and "\n" not in error


def test_config_check_caps_its_size(served: Served):
    code, _, body = served.request("POST", "/ui/config/check", b"a: " + b"x" * 300_000)
    assert code == 413 and "KiB" in json.loads(body)["error"]


def test_every_page_sets_the_session_cookie_once_and_a_csrf_token(served: Served):
    status, headers, html = served.request("GET", "/")
    cookie = headers["set-cookie"]
    assert cookie.startswith("wsm_session=")
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and "path=/" in low
    session = cookie.split(";", 1)[0]
    token = Dom(html).one("meta", name="wsm-csrf")["content"]
    assert token
    status, headers, html = served.request("GET", "/runs", headers={"Cookie": session})
    assert "set-cookie" not in headers
    assert Dom(html).one("meta", name="wsm-csrf")["content"] == token  # one token a session


def test_static_files_are_served_from_the_package(served: Served):
    for path, kind in (
        ("/static/wsm.css", "text/css"),
        ("/static/live.js", "javascript"),
        ("/static/actions.js", "javascript"),
    ):
        code, headers, body = served.request("GET", path)
        assert code == 200 and kind in headers["content-type"] and len(body) > 500, path
    assert served.request("GET", "/static/nope.js")[0] == 404


def test_pages_without_javascript_still_list_everything(served: Served):
    """No page needs a script to show its data: the rows are in the HTML itself, and the
    filter form and paging are plain GET links."""
    add_runs(served.storage, 2)
    dom = page(served, "/runs")
    form = dom.one("form", id="run-filters")
    assert form["method"] == "get" and form["action"] == "/runs"
    assert len(dom.find("tr", data_run=True)) == 2
    assert len(page(served, "/").find("tr", data_location=True)) == 3


@pytest.mark.parametrize("api", ["none", "no storage"])
def test_without_runs_kept_the_pages_still_show_locations(tmp_path, api: str):
    """`ctx.api` None, or an API whose storage is absent (`wsm serve`, a manager still
    opening it): locations and their definitions, no runs, no launch buttons."""
    served = Served(tmp_path, keeps_runs=api != "none")
    if api == "no storage":
        served.async_storage_of_api = None
    try:
        dom = page(served, "/")
        assert len(dom.find("tr", data_location=True)) == 3
        assert dom.find("a", data_count="in_progress") == []
        dom = page(served, "/locations/a")
        assert dom.find("button", data_action="launch") == []
        dom = page(served, "/runs")
        assert dom.find("tr", data_run=True) == []
        assert "keeps no runs" in "".join(dom.text)
        page(served, "/runs/0123456789", status=404)
    finally:
        served.close()


def test_jinja2_is_imported_at_the_first_page_not_before():
    code = (
        "import sys\n"
        "import workspace_manager.supervisor.manager\n"
        "from workspace_manager.web import pages\n"
        "pages.routes(None)\n"
        "assert 'jinja2' not in sys.modules, 'jinja2 imported early'\n"
        "pages.environment().get_template('overview.html')\n"
        "assert 'jinja2' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- against a real `wsm up` -------------------------------------------------------------------

E2E_REPO = """
from workspace_manager import ScheduleDefinition, job, repository, sensor, SkipReason

@job(description="prints a few lines", tags={"team": "pages"})
def hello(context):
    for i in range(3):
        print(f"hello line {i} <script>alert(1)</script>", flush=True)

nightly = ScheduleDefinition(name="nightly", job=hello, cron_schedule="0 2 * * *")

@sensor(job=hello, minimum_interval_seconds=3600)
def watch():
    return SkipReason("nothing new")

@repository
def repo():
    return [hello, nightly, watch]
"""


def test_real_wsm_up_serves_the_pages_and_a_run_launched_from_them(ws) -> None:
    """`wsm up --health`: every page over the lead's server, a launch with the page's session
    token and its log lines on the run page, the config check, and neither a location's
    env_vars value nor the API token on any page."""
    from e2e import WsmUp, wait_for

    ws.file("team/repo.py", E2E_REPO)
    path = ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "team/repo.py",
                        "location_name": "team",
                        "env_vars": {"WSM_PAGE_SECRET": SECRET_VALUE},
                    }
                }
            ]
        }
    )
    env = dict(ws.env, WSM_TEST_PAGES_TOKEN=TOKEN)
    argv = ("-w", str(path), "--api-token-env", "WSM_TEST_PAGES_TOKEN")
    with WsmUp(ws, *argv, env=env) as up:
        assert up.port is not None

        def get(path: str, cookie: str = "") -> Tuple[int, Dict[str, str], str]:
            conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=DEADLINE)
            try:
                conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
                resp = conn.getresponse()
                body = resp.read().decode()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
            finally:
                conn.close()

        def location_ready() -> bool:
            status = up.status()
            return status["daemon"] is not None and status["locations"]["team"]["state"] == "ready"

        wait_for(location_ready, 60, "the location and the daemon")
        code, headers, html = get("/")
        assert code == 200, html
        cookie = headers["set-cookie"].split(";", 1)[0]
        dom = Dom(html)
        dom.one("tr", data_location="team", data_state="ready")
        token = dom.one("meta", name="wsm-csrf")["content"]

        def listed() -> Optional[Dom]:
            found = Dom(get("/locations/team")[2])
            return found if found.find("tr", data_sensor="watch") else None

        dom = wait_for(listed, 30, "the location page to list the sensor")
        dom.one("tr", data_job="hello")
        dom.one("tr", data_schedule="nightly", data_status="STOPPED")

        # the page's own write: the config check, then POST /api/runs with the session token
        conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=DEADLINE)
        conn.request("POST", "/ui/config/check", body=b"greeting: hi\n")
        resp = conn.getresponse()
        config = json.loads(resp.read())["config"]
        assert resp.status == 200 and config == {"greeting": "hi"}
        body = {"location": "team", "job": "hello", "run_config": config, "tags": {"via": "page"}}
        conn.request(
            "POST",
            "/api/runs",
            body=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Cookie": cookie,
                "X-WSM-CSRF": token,
                "Origin": f"http://127.0.0.1:{up.port}",
                "Sec-Fetch-Site": "same-origin",
            },
        )
        resp = conn.getresponse()
        run = json.loads(resp.read())
        conn.close()
        assert resp.status == 201, run

        def finished() -> Optional[Dom]:
            found = Dom(get(f"/runs/{run['run_id']}", cookie)[2])
            status = found.one("*", data_run_status=True)["data-run-status"]
            return (
                found if status == "SUCCESS" and len(found.find("li", data_seq=True)) >= 3 else None
            )

        dom = wait_for(finished, 60, "the run to succeed with its log lines")
        assert dom.find("button", data_action="cancel") == []
        code, _, html = get(f"/runs/{run['run_id']}", cookie)
        assert "hello line 2 &lt;script&gt;" in html and "<script>alert(1)" not in html
        runs = Dom(get("/runs?location=team", cookie)[2]).find("tr", data_run=True)
        assert [r["data-run"] for r in runs] == [run["run_id"]]
        assert get("/locations/nope")[0] == 404
        for page_path in ("/", "/locations/team", "/runs", f"/runs/{run['run_id']}"):
            code, _, html = get(page_path, cookie)
            assert code == 200, page_path
            assert SECRET_VALUE not in html and TOKEN not in html, page_path
        assert get("/static/live.js")[0] == 200


# -- the stylesheet and the storage query --------------------------------------------------------


def _contrast(a: str, b: str) -> float:
    """WCAG 2.x contrast ratio of two #rrggbb colours."""

    def lum(colour: str) -> float:
        rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_every_state_has_its_colour_and_meets_wcag_aa_in_both_themes():
    """States are shown by word and colour: each word the pages show has a class, and each
    badge's text on its background reaches 4.5:1 (WCAG AA) in the light and the dark theme."""
    import re
    from pathlib import Path

    import workspace_manager.web as web
    from workspace_manager.http.view import STATES
    from workspace_manager.storage.records import RUN_STATUSES

    css = (Path(web.__file__).parent / "static" / "wsm.css").read_text()
    words = (
        {f".state-{s}" for s in (*STATES, "ok", "degraded")}
        | {f".status-{s.lower()}" for s in (*RUN_STATUSES, "RUNNING", "STOPPED")}
        | {f".tick-{t}" for t in ("started", "success", "skipped", "failure")}
    )
    missing = [w for w in words if w not in css]
    assert not missing
    light, dark = css.split("@media (prefers-color-scheme: dark)", 1)
    for theme in (light, dark[: dark.index("}\n}")]):
        colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", theme))
        for kind in ("ok", "bad", "warn", "busy", "idle"):
            ratio = _contrast(colours[f"{kind}-bg"], colours[f"{kind}-fg"])
            assert ratio >= 4.5, (kind, ratio)
        for fg in ("fg", "muted", "link"):
            assert _contrast(colours["bg"], colours[fg]) >= 4.5, fg


def test_location_run_counts_match_the_runs(tmp_path):
    """The overview's counts: SqliteStorage's grouped queries give what the base class's
    walk over every run gives."""
    from workspace_manager.storage.base import Storage

    storage = SqliteStorage(tmp_path / "runs.db")
    try:
        now = time.time()
        add_runs(storage, 2, location="a", status="QUEUED")
        add_runs(storage, 3, location="a", status="STARTED")
        add_runs(storage, 1, location="b", status="CANCELING")
        add_runs(storage, 4, location="b", status="FAILURE", ended_at=now - 60)
        add_runs(storage, 5, location="b", status="FAILURE", ended_at=now - 7200)
        add_runs(storage, 6, location="c", status="SUCCESS")
        expected = {
            "a": {"queued": 2, "in_progress": 3, "failed_recent": 0},
            "b": {"queued": 0, "in_progress": 1, "failed_recent": 4},
        }
        assert storage.location_run_counts(now - 3600) == expected
        assert Storage.location_run_counts(storage, now - 3600) == expected
    finally:
        storage.close()


def test_a_location_with_many_schedules_lists_50_and_links_to_all(served: Served):
    template = dict(served.daemon.items[0])
    served.daemon.items = [dict(template, name=f"s{i:03}") for i in range(150)]
    dom = page(served, "/locations/a")
    assert len(dom.find("tr", data_schedule=True)) == 50
    assert "50 of 150 schedules shown" in "".join(dom.text)
    assert len(page(served, "/locations/a?all=1").find("tr", data_schedule=True)) == 150


def test_counts_endpoint_gives_the_overview_counts(served: Served):
    add_runs(served.storage, 2, status="STARTED")
    add_runs(served.storage, 1, location="b", status="FAILURE")
    code, headers, body = served.request("GET", "/ui/counts")
    assert code == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body) == {
        "a": {"queued": 0, "in_progress": 2, "failed_recent": 0},
        "b": {"queued": 0, "in_progress": 0, "failed_recent": 1},
    }


def test_the_page_token_lets_its_own_session_write_and_no_other(served: Served):
    """What actions.js sends (JSON, X-WSM-CSRF from the meta, the session cookie, the
    browser's Origin) is a write the API takes; another session's token is refused."""
    _, headers, html = served.request("GET", "/locations/a")
    cookie = headers["set-cookie"].split(";", 1)[0]
    token = Dom(html).one("meta", name="wsm-csrf")["content"]
    other = Dom(served.request("GET", "/")[2]).one("meta", name="wsm-csrf")["content"]
    assert other != token  # a new session, a new token

    def reload(csrf: str) -> int:
        return served.request(
            "POST",
            "/api/locations/a/reload",
            b"{}",
            {
                "Content-Type": "application/json",
                "Cookie": cookie,
                "X-WSM-CSRF": csrf,
                "Origin": f"http://127.0.0.1:{served.port}",
                "Host": f"127.0.0.1:{served.port}",
                "Sec-Fetch-Site": "same-origin",
            },
        )[0]

    assert reload(other) == 403
    assert served.reloaded == []
    assert reload(token) == 200
    assert served.reloaded == [["a"]]
