"""Web UI benchmarks: the sites page with 10,000 sites, live Ready dots for a page of 50 sites over one
stream, and a file saved in the editor until the edge serves it. Real server processes on loopback.

    .venv/bin/python -m bench.ui [--sites 10000] [--pages 20] [--saves 10] [--no-edge]

The page times are measured by the client on loopback (the server's time plus a loopback round trip); the
live time is from a status write in the record store to the event arriving in the stream; the save time is
from the editor's POST to the first answer of the edge with the new text.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.api import free_port, seed_sites

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password"
_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def make_users(state_dir: Path, owned: int) -> None:
    """The admin, and alice owning `owned` of the seeded sites (in a child process: one Django per state)."""
    code = (
        "import django, os; django.setup();"
        "from django.core.management import call_command;"
        "call_command('migrate', interactive=False, verbosity=0);"
        "from django.contrib.auth.models import User; from api.auth import ensure_admin_group;"
        f"a = User.objects.create_user('admin', password={PASSWORD!r}); a.groups.add(ensure_admin_group());"
        f"User.objects.create_user('alice', password={PASSWORD!r})"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=os.environ | {"DIRECTOR_STATE_DIR": str(state_dir), "DJANGO_SETTINGS_MODULE": "ui.settings"},
        check=True,
    )
    from store.records import SiteStore

    store = SiteStore(state_dir)
    for index in range(owned):
        site = store.get(f"site-{index * 7:05d}")
        site.spec.owners = ["admin", "alice"]
        store.update(site)


def start_server(state_dir: Path, port: int, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "DIRECTOR_STATE_DIR": str(state_dir),
        "DIRECTOR_API_PORT": str(port),
        "PYTHONPATH": str(REPO),
        # Plain HTTP on loopback: this benchmark measures the pages, not TLS.
        "DIRECTOR_API_TLS": "off",
        **(extra or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.api_server", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the server did not start")


def signed_in(url: str, user: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60, follow_redirects=False)
    token = _TOKEN.search(client.get("/login").text)
    assert token is not None
    answer = client.post(
        "/login", data={"csrfmiddlewaretoken": token[1], "username": user, "password": PASSWORD}
    )
    if answer.status_code != 302:
        raise SystemExit(f"signing in as {user} failed: {answer.status_code}")
    return client


def _summary(label: str, seconds: list[float]) -> None:
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    print(
        f"{label}: median {statistics.median(ordered) * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms, "
        f"best {ordered[0] * 1000:.1f} ms (n={len(ordered)})"
    )


def bench_pages(url: str, sites: int, pages: int) -> None:
    admin, alice = signed_in(url, "admin"), signed_in(url, "alice")
    admin.get("/")  # the server's first listing parses every record; later ones read its cache
    last = max(1, sites // 50)
    cases = [
        (admin, "sites page, all sites (admin)", [f"/?page={1 + (n * 37) % last}" for n in range(pages)]),
        (admin, "search among all sites", [f"/?q=site-0{n % 10}" for n in range(pages)]),
        (alice, "sites page, a user's own sites", ["/"] * pages),
    ]
    for client, label, paths in cases:
        durations = []
        for path in paths:
            start = time.perf_counter()
            response = client.get(path)
            durations.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise SystemExit(f"{path}: {response.status_code}")
        _summary(f"{label} ({sites} sites, 50 per page)", durations)


def bench_live(url: str, state_dir: Path, rounds: int) -> None:
    """One stream for a page of 50 sites; each round flips every site's Ready condition in the store."""
    from specs.models import Condition, SiteStatus
    from store.records import SiteStore

    store = SiteStore(state_dir)
    names = [f"site-{index:05d}" for index in range(50)]
    client = signed_in(url, "admin")
    arrived: dict[tuple[str, str], float] = {}
    ready = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        try:
            follow()
        except (httpx.HTTPError, RuntimeError):
            if not stop.is_set():
                raise

    def follow() -> None:
        with client.stream("GET", "/live/sites", params={"names": ",".join(names)}, timeout=None) as stream:
            event = ""
            for line in stream.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "site":
                    state = json.loads(line[6:])
                    arrived.setdefault((state["name"], state["reason"]), time.perf_counter())
                    if len({name for name, _ in arrived}) == len(names):
                        ready.set()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    if not ready.wait(60):
        raise SystemExit("the stream did not send the page's 50 sites")
    latencies: list[float] = []
    batches: list[float] = []
    for round_number in range(rounds):
        reason = f"Round{round_number}"
        written: dict[str, float] = {}
        started = time.perf_counter()
        for name in names:
            condition = Condition(
                type="Ready", status="True", reason=reason, message="", last_transition_time=datetime.now(UTC)
            )
            store.update_status(name, SiteStatus(conditions=[condition]))
            written[name] = time.perf_counter()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all((name, reason) in arrived for name in names):
            time.sleep(0.01)
        missing = [name for name in names if (name, reason) not in arrived]
        if missing:
            raise SystemExit(f"round {round_number}: {len(missing)} sites never updated")
        latencies.extend(arrived[(name, reason)] - written[name] for name in names)
        batches.append(max(arrived[(name, reason)] for name in names) - started)
    stop.set()
    client.close()
    _summary("live dot: status write -> event on the page's one stream (50 sites)", latencies)
    _summary("live page: 50 status writes -> all 50 dots updated", batches)


def bench_save_served(saves: int) -> None:
    """A static site on a real edge; each save through the file editor until the edge serves it."""
    import docker
    from swarm_helpers import get

    from bench.e2e_helpers import ControllerProcess, throwaway_instance
    from reconcilers.local_images import ensure_base_image
    from specs.models import ObjectMeta, Site, SiteSpec
    from store.records import SiteStore

    client = docker.from_env()
    image = ensure_base_image(client)
    with throwaway_instance(client, image, prefix="benchui") as settings:
        controller = ControllerProcess(settings, workers=4)
        controller.start()
        port = free_port()
        make_users(settings.state_dir, 0)
        extra = {
            "DIRECTOR_INSTANCE": settings.instance,
            "DIRECTOR_HTTP_PORT": str(settings.http_port),
            "DIRECTOR_SITES_DOMAIN": settings.sites_domain,
        }
        server = start_server(settings.state_dir, port, extra)
        try:
            host = f"saved.{settings.sites_domain}"
            deadline = time.monotonic() + 120
            while get(settings, "nobody.example.org")[0] != 404:
                if time.monotonic() > deadline:
                    raise SystemExit("the edge did not start")
                time.sleep(0.2)
            SiteStore(settings.state_dir).create(
                Site(metadata=ObjectMeta(name="saved"), spec=SiteSpec(owners=["admin"]))
            )
            while get(settings, host)[0] != 200:
                if time.monotonic() > deadline:
                    raise SystemExit("the site was not served")
                time.sleep(0.1)
            session = signed_in(f"http://127.0.0.1:{port}", "admin")
            durations = []
            for number in range(saves):
                page = session.get("/sites/saved/files/edit", params={"path": "public/index.html"})
                token = _TOKEN.search(page.text)
                assert token is not None
                text = f"<h1>save {number}</h1>"
                start = time.perf_counter()
                saved = session.post(
                    "/sites/saved/files/edit",
                    data={"csrfmiddlewaretoken": token[1], "path": "public/index.html", "content": text},
                )
                if saved.status_code != 200:
                    raise SystemExit(f"save {number}: {saved.status_code}")
                while text not in get(settings, host)[1]:
                    if time.perf_counter() - start > 30:
                        raise SystemExit(f"save {number} was not served within 30 s")
                durations.append(time.perf_counter() - start)
            _summary("file saved in the editor -> served by the edge", durations)
        finally:
            server.terminate()
            server.wait(timeout=10)
            controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--saves", type=int, default=10)
    parser.add_argument("--no-edge", action="store_true", help="skip the benchmark that needs Swarm")
    arguments = parser.parse_args()
    sys.path.append(str(REPO / "tests"))
    state_dir = Path(tempfile.mkdtemp(prefix="director-bench-ui-"))
    try:
        start = time.perf_counter()
        seed_sites(state_dir, arguments.sites)
        make_users(state_dir, 50)
        print(f"seeded {arguments.sites} sites and two users in {time.perf_counter() - start:.1f} s")
        port = free_port()
        server = start_server(state_dir, port)
        url = f"http://127.0.0.1:{port}"
        try:
            bench_pages(url, arguments.sites, arguments.pages)
            bench_live(url, state_dir, arguments.rounds)
        finally:
            server.terminate()
            server.wait(timeout=10)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    if not arguments.no_edge:
        bench_save_served(arguments.saves)


if __name__ == "__main__":
    main()
