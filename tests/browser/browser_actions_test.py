"""Actions and live updates in a real headless Chromium, through the DOM contract
(docs/web.md): launching a job from the page and watching its log lines stream, cancelling a
run, stopping and starting a schedule and a sensor, a `kill -9` of a location seen on an open
page within a second, and a write from another origin's page refused."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest
from browser_support import OtherOrigin, Served, screenshot, wait_live
from e2e import wait_for

RUN_URL = re.compile(r"/runs/([0-9A-Za-z_-]+)$")


def api_post(served: Served, path: str, body: Optional[Dict[str, Any]] = None) -> Tuple[int, Any]:
    """A POST to the manager's API from this test (loopback, no browser headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", served.up.port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body or {}), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def launch(served: Served, job: str, config: Optional[Dict[str, Any]] = None) -> str:
    code, data = api_post(
        served, "/api/runs", {"location": "team", "job": job, "run_config": config or {}}
    )
    assert code in (200, 201), data
    return str(data["run_id"])


def instigator(served: Served, kind: str, name: str) -> Dict[str, Any]:
    """`wsm schedule|sensor list --json`'s entry for `name`."""
    items = served.wsm_json(kind, "list")
    found = [i for i in items if i.get("name") == name]
    assert len(found) == 1, items
    return dict(found[0])


def log_lines(page: Any) -> List[Dict[str, Any]]:
    return list(
        page.locator("ol#log li[data-seq]").evaluate_all(
            "ls => ls.map(l => ({seq: Number(l.dataset.seq), text: l.textContent}))"
        )
    )


def test_launch_a_job_from_the_page_and_watch_its_log_lines_stream(
    page: Any, served_workspace: Served
) -> None:
    served = served_workspace
    page.goto(served.url + "/locations/team")
    page.locator("section#jobs tr[data-job=ticker] button[data-action=launch]").click()
    form = page.locator("form#launch")
    form.wait_for(state="visible")

    # a config that is not YAML is refused in the page, with where, and nothing is launched
    before = {r["run_id"] for r in served.runs()}
    form.locator("textarea[name=run_config]").fill("lines: [1, 2")
    form.locator("button[type=submit]").click()
    alert = page.locator("[role=alert]").filter(has_text=re.compile(r"line|column", re.I))
    alert.first.wait_for(state="visible")
    assert RUN_URL.search(page.url) is None
    assert {r["run_id"] for r in served.runs()} == before

    # run config as YAML: 40 lines, one every 0.2 s
    form.locator("textarea[name=run_config]").fill("lines: 40\n")
    screenshot(page, "launch-form")
    form.locator("button[type=submit]").click()
    page.wait_for_url(RUN_URL)
    match = RUN_URL.search(page.url)
    assert match is not None
    run_id = match.group(1)
    assert served.run(run_id)["run_config"] == {"lines": 40}
    wait_live(page)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    wait_for(lambda: len(log_lines(page)) >= 3, 30, "the first log lines on the page")
    status = page.locator("[data-run-status]").first
    first = log_lines(page)
    seen = served.run(run_id)["status"]
    assert seen == "STARTED", f"lines are on the page, the API says the run is {seen}"
    wait_for(lambda: len(log_lines(page)) >= len(first) + 5, 10, "more lines, appended live")
    # the status word follows too (the page may have been rendered while it was STARTING)
    try:
        wait_for(
            lambda: status.inner_text().strip().upper() == served.run(run_id)["status"],
            5,
            "the run's status shown",
        )
    except AssertionError:
        raise AssertionError(
            f"lines stream, the run is {served.run(run_id)['status']}, the page shows "
            f"{status.inner_text()!r}"
        ) from None
    screenshot(page, "run-streaming")

    page.wait_for_function(
        "() => document.querySelector('[data-run-status]').textContent.trim().toUpperCase() === 'SUCCESS'",
        timeout=30_000,
    )
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    lines = log_lines(page)
    ticks = [ln["text"] for ln in lines if "tick " in ln["text"]]
    assert [int(re.search(r"tick (\d+)", t).group(1)) for t in ticks] == list(range(40))
    seqs = [ln["seq"] for ln in lines]
    assert seqs == sorted(set(seqs)), "a line missing, twice or out of order"
    stored = served.api(f"/api/runs/{run_id}/logs?limit=1000")["items"]
    assert seqs == [ln["seq"] for ln in stored]
    assert page.locator("button[data-action=cancel]:visible").count() == 0
    screenshot(page, "run")
    assert page.js_errors == []


def test_cancel_a_running_run_from_the_page(page: Any, served_workspace: Served) -> None:
    served = served_workspace
    run_id = launch(served, "sleeper", {"seconds": 600})
    served.wait_run(run_id, "STARTED")
    page.goto(f"{served.url}/runs/{run_id}")
    wait_live(page)
    page.on("dialog", lambda dialog: dialog.accept())  # an "are you sure?" confirm()
    status = page.locator("[data-run-status]").first
    shown = status.inner_text().strip().upper()
    assert shown == "STARTED", f"the run is STARTED (API), its page rendered after shows {shown}"
    page.locator("button[data-action=cancel]").click()
    assert served.wait_run(run_id, "CANCELED", timeout=30)["status"] == "CANCELED"
    try:
        page.wait_for_function(
            "() => document.querySelector('[data-run-status]').textContent.trim().toUpperCase()"
            " === 'CANCELED'",
            timeout=10_000,
        )
    except Exception:
        shown = status.inner_text()
        screenshot(page, "run-cancel-not-shown")
        raise AssertionError(f"the run is CANCELED, the page still shows {shown!r}") from None
    assert page.locator("button[data-action=cancel]:visible").count() == 0
    assert page.js_errors == []


@pytest.mark.parametrize("kind,name", [("schedule", "nightly"), ("sensor", "watcher")])
def test_stop_and_start_a_schedule_or_sensor_from_the_page(
    page: Any, served_workspace: Served, kind: str, name: str
) -> None:
    served = served_workspace
    assert instigator(served, kind, name)["status"] == "RUNNING"
    page.goto(served.url + "/locations/team")
    row = f"section#{kind}s tr[data-{kind}={name}]"
    assert page.locator(row).get_attribute("data-status") == "RUNNING"

    page.locator(f"{row} button[data-action=stop]").click()
    page.wait_for_selector(f"{row}[data-status=STOPPED]")
    assert "STOPPED" in page.locator(row).inner_text().upper()  # the word, not only a colour
    wait_for(
        lambda: instigator(served, kind, name)["status"] == "STOPPED", 10, f"{kind} list: STOPPED"
    )
    if kind == "schedule":
        screenshot(page, "location-schedule-stopped")

    page.locator(f"{row} button[data-action=start]").click()
    page.wait_for_selector(f"{row}[data-status=RUNNING]")
    wait_for(
        lambda: instigator(served, kind, name)["status"] == "RUNNING", 10, f"{kind} list: RUNNING"
    )
    assert page.js_errors == []


def test_reload_a_location_from_the_overview(page: Any, served_workspace: Served) -> None:
    served = served_workspace
    before = served.up.wait_state("spare0", "ready")
    page.goto(served.url + "/")
    wait_live(page)
    page.locator('#locations tr[data-location="spare0"] button[data-action=reload]').click()
    after = wait_for(
        lambda: (
            lambda loc: loc if loc["state"] == "ready" and loc["pid"] != before["pid"] else None
        )(served.up.location("spare0")),
        30,
        "spare0 reloaded into a new process",
    )
    page.wait_for_selector('#locations tr[data-location="spare0"][data-state=ready]')
    assert after["pid"] != before["pid"]
    assert page.locator("main [role=alert]:visible").count() == 0
    assert page.js_errors == []


# Records, in the page's own clock, when the row of a location first shows another state
# than ready; observes the whole table, so a row replaced rather than updated counts too.
WATCH_NOT_READY = """
(name) => {
  window.__notReady = null;
  const seen = () => {
    const row = document.querySelector(`#locations tr[data-location="${name}"]`);
    if (row && row.dataset.state !== "ready" && window.__notReady === null) {
      const cell = row.querySelector(".state");
      window.__notReady = {at: performance.timeOrigin + performance.now(),
                           state: row.dataset.state, word: cell ? cell.textContent.trim() : ""};
    }
  };
  new MutationObserver(seen).observe(document.querySelector("#locations"),
    {attributes: true, childList: true, subtree: true, characterData: true});
}
"""


def test_kill_9_of_a_location_shows_as_not_ready_on_an_open_page_within_a_second(
    page: Any, served_workspace: Served
) -> None:
    served = served_workspace
    victim = served.locations[-1]
    loc = served.up.wait_state(victim, "ready")
    page.goto(served.url + "/")
    wait_live(page)
    page.evaluate(WATCH_NOT_READY, victim)
    killed_at = time.time() * 1000.0  # the same wall clock as the page's timeOrigin + now()
    os.kill(int(loc["pid"]), signal.SIGKILL)
    page.wait_for_function("() => window.__notReady !== null", timeout=10_000)
    seen = page.evaluate("window.__notReady")
    latency = seen["at"] - killed_at
    print(f"\nkill -9 of {victim} -> shown as {seen['state']!r} on the page after {latency:.0f} ms")
    assert seen["state"] != "ready"
    assert seen["word"] and seen["word"].lower() != "ready", seen  # a word, not only a colour
    assert latency < 1000, f"shown after {latency:.0f} ms"
    screenshot(page, "overview-location-killed")
    # it comes back by itself, and the page follows
    served.up.wait_state(victim, "ready", timeout=60)
    page.wait_for_selector(
        f'#locations tr[data-location="{victim}"][data-state=ready]', timeout=15_000
    )


ATTACK = """<!doctype html><title>elsewhere</title>
<iframe name="sink"></iframe>
<form id="f" method="POST" target="sink" enctype="text/plain" action="{manager}/api/runs">
  <input name='{{"location":"team","job":"quick","tags":{{"a":"' value='"}}}}'>
</form>
<form id="g" method="POST" target="sink" action="{manager}/api/schedules/nightly/stop"></form>
<script>
const results = [];
const tryit = (what, p) => p.then(r => results.push(what + " " + r.status),
                                  e => results.push(what + " failed"));
tryit("no-cors", fetch("{manager}/api/runs", {{method: "POST", mode: "no-cors",
  credentials: "include", headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{location: "team", job: "quick"}})}}));
tryit("cors-json", fetch("{manager}/api/runs", {{method: "POST", credentials: "include",
  headers: {{"Content-Type": "application/json"}},
  body: JSON.stringify({{location: "team", job: "quick"}})}}));
tryit("cors-stop", fetch("{manager}/api/schedules/nightly/stop", {{method: "POST",
  credentials: "include", headers: {{"Content-Type": "application/json"}}, body: "{{}}"}}));
document.getElementById("f").submit();
setTimeout(() => document.getElementById("g").submit(), 300);
setTimeout(() => {{ window.__done = results; }}, 1500);
</script>
"""


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # same site, then another site
def test_a_write_from_another_origins_page_fails_and_changes_nothing(
    page: Any, served_workspace: Served, host: str
) -> None:
    served = served_workspace
    # the user has the manager's page open in this browser: its session cookie exists
    page.goto(served.url + "/")
    assert any(c["name"] == "wsm_session" for c in page.context.cookies(served.url))
    before = {r["run_id"] for r in served.runs()}
    schedule_before = instigator(served, "schedule", "nightly")["status"]

    answers: List[Tuple[str, str, int]] = []
    page.on(
        "response",
        lambda r: (
            answers.append((r.request.method, r.url, r.status))
            if r.url.startswith(served.url + "/api/")
            else None
        ),
    )
    other = OtherOrigin({"attack.html": ATTACK.format(manager=served.url)})
    try:
        page.goto(f"http://{host}:{other.port}/attack.html")
        page.wait_for_function("() => window.__done !== undefined", timeout=15_000)
        results = page.evaluate("window.__done")
    finally:
        other.close()
    time.sleep(1.0)  # a run that slipped through would be queued by now
    writes = [a for a in answers if a[0] == "POST"]
    print(f"\nfrom http://{host}:{other.port}: {results}; POSTs answered: {writes}")
    # refused by the origin and session-token check itself (403), not merely for a media type
    assert writes and all(status == 403 for _, _, status in writes), writes
    assert {r["run_id"] for r in served.runs()} == before
    assert instigator(served, "schedule", "nightly")["status"] == schedule_before
    # cors-json and cors-stop were never readable by the other page
    assert not any(r.startswith("cors") and not r.endswith("failed") for r in results), results


def test_launch_with_json_config_and_tags_from_the_keyboard_alone(
    page: Any, served_workspace: Served
) -> None:
    served = served_workspace
    page.goto(served.url + "/locations/team")
    target = "section#jobs tr[data-job=quick] button[data-action=launch]"
    # Tab reaches the button: it is a real, focusable control
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", target):
            break
    else:
        raise AssertionError("Tab never reached the launch button of `quick`")
    page.keyboard.press("Enter")
    form = page.locator("form#launch")
    form.wait_for(state="visible")
    form.locator("textarea[name=run_config]").focus()
    page.keyboard.insert_text('{"seconds": 0, "note": "from the keyboard"}')
    form.locator("[name=tags]").focus()
    page.keyboard.insert_text("owner=keyboard\nticket=WSM-10")
    form.locator("button[type=submit]").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(RUN_URL)
    match = RUN_URL.search(page.url)
    assert match is not None
    run = served.wait_run(match.group(1), "SUCCESS")
    assert run["job"] == "quick"
    assert run["run_config"] == {"seconds": 0, "note": "from the keyboard"}
    assert run["tags"].get("owner") == "keyboard" and run["tags"].get("ticket") == "WSM-10"
    assert page.js_errors == []


def test_another_jobs_launch_form_starts_empty(page: Any, served_workspace: Served) -> None:
    """Tags typed for one job rode along silently with the next job's launch: another job's
    form starts empty, the same job's keeps what was typed (a retry after an error)."""
    page.goto(served_workspace.url + "/locations/team")
    config, tags = page.locator("#launch-config"), page.locator("#launch-tags")
    page.click('tr[data-job="ticker"] button[data-action="launch"]')
    config.fill('{"lines": 3}')
    tags.fill("who=me")
    page.click('tr[data-job="ticker"] button[data-action="launch"]')
    assert (config.input_value(), tags.input_value()) == ('{"lines": 3}', "who=me")
    page.click('tr[data-job="quick"] button[data-action="launch"]')
    assert (config.input_value(), tags.input_value()) == ("", "")
