"""Fixtures of the real-browser tests: Debian's headless Chromium driven by Playwright, and a
real `wsm up --health 127.0.0.1:0` serving a small workspace to it.

Playwright is launched with `executable_path` on the system's Chromium (.ci/run installs
Debian's `chromium`); `playwright install`, which downloads a browser build of its own, is
never used. Without a Chromium or without Playwright the tests skip with the reason, except
under CI (`CI=true`), where a missing browser is a failure: a green CI must have run them.

Screenshots are test artefacts, written under `$WSM_ARTIFACTS/browser/` (default:
`test-artifacts/browser/` at the top of the checkout, which git ignores)."""

from __future__ import annotations

from typing import Any, Iterator, List

import pytest
from browser_support import (
    Served,
    WorkspaceDir,
    WsmUp,
    chromium_or_skip,
    launch_chromium,
    write_workspace,
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (about 1 s to start)."""
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh browser context (its own cookies, so its own session), 1280x800."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: List[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.js_errors = errors  # read by tests that assert the page's script ran cleanly
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture(scope="module")
def served_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real `wsm up --health 127.0.0.1:0` on the browser tests' workspace, every location
    ready; stopped at the end with its whole process tree checked gone."""
    ws = WorkspaceDir(tmp_path_factory.mktemp("browser-ws"))
    names = write_workspace(ws, spare=2)
    with WsmUp(ws) as up:
        up.wait_all_settled(90)
        for name in names:
            up.wait_state(name, "ready", timeout=60)
        yield Served(ws=ws, up=up, url=f"http://127.0.0.1:{up.port}", locations=names)
        up.track()
    # WsmUp.__exit__ stopped it and asserted no process of its tree is left
