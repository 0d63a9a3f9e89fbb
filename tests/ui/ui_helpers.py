"""A Director server for browser tests: its database and users made by a child process, the real ASGI app
(`python -m orchestrator.api_server serve`) on loopback, and signing in through the login page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from specs.config import Settings

REPO = Path(__file__).resolve().parents[2]
# dave signs in only where failed logins are tried, so that his wait holds up no other test.
PASSWORDS = {
    "admin": "admin-password",
    "alice": "alice-password",
    "bob": "bob-password",
    "dave": "dave-password",
}
SCREENSHOTS = REPO / "docs" / "screenshots"
# Browser tests wait for the controller and the edge on a busy machine: generous, never fixed sleeps.
LIVE_SECONDS = 90_000


@dataclass
class UiServer:
    url: str
    settings: Settings
    tokens: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    def api(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=30
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def environment(settings: Settings, port: int) -> dict[str, str]:
    return os.environ | {
        "DIRECTOR_STATE_DIR": str(settings.state_dir),
        "DIRECTOR_INSTANCE": settings.instance,
        "DIRECTOR_HTTP_PORT": str(settings.http_port),
        "DIRECTOR_SITES_DOMAIN": settings.sites_domain,
        "DIRECTOR_API_PORT": str(port),
        "DJANGO_SETTINGS_MODULE": "ui.settings",
        "PYTHONPATH": str(REPO),
        # The pages are what is tested here, on loopback, as behind a proxy that terminates TLS.
        "DIRECTOR_API_TLS": "off",
        # A wait after failed logins that cannot lapse while a busy machine loads the next page.
        "DIRECTOR_LOGIN_DELAY_SECONDS": "120",
    }


def start_ui_server(settings: Settings, port: int) -> UiServer:
    users = [
        f"{name}:{password}" + (":admin" if name == "admin" else "") for name, password in PASSWORDS.items()
    ]
    made = subprocess.run(
        [sys.executable, "-m", "tests.ui.make_users", str(settings.state_dir), *users],
        cwd=REPO,
        env=environment(settings, port),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    tokens = json.loads(made.stdout.strip().splitlines()[-1])
    log = settings.state_dir / "ui-server.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.api_server", "serve"],
            cwd=REPO,
            env=environment(settings, port),
            stdout=sink,
            stderr=sink,
        )
    server = UiServer(f"http://127.0.0.1:{port}", settings, tokens, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()}")
        try:
            if httpx.get(f"{server.url}/login", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the server did not answer within 60 s: {log.read_text()}")


def sign_in(page: Page, server: UiServer, who: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("User name").fill(who)
    page.get_by_label("Password").fill(PASSWORDS[who])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Sites")).to_be_visible()


def screenshot(page: Page, name: str) -> None:
    """A picture for the README, taken by the test run (docs/screenshots/NAME.png, replaced each run)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
