"""Three dynamic sites misbehaving for real beside well-behaved ones: one whose process exits at once (Swarm
restarts it forever), one that accepts connections and never answers, one that answers slowly. The others
serve every request meanwhile; the edge answers the silent one with 504 once its timeout has passed (and no
later), the slow one in full, the crashing one with an error at once; the statuses say which is not Ready."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from swarm_helpers import ControllerProcess, eventually, get, host_of, ready, serves, site

from specs.config import Settings
from store.records import SiteStore
from tests.e2e.e2e_helpers import LOCAL_IMAGE, SERVE_PUBLIC, RequestLoop, write_site_file

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

PROXY_TIMEOUT_SECONDS = 6.0
SLOW_ANSWER_SECONDS = 2.0
# What a busy machine may add to the edge's own timing.
SLACK_SECONDS = 4.0
CONCURRENT_STUCK_REQUESTS = 24

SILENT_APP = """\
import os, socket
listener = socket.create_server((os.environ["HOST"], int(os.environ["PORT"])), backlog=256)
held = []
while True:
    connection, _ = listener.accept()
    held.append(connection)
"""
SLOW_APP = """\
import http.server, os, time
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(float(os.environ["DELAY"]))
        body = b"slow but sure\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Slow).serve_forever()
"""


def timed_get(settings: Settings, host: str, timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    status, body = get(settings, host, timeout=timeout)
    return status, body, time.monotonic() - started


def test_a_crashing_a_silent_and_a_slow_site_harm_no_other_and_the_edge_timeouts_hold(
    new_settings: Callable[[Path], Settings], swarm: docker.DockerClient, tmp_path: Path
):
    settings = new_settings(tmp_path / "state")
    controller = ControllerProcess(
        settings,
        tmp_path / "controller.log",
        env={"DIRECTOR_PROXY_TIMEOUT_SECONDS": str(PROXY_TIMEOUT_SECONDS)},
    )
    controller.start()
    try:
        eventually(lambda: serves(settings, "nobody.example.org", 404), 120, "the edge", controller)
        store = SiteStore(settings.state_dir)
        for name, app in (("silent", SILENT_APP), ("slow", SLOW_APP)):
            write_site_file(settings, name, "app.py", app)
        python_app = ["python3", "/site/app.py"]
        store.create(site("plain"))
        store.create(site("lively", type="dynamic", image=LOCAL_IMAGE, command=SERVE_PUBLIC))
        store.create(site("crashy", type="dynamic", image=LOCAL_IMAGE, command=["sh", "-c", "exit 3"]))
        store.create(site("silent", type="dynamic", image=LOCAL_IMAGE, command=python_app))
        store.create(
            site(
                "slow",
                type="dynamic",
                image=LOCAL_IMAGE,
                command=python_app,
                env={"DELAY": str(SLOW_ANSWER_SECONDS)},
            )
        )
        plain, lively = host_of(settings, "plain"), host_of(settings, "lively")
        eventually(lambda: serves(settings, plain, 200, "<h1>plain</h1>"), 60, "plain", controller)
        eventually(lambda: serves(settings, lively, 200, "<h1>lively</h1>"), 120, "lively", controller)
        eventually(
            lambda: ready(store, "silent") and ready(store, "slow"), 120, "silent, slow Ready", controller
        )

        with (
            RequestLoop(settings, [plain, lively], ["<h1>plain</h1>", "<h1>lively</h1>"]) as loop,
            concurrent.futures.ThreadPoolExecutor(CONCURRENT_STUCK_REQUESTS + 2) as pool,
        ):
            patience = PROXY_TIMEOUT_SECONDS + SLACK_SECONDS + 10
            stuck = [
                pool.submit(timed_get, settings, host_of(settings, "silent"), patience)
                for _ in range(CONCURRENT_STUCK_REQUESTS)
            ]
            slow = pool.submit(timed_get, settings, host_of(settings, "slow"), patience)
            crashing = pool.submit(timed_get, settings, host_of(settings, "crashy"), patience)

            status, body, seconds = slow.result()
            assert (status, body) == (200, "slow but sure\n")
            assert SLOW_ANSWER_SECONDS <= seconds < SLOW_ANSWER_SECONDS + SLACK_SECONDS

            status, _, seconds = crashing.result()
            assert status in (502, 503, 504), status
            assert seconds < settings.proxy_connect_timeout_seconds + SLACK_SECONDS

            for answer in stuck:
                status, _, seconds = answer.result()
                assert status == 504, status
                assert PROXY_TIMEOUT_SECONDS - 0.5 <= seconds < PROXY_TIMEOUT_SECONDS + SLACK_SECONDS, seconds
        loop.assert_no_failure(at_least=20)

        # The statuses tell the crashing site from the others, and the controller is still at work.
        crashy = store.get("crashy").status
        assert crashy is not None and not ready(store, "crashy")
        ready_condition = crashy.condition("Ready")
        assert ready_condition is not None and ready_condition.message, crashy
        assert ready(store, "lively") and ready(store, "plain")
        assert controller.process is not None and controller.process.poll() is None
        assert "Traceback" not in controller.log.read_text(errors="replace"), controller.tail(60)
    finally:
        controller.stop()
