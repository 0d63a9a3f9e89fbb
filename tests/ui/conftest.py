"""Browser tests of the web UI: Playwright drives Debian's Chromium (never a downloaded browser) against a
real server process; the live ones also run the real controller, Swarm and edge."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API keeps an event loop in the test thread; the tests reach Django only through
# child processes, but a helper that touches the ORM must not be refused for it.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = next(
    (
        path
        for path in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "")
        if path and Path(path).exists()
    ),
    None,
)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if CHROMIUM is None:
        message = "Debian's chromium is not installed: run `make setup` (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


@pytest.fixture(autouse=True)
def _generous_timeouts(page) -> Iterator[None]:
    # A busy shared machine: assertions wait for what they expect, up to this long.
    from playwright.sync_api import expect

    page.set_default_timeout(60_000)
    expect.set_options(timeout=60_000)
    yield
