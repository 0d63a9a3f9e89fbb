"""What the edge answers for a dynamic site it cannot get an answer from: Director's pages with the codes
kept, or the site's last good pages when it asked the edge to keep them (spec.cache)."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable

import pytest
from reconciler_helpers import context, make_site, wait_for_http

from specs.config import Settings

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

RUN_SH = """#!/bin/sh
cd /site/public
exec python3 -m http.server "$PORT" --bind "$HOST"
"""

SLEEPS_SH = """#!/bin/sh
exec sleep 3600
"""

OWN_503_SH = """#!/bin/sh
exec python3 -c '
import http.server, os
class Down(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"the site says it is down for maintenance"
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Down).serve_forever()
'
"""


async def test_a_site_with_no_task_answers_502_with_directors_page(stack):
    site = make_site("no-task", type="dynamic", image="director-local/site:latest", replicas=0)
    await stack.converge(site)
    _status, body = wait_for_http(
        stack.settings, f"no-task.{stack.settings.sites_domain}", 502, "not running"
    )
    assert "<h1>502: no-task is not running right now</h1>" in body
    assert "dirctl describe site no-task" in body
    assert "nginx" not in body.lower()


async def test_a_site_whose_process_does_not_listen_yet_answers_502_is_starting(stack, write_site_file):
    site = make_site("not-listening", type="dynamic", image="director-local/site:latest")
    await stack.files.reconcile(site, context())
    write_site_file("not-listening", "run.sh", SLEEPS_SH, 0o750)
    await stack.converge(site)
    assert (await stack.until_ready(site)).ready
    host = f"not-listening.{stack.settings.sites_domain}"
    _status, body = wait_for_http(stack.settings, host, 502, "is starting", seconds=60)
    assert "<h1>502: not-listening is starting</h1>" in body
    assert "dirctl logs not-listening" in body


async def test_a_sites_own_503_passes_as_it_is(stack, write_site_file):
    site = make_site("own-503", type="dynamic", image="director-local/site:latest")
    await stack.files.reconcile(site, context())
    write_site_file("own-503", "run.sh", OWN_503_SH, 0o750)
    await stack.converge(site)
    assert (await stack.until_ready(site)).ready
    host = f"own-503.{stack.settings.sites_domain}"
    assert wait_for_http(stack.settings, host, 503, "maintenance", seconds=60) == (
        503,
        "the site says it is down for maintenance",
    )


def get_with_headers(
    settings: Settings, host: str, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", settings.http_port, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode(errors="replace")
    finally:
        connection.close()


def wait_for_answer(
    settings: Settings, host: str, path: str, want: Callable[[int, dict[str, str], str], bool], seconds: float
) -> tuple[int, dict[str, str], str]:
    deadline = time.monotonic() + seconds
    found: tuple[int, dict[str, str], str] = (0, {}, "")
    while time.monotonic() < deadline:
        found = get_with_headers(settings, host, path)
        if want(*found):
            return found
        time.sleep(0.1)
    pytest.fail(f"{host}{path} did not answer as wanted in {seconds:.0f} s; last: {found}")


async def test_a_cached_sites_pages_answer_stale_when_it_is_scaled_to_zero(stack, write_site_file):
    spec = {"type": "dynamic", "image": "director-local/site:latest", "cache": {"staleIfError": "10m"}}
    site = make_site("stale-pages", **spec)
    await stack.files.reconcile(site, context())
    write_site_file("stale-pages", "run.sh", RUN_SH, 0o750)
    write_site_file("stale-pages", "public/index.html", "the last good page")
    write_site_file("stale-pages", "public/never.html", "never fetched while it ran")
    await stack.converge(site)
    assert (await stack.until_ready(site)).ready
    host = f"stale-pages.{stack.settings.sites_domain}"
    wait_for_http(stack.settings, host, 200, "the last good page", seconds=60)
    assert get_with_headers(stack.settings, host)[1].get("X-Director-Cache") in ("HIT", "MISS", "EXPIRED")

    stopped = make_site(
        "stale-pages", created=site.metadata.creation_timestamp, generation=2, replicas=0, **spec
    )
    await stack.converge(stopped)
    status, _headers, body = wait_for_answer(
        stack.settings, host, "/", lambda s, h, b: h.get("X-Director-Cache") == "STALE", seconds=60
    )
    assert (status, body) == (200, "the last good page")
    # A page nobody fetched while the site ran, and any request carrying a cookie: Director's page.
    status, _headers, body = get_with_headers(stack.settings, host, "/never.html")
    assert status == 502 and "stale-pages is not running right now" in body
    status, _headers, body = get_with_headers(stack.settings, host, "/", {"Cookie": "session=someone"})
    assert status == 502 and "stale-pages is not running right now" in body

    # Its cache goes with its route.
    cache_dir = stack.settings.edge_cache_dir / "stale-pages"
    assert cache_dir.is_dir()
    await stack.finalize("stale-pages")
    assert not cache_dir.exists()


async def test_an_uncached_site_says_nothing_of_a_cache(stack, write_site_file):
    site = make_site("uncached", type="dynamic", image="director-local/site:latest")
    await stack.files.reconcile(site, context())
    write_site_file("uncached", "run.sh", RUN_SH, 0o750)
    write_site_file("uncached", "public/index.html", "never kept")
    await stack.converge(site)
    host = f"uncached.{stack.settings.sites_domain}"
    wait_for_http(stack.settings, host, 200, "never kept", seconds=60)
    assert "X-Director-Cache" not in get_with_headers(stack.settings, host)[1]
    assert not (stack.settings.edge_cache_dir / "uncached").exists()
