"""The web terminal in Debian's Chromium, driven by Playwright: a logged-in person opens a site's terminal,
types `echo hi` and reads `hi`; a resized window resizes the shell's terminal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from shell_helpers import login_session
from swarm_helpers import eventually

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

CHROMIUM = Path("/usr/lib/chromium/chromium")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = "Debian's chromium is not installed (make setup installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


TERMINAL = "document.querySelector('.director-terminal').directorTerminal"


def _screen(page) -> str:
    return page.evaluate(
        f"() => {{ const b = {TERMINAL}.buffer.active; const lines = [];"
        " for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));"
        " return lines.join('\\n'); }"
    )


def _size(page) -> tuple[int, int]:
    rows, cols = page.evaluate(f"() => [{TERMINAL}.rows, {TERMINAL}.cols]")
    return rows, cols


def test_echo_hi_in_the_browser_terminal_and_a_resize(sites, browser):
    cookie = login_session(sites.env, "alice")
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    context.add_cookies([{"name": "director_session", "value": cookie, "url": sites.api_url}])
    page = context.new_page()
    outside: list[str] = []
    page.on(
        "request", lambda request: outside.append(request.url) if "127.0.0.1" not in request.url else None
    )
    try:
        page.goto(f"{sites.api_url}/sites/hello/terminal")
        page.locator(".director-terminal[data-state=connected]").wait_for()
        page.locator(".director-terminal").click()
        # Quoted so that the echoed command line itself never shows "hi" alone on a line.
        page.keyboard.type("echo h''i\n")
        eventually(lambda: "\nhi" in _screen(page), 60, "hi on the screen")
        rows, cols = _size(page)
        page.keyboard.type("stty size\n")
        eventually(lambda: f"\n{rows} {cols}" in _screen(page), 60, f"stty size {rows} {cols}")
        page.set_viewport_size({"width": 600, "height": 400})
        eventually(lambda: _size(page) != (rows, cols), 30, "the terminal to fit the smaller window")
        rows, cols = _size(page)
        page.keyboard.type("stty size\n")
        eventually(
            lambda: f"\n{rows} {cols}" in _screen(page), 60, f"stty size {rows} {cols} after the resize"
        )
        page.keyboard.type("exit\n")
        page.locator(".director-terminal[data-state=ended]").wait_for()
    finally:
        context.close()
    assert outside == [], "the page asked for something outside Director"
