"""A page opened from another host (the machine's own non-loopback address): its writes need
the API token of `wsm up --api-token-env VAR`, which the page asks for at the first 401 and
keeps for the tab."""

from __future__ import annotations

import re
from typing import Any, List

import pytest
from browser_support import WorkspaceDir, screenshot
from e2e import WsmUp, wait_for
from http_api_token_test import own_address

REPO = """
from workspace_manager import job, repository

@job
def hello(context):
    context.log.info("hello from the page")

@repository
def repo():
    return [hello]
"""


def test_a_remote_page_asks_for_the_api_token_and_then_writes(
    page: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    host = own_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    ws = WorkspaceDir(tmp_path_factory.mktemp("token-ws"))
    ws.file("repo.py", REPO)
    env = dict(ws.env, WSM_TEST_API_TOKEN="tok-page-7")
    with WsmUp(
        ws,
        "-f",
        "repo.py",
        "--health",
        f"{host}:0",
        "--api-token-env",
        "WSM_TEST_API_TOKEN",
        health=False,
        env=env,
    ) as up:
        found = wait_for(
            lambda: next(
                (
                    m
                    for ln in up.lines
                    if (m := re.search(r"health endpoint on http://[^ ]+:(\d+)", ln))
                ),
                None,
            ),
            30,
            "the health line",
        )
        url = f"http://{host}:{found.group(1)}"
        answers: List[str] = ["wrong-token", "tok-page-7"]
        asked: List[str] = []

        def on_dialog(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.accept(answers.pop(0))

        page.on("dialog", on_dialog)

        def job_row() -> bool:  # the page lists jobs once the location is ready
            page.goto(url + "/locations/repo")
            return page.locator('tr[data-job="hello"] button[data-action="launch"]').count() == 1

        wait_for(job_row, 60, "the job row")
        page.click('tr[data-job="hello"] button[data-action="launch"]')
        page.click('form#launch button[type="submit"]')
        # the first token is refused: the page says so in the alert, and no run exists
        alert = page.locator('form#launch [role="alert"]')
        wait_for(lambda: alert.is_visible() and alert.inner_text().strip() != "", 30, "the alert")
        assert len(asked) == 1 and "API token" in asked[0]
        assert "Bearer" in alert.inner_text() or "token" in alert.inner_text().lower()
        # the next write asks again (the kept token was refused) and goes through
        page.click('form#launch button[type="submit"]')
        page.wait_for_url(re.compile(r"/runs/[0-9a-f]{32}$"), timeout=30_000)
        assert len(asked) == 2 and "refused" in asked[1]
        screenshot(page, "token-run")
