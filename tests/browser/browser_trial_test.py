"""What a first user of the page stumbled on (issue 10's trial), in a real browser.

The browser is this folder's (conftest.py: Debian's Chromium through Playwright's
`executable_path`); the app is tests/web_pages_test.py's `Served` (the real web app on its
WebServer, with a fake daemon and reload), so each test sets up exactly the case it needs.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List
from urllib.parse import quote

import pytest
from browser_support import screenshot
from web_pages_test import HOSTILE, FakeDaemon, Served
from web_pages_test import page as html_page  # GET, check the DOM contract, parse

from workspace_manager.storage.records import LogLine, RunRecord

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def shot(pg: Any, name: str) -> None:
    screenshot(pg, f"trial-{name}")


def add_sensor_runs(served: Served, n: int) -> List[RunRecord]:
    """Runs of a sensor with a long run key, as billing's `failed_payments` makes them."""
    out = []
    for i in range(n):
        run_key = f"page-{uuid.uuid4().hex}{uuid.uuid4().hex}"
        run = served.storage.add_run(
            RunRecord(
                uuid.uuid4().hex,
                "a",
                "hello",
                created_at=time.time() - 100 + i,
                origin={
                    "kind": "sensor",
                    "name": "watch",
                    "location": "a",
                    "tick_id": 85,
                    "run_key": run_key,
                },
                run_key=run_key,
            )
        )
        out.append(served.storage.update_run(run.run_id, status="SUCCESS", ended_at=time.time()))
    return out


# -- a phone's width ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_phone_reads_every_page_without_scrolling_sideways(served: Served, browser, scheme):
    """At 360 px a stacked row's value of several pieces ("sensor <a>watch</a>, tick 85,
    run_key <code>...</code>") stays one flow of text (it was a flex row: each piece a
    narrow column, "tick" and "85" on lines of their own), and long words (a run key, a
    workspace's path) break instead of widening the page (it was 618 px wide)."""
    add_sensor_runs(served, 3)
    ctx = browser.new_context(viewport={"width": 360, "height": 780}, color_scheme=scheme)
    try:
        pg = ctx.new_page()
        for path in ("/", "/runs", "/locations/a"):
            pg.goto(f"http://127.0.0.1:{served.port}{path}")
            shot(pg, f"phone-{scheme}-{path.strip('/').replace('/', '-') or 'overview'}")
            width = pg.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, (path, width)
        pg.goto(f"http://127.0.0.1:{served.port}/runs")
        cell = pg.locator("#runs tbody tr[data-run] td[data-label=Origin]").first
        # the value wraps (the run key is long); in one flow of text its next lines start at
        # the value's left edge, as its first word does; as flex columns none did
        left, top, later = pg.evaluate(
            """(td) => { const r = document.createRange(); r.selectNodeContents(td);
                 const rects = Array.from(r.getClientRects()).filter(b => b.width > 0);
                 const first = rects[0];
                 return [first.left, first.top,
                         rects.filter(b => b.top > first.top + 4).map(b => b.left)]; }""",
            cell.element_handle(),
        )
        assert later, "the origin did not wrap"
        assert min(later) <= left + 1, (left, later)
    finally:
        ctx.close()


# -- reload ------------------------------------------------------------------------------------


class ReloadFails(Served):
    """A manager whose reload answers 200 but the new code did not load (SPEC section 3:
    the previous process still serves), as `POST /api/locations/NAME/reload` does."""

    async def reload(self, names: List[str]) -> Dict[str, Any]:
        self.reloaded.append(names)
        return {
            "restarted": names,
            "failed": {n: "RuntimeError: broken on purpose" for n in names},
            "broken": {},
        }


@pytest.mark.parametrize("path", ["/", "/locations/a"])
def test_a_reload_whose_code_fails_to_load_says_so_on_the_page(tmp_path, browser, path):
    """The reload of broken code answered 200 and the page showed nothing at all: the state
    stays `ready` (the old process serves), so the user could not tell it failed."""
    served = ReloadFails(tmp_path)
    try:
        pg = browser.new_page()
        pg.goto(f"http://127.0.0.1:{served.port}{path}")
        pg.locator('tr[data-location="a"] button[data-action=reload]').click()
        alert = pg.locator("main > [role=alert]")
        alert.wait_for(state="visible", timeout=5000)
        text = alert.inner_text()
        assert "RuntimeError: broken on purpose" in text and "previous" in text, text
        assert served.reloaded == [["a"]]
        pg.close()
    finally:
        served.close()


# -- the runs filter ---------------------------------------------------------------------------


def test_the_runs_job_filter_offers_the_job_names_it_matches_whole(served: Served):
    """Typing part of a job's name ("chatty" for chatty_job) found "No runs." with no hint
    that the filter matches a whole name: the field now says so and offers the names."""
    dom = html_page(served, "/runs")
    field = dom.one("input", name="job")
    assert field.get("list"), field
    assert "whole name" in "".join(dom.text)
    assert dom.one("datalist", id=field["list"]) is not None
    offered = [o["value"] for o in dom.find("option") if o.get("value") in ("hello", "slow")]
    assert sorted(offered) == ["hello", "slow"], offered
    # with a location chosen, that location's jobs only (the hostile one has none)
    dom = html_page(served, "/runs?location=" + quote(HOSTILE))
    assert not [o for o in dom.find("option") if o.get("value") in ("hello", "slow")]


# -- the README --------------------------------------------------------------------------------


def test_the_readme_quick_start_names_the_page():
    """A new user following the README's quick start never heard of the page: its address
    first appeared 470 lines further down, under "The web page"."""
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "http://127.0.0.1:8765/" in quick


# -- the manager gone --------------------------------------------------------------------------


def test_a_lost_stream_is_flagged_plainly_not_in_grey_small_print(served: Served, browser):
    """With the manager stopped, the open page kept "Manager: ok" and every row as it was;
    the one sign, "Reconnecting…", was 13 px grey text in the corner."""
    pg = browser.new_page()
    try:
        pg.goto(f"http://127.0.0.1:{served.port}/")
        flag = pg.locator("[data-live-flag]")
        pg.route("**/api/events**", lambda route: route.abort())  # as a stopped manager
        pg.route_web_socket("**/api/events/ws**", lambda ws: ws.close())
        pg.evaluate("window.wsmLive.reconnect()")
        for _ in range(100):
            if pg.evaluate("document.body.dataset.live") == "closed":
                break
            pg.wait_for_timeout(50)
        assert flag.inner_text().strip(), "no word for the lost stream"
        style = pg.evaluate(
            """() => { const s = getComputedStyle(document.querySelector('[data-live-flag]'));
                 const warn = getComputedStyle(document.documentElement)
                   .getPropertyValue('--warn-fg').trim();
                 return [s.color, s.backgroundColor, s.fontWeight, warn]; }"""
        )
        shot(pg, "manager-gone")
        assert style[1] not in ("rgba(0, 0, 0, 0)", "transparent"), style
        assert int(style[2]) >= 600, style
    finally:
        pg.close()


# -- a run's origin ----------------------------------------------------------------------------


def test_a_runs_origin_links_to_its_sensors_row_not_the_top_of_the_location(
    served: Served, browser
):
    """A run's origin "sensor failed_payments" led to the top of billing's page, a long page
    with the sensor far below; it now lands on the sensor's row (also for an origin stored
    without its location: the run's own)."""
    run = add_sensor_runs(served, 1)[0]
    bare = served.storage.add_run(
        RunRecord(uuid.uuid4().hex, "a", "hello", origin={"kind": "schedule", "name": "nightly"})
    )
    dom = html_page(served, f"/runs/{run.run_id}")
    assert dom.find("a", href="/locations/a#sensor-watch"), dom.find("a")
    dom = html_page(served, f"/runs/{bare.run_id}")
    assert dom.find("a", href="/locations/a#schedule-nightly"), dom.find("a")
    dom = html_page(served, "/runs")
    assert dom.find("a", href="/locations/a#sensor-watch")
    dom = html_page(served, "/locations/a")
    assert dom.one("tr", id="sensor-watch").get("data-sensor") == "watch"
    assert dom.one("tr", id="schedule-nightly").get("data-schedule") == "nightly"
    pg = browser.new_page()
    try:
        pg.goto(f"http://127.0.0.1:{served.port}/runs/{run.run_id}")
        pg.locator("#origin a").click()
        pg.wait_for_url("**/locations/a#sensor-watch")
        assert pg.evaluate("document.querySelector(':target').dataset.sensor") == "watch"
    finally:
        pg.close()


# -- a long log --------------------------------------------------------------------------------


def test_a_long_logs_note_does_not_claim_only_the_first_lines_are_shown(served: Served):
    """A 5,000-line run's page said "The first 1000 lines are shown" while, a moment later,
    it showed all 5,001 (the stream adds the rest)."""
    run = served.storage.add_run(RunRecord(uuid.uuid4().hex, "a", "hello"))
    served.storage.append_logs(
        [LogLine(run.run_id, time.time(), "stdout", f"line {i}") for i in range(1005)]
    )
    text = " ".join(" ".join(html_page(served, f"/runs/{run.run_id}").text).split())
    assert "first 1,000 lines" in text, text[-400:]
    assert "are shown" not in text
    assert "added from the live stream" in text


# -- a location that is not ready --------------------------------------------------------------


def test_a_location_not_ready_says_its_schedules_and_sensors_are_unknown_not_none(served: Served):
    """A location in `error` said "The location is error: ..." for its jobs, then "No
    schedules." and "No sensors.": it has some, they are just not known until it loads."""
    dom = html_page(served, "/locations/" + quote(HOSTILE, safe=""))
    text = " ".join(" ".join(dom.text).split())
    assert "No schedules" not in text and "No sensors" not in text, text
    assert "The location is error" not in text
    assert len(dom.find("p", data_unknown=True)) == 3
    assert "Not known while the location is error" in text
    # a ready location lists its own, with no such words
    dom = html_page(served, "/locations/a")
    assert dom.one("tr", data_sensor="watch") and not dom.find("p", data_unknown=True)


# -- live updates keep the look ----------------------------------------------------------------


def location_doc(**fields: Any) -> Dict[str, Any]:
    return {
        "name": "a",
        "state": "ready",
        "pid": 100,
        "restarts": 2,
        "python": "3.12.1",
        "environment": "/new/env/bin/python3",
        "uptime_seconds": 1.0,
        "rss_bytes": 1000,
        "error": None,
        "traceback": None,
        **fields,
    }


def location_event(**fields: Any) -> str:
    """The event as Server-Sent Events text (the page's fallback without WebSocket)."""
    doc = location_doc(**fields)
    return "retry: 60000\nid: 1\nevent: location\ndata: " + json.dumps(doc) + "\n\n"


def feed_location_event(pg: Any, **fields: Any) -> None:
    """Answer the page's event stream with one `location` event: its WebSocket
    (/api/events/ws, one JSON message) and, for the fallback, its EventSource."""
    message = json.dumps({"id": 1, "event": "location", "data": location_doc(**fields)})
    pg.route_web_socket("**/api/events/ws**", lambda ws: ws.send(message))
    pg.route(
        "**/api/events?**",
        lambda route: route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=location_event(**fields),
        ),
    )


@pytest.mark.parametrize("path", ["/", "/locations/a"])
def test_a_live_location_event_keeps_the_environment_in_monospace(served: Served, browser, path):
    """After a kill -9 and restart the open page's Environment turned from a monospace path
    into body text: the event set the text of the cell holding the <code>, dropping it."""
    pg = browser.new_page()
    try:
        feed_location_event(pg)
        pg.goto(f"http://127.0.0.1:{served.port}{path}")
        where = '[data-field="environment"]'
        # one evaluation finds the cell and its text node: the page re-renders cells as
        # events come, so two evaluations could see two different cells (a flake in CI)
        look = f"""() => {{ const e = Array.from(document.querySelectorAll('{where}'))
              .find(x => x.textContent.includes('/new/env'));
              if (!e) return null;
              const t = document.evaluate('.//text()[contains(., "/new/env")]', e, null,
                XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
              if (!t) return null;
              return [t.parentElement.tagName, getComputedStyle(t.parentElement).fontFamily]; }}"""
        got = None
        for _ in range(600):  # 30 s: 5 s ran out once in CI's wheel stage
            got = pg.evaluate(look)
            if got is not None:
                break
            pg.wait_for_timeout(50)
        assert got is not None, "the location event with /new/env never reached the page"
        assert got[0] == "CODE", got
        assert "mono" in got[1].lower(), got
    finally:
        pg.close()


# -- start and stop ----------------------------------------------------------------------------


class TogglingDaemon(FakeDaemon):
    """Starts and stops as the daemon does: the answer is the instigator's document, with
    its next tick while RUNNING and none while STOPPED."""

    async def set_status(self, kind: str, name: str, status: str) -> dict:
        location, _, bare = name.rpartition(":")
        for item in self.items:
            if item["kind"] == kind and item["name"] == bare and item["location"] == location:
                item["status"] = status
                item["next_tick"] = 1796098500.0 if status == "RUNNING" else None
                return dict(item)
        raise LookupError(name)


def test_starting_and_stopping_a_schedule_updates_its_next_tick(served: Served, browser):
    """Start on a stopped schedule left its Next tick at "—" (a reload showed the time), and
    Stop left the time of a tick that will not come."""
    served.daemon = TogglingDaemon()
    served.daemon.items[0]["status"] = "STOPPED"
    served.daemon.items[0]["next_tick"] = None
    pg = browser.new_page()
    try:
        pg.goto(f"http://127.0.0.1:{served.port}/locations/a")
        row = pg.locator("tr[data-schedule=nightly]")
        cell = row.locator('[data-field="next_tick"]')
        assert cell.inner_text().strip() == "—"
        row.locator("button[data-action=start]").click()
        for _ in range(100):
            if row.get_attribute("data-status") == "RUNNING":
                break
            pg.wait_for_timeout(50)
        assert cell.inner_text().strip() == "2026-12-01 04:15:00 UTC"
        assert cell.locator("time").get_attribute("datetime") == "2026-12-01T04:15:00Z"
        row.locator("button[data-action=stop]").click()
        for _ in range(100):
            if row.get_attribute("data-status") == "STOPPED":
                break
            pg.wait_for_timeout(50)
        assert cell.inner_text().strip() == "—"
    finally:
        pg.close()


def test_a_reload_that_worked_says_so_on_its_button(served: Served, browser):
    """Reload on a ready location showed "Reloading…" for a blink, then "Reload" again:
    nothing on the overview says whether it happened."""
    pg = browser.new_page()
    try:
        pg.goto(f"http://127.0.0.1:{served.port}/")
        button = pg.locator('tr[data-location="a"] button[data-action=reload]')
        button.click()
        seen = []
        for _ in range(60):
            seen.append(button.inner_text())
            if "Reloaded" in seen[-1]:
                break
            pg.wait_for_timeout(25)
        assert "Reloaded" in seen[-1], seen
        assert served.reloaded == [["a"]]
        assert not pg.locator("main > [role=alert]").is_visible()
        for _ in range(100):
            if button.inner_text() == "Reload":
                break
            pg.wait_for_timeout(50)
        assert button.inner_text() == "Reload"
    finally:
        pg.close()
