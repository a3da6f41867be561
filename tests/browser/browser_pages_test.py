"""The pages in a real headless Chromium, read only through the DOM contract
(docs/web.md): clicking through the overview to a location and to the runs, a phone's width
without horizontal scrolling, the dark theme; a screenshot of each page as a test artefact."""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List

import pytest
from browser_support import Served, no_horizontal_scroll, screenshot, wait_live

LUMINANCE = """
(el) => {
  const channels = (c) => (c.match(/[\\d.]+/g) || []).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = channels(c).map((v) => v / 255);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  // the first ancestor with an opaque background is what the text is really on
  let node = el, bg = "rgba(0, 0, 0, 0)";
  while (node) {
    const c = getComputedStyle(node).backgroundColor;
    if (!/rgba\\(.*, 0\\)$/.test(c) && c !== "transparent") { bg = c; break; }
    node = node.parentElement;
  }
  if (bg === "rgba(0, 0, 0, 0)") bg = "rgb(255, 255, 255)";  // the canvas default
  return {background: lum(bg), text: lum(getComputedStyle(el).color), bg, fg: getComputedStyle(el).color};
}
"""


def launch_quick(served: Served) -> str:
    """A finished run of `quick`, started through the API (loopback, no browser headers)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", served.up.port, timeout=10)
    try:
        body = json.dumps({"location": "team", "job": "quick"})
        conn.request("POST", "/api/runs", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        assert resp.status in (200, 201), data
    finally:
        conn.close()
    run_id = str(data["run_id"])
    served.wait_run(run_id, "SUCCESS")
    return run_id


def test_overview_shows_every_location_and_clicks_through_to_a_location_and_the_runs(
    page: Any, served_workspace: Served
) -> None:
    served = served_workspace
    page.goto(served.url + "/")
    assert page.locator("main#main").count() == 1
    assert page.locator("a[data-nav=overview]").count() >= 1
    assert page.locator("a[data-nav=runs]").count() >= 1

    rows = page.locator("#locations tr[data-location]")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.location)")) == sorted(
        served.locations
    )
    for name in served.locations:
        row = page.locator(f'#locations tr[data-location="{name}"]')
        assert row.get_attribute("data-state") == "ready"
        # the state is a word, not only a colour
        assert row.locator(".state").inner_text().strip().lower() == "ready"
        assert row.locator("button[data-action=reload]").count() == 1
    assert page.locator("[data-count=in_progress]").count() >= 1
    assert page.locator("[data-count=failed_recent]").count() >= 1
    screenshot(page, "overview")

    page.locator('#locations tr[data-location="team"] a[data-link=location]').click()
    page.wait_for_url(re.compile(r"/locations/team$"))
    jobs = page.locator("section#jobs")
    assert sorted(
        jobs.locator("tr[data-job]").evaluate_all("rs => rs.map(r => r.dataset.job)")
    ) == [
        "quick",
        "sleeper",
        "ticker",
    ]
    ticker = jobs.locator("tr[data-job=ticker]")
    assert "logs a line every 0.2 s" in ticker.inner_text()
    assert "web" in ticker.inner_text()  # its tag team=web
    assert ticker.locator("button[data-action=launch]").count() == 1
    nightly = page.locator("section#schedules tr[data-schedule=nightly]")
    assert nightly.get_attribute("data-status") == "RUNNING"
    assert "0 3 * * *" in nightly.inner_text()
    assert "Europe/Berlin" in nightly.inner_text()
    assert nightly.locator("button[data-action=stop]").count() == 1
    watcher = page.locator("section#sensors tr[data-sensor=watcher]")
    assert watcher.get_attribute("data-status") == "RUNNING"
    screenshot(page, "location")

    page.locator("a[data-nav=runs]").first.click()
    page.wait_for_url(re.compile(r"/runs(\?.*)?$"))
    assert page.locator("table#runs").count() == 1
    assert page.locator("form#run-filters select[name=status]").count() == 1
    assert page.locator("form#run-filters select[name=location]").count() == 1
    assert page.locator("form#run-filters input[name=job]").count() == 1
    screenshot(page, "runs-empty")

    page.locator("a[data-nav=overview]").first.click()
    page.wait_for_url(re.compile(r"/$"))
    assert page.locator("#locations tr[data-location]").count() == len(served.locations)
    assert page.js_errors == []


def test_runs_list_filters_and_links_to_a_run_page(page: Any, served_workspace: Served) -> None:
    served = served_workspace
    run_id = launch_quick(served)
    page.goto(served.url + "/runs")
    row = page.locator(f'table#runs tr[data-run="{run_id}"]')
    assert row.get_attribute("data-status") == "SUCCESS"
    assert "success" in row.inner_text().lower()
    screenshot(page, "runs")

    page.locator("form#run-filters select[name=status]").select_option("FAILURE")
    submit = page.locator("form#run-filters [type=submit]")
    if submit.count():
        submit.first.click()
    else:
        page.locator("form#run-filters input[name=job]").press("Enter")
    page.wait_for_url(re.compile(r"status=FAILURE"))
    assert page.locator(f'table#runs tr[data-run="{run_id}"]').count() == 0

    page.goto(served.url + "/runs?job=quick")
    page.locator(f'table#runs tr[data-run="{run_id}"] a[data-link=run]').click()
    page.wait_for_url(re.compile(rf"/runs/{run_id}$"))
    assert page.locator("[data-run-status]").first.inner_text().strip().upper() == "SUCCESS"
    assert "done" in page.locator("ol#log").inner_text()
    for section in ("history", "config", "origin"):
        assert page.locator(f"section#{section}").count() == 1
    # a final run has nothing to cancel
    assert page.locator("button[data-action=cancel]:visible").count() == 0
    screenshot(page, "run")
    assert page.js_errors == []


def test_every_page_fits_a_phone_width_without_horizontal_scroll(
    browser: Any, served_workspace: Served
) -> None:
    served = served_workspace
    run_id = launch_quick(served)
    context = browser.new_context(
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = context.new_page()
        overflow: Dict[str, Dict[str, int]] = {}
        for name, path in (
            ("overview", "/"),
            ("location", "/locations/team"),
            ("runs", "/runs"),
            ("run", f"/runs/{run_id}"),
        ):
            page.goto(served.url + path)
            page.wait_for_load_state("load")
            sizes = no_horizontal_scroll(page)
            if sizes["scroll"] > sizes["client"]:
                overflow[path] = sizes
            screenshot(page, f"phone-{name}")
        assert overflow == {}, f"wider than the 360 px screen: {overflow}"
    finally:
        context.close()


def test_dark_theme_follows_the_system(browser: Any, served_workspace: Served) -> None:
    served = served_workspace
    seen: List[Dict[str, Any]] = []
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
        try:
            page = context.new_page()
            page.goto(served.url + "/")
            main = page.locator("main#main")
            seen.append(main.evaluate(LUMINANCE))
            # the state word is still there, readable on the dark background
            cell = page.locator('#locations tr[data-location="team"] .state')
            assert cell.inner_text().strip().lower() == "ready"
            if scheme == "dark":
                screenshot(page, "overview-dark")
        finally:
            context.close()
    light, dark = seen
    assert light["background"] > 0.5 and light["text"] < 0.5, light
    assert dark["background"] < 0.3 and dark["text"] > 0.5, dark


def test_the_page_needs_nothing_from_outside(page: Any, served_workspace: Served) -> None:
    """Offline, no CDN: every request a page makes goes to the manager itself."""
    served = served_workspace
    elsewhere: List[str] = []
    page.on(
        "request",
        lambda req: (
            None if req.url.startswith((served.url, "data:")) else elsewhere.append(req.url)
        ),
    )
    for path in ("/", "/locations/team", "/runs"):
        page.goto(served.url + path)
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)  # what the page's scripts fetch after the load event
    assert elsewhere == []


@pytest.mark.xfail(
    strict=True,
    reason="each open page holds one HTTP/1.1 connection for its event stream and Chromium "
    "opens at most 6 to a host per profile: the 7th tab of the page never loads. Fix in the "
    "pages (one stream shared by the tabs, or streams closed in hidden tabs), then drop this mark",
)
def test_seven_tabs_of_the_page_in_one_browser_all_load_and_go_live(
    browser: Any, served_workspace: Served
) -> None:
    served = served_workspace
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        for tab in range(1, 8):
            page = context.new_page()
            try:
                page.goto(served.url + "/", timeout=10_000)
                wait_live(page, timeout_ms=10_000)
            except Exception as exc:
                raise AssertionError(f"tab {tab} did not load and go live: {exc}") from None
    finally:
        context.close()
