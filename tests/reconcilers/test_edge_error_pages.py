"""What the edge answers for a dynamic site it cannot get an answer from: Director's pages, the codes kept."""

from __future__ import annotations

import pytest
from reconciler_helpers import context, make_site, wait_for_http

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

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
