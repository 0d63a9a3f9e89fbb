"""Issue 3's end-to-end list: `director controller` on the real Swarm, judged by what it serves.

Every test shares the module's controller (see conftest.py) and writes records as the API would. While
something changes, a request loop counts every answer of the sites that must keep serving: one failed
request fails the test.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import docker
import pytest
from e2e_helpers import LOCAL_IMAGE, SERVE_PUBLIC, RequestLoop, events_since, running_tasks, write_site_file
from swarm_helpers import (
    ControllerProcess,
    condition,
    eventually,
    host_of,
    ready,
    serves,
    services_of,
    site,
)

from reconcilers.docker_calls import LABEL_INSTANCE, LABEL_SITE
from reconcilers.edge import live_files, live_routes
from specs.config import Settings
from specs.platform import EdgeStatus
from store.records import HostTaken, NotFound, PlatformStore, SiteStore

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

# What "within a couple of seconds" means for a static site: a record write, one reconcile, one reload.
STATIC_SERVED_SECONDS = 5.0
DRIFT_REPAIRED_SECONDS = 15.0

GREETER_APP = """\
import http.server
import os


class Greeting(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"greeting={os.environ.get('GREETING', '')}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Greeting).serve_forever()
"""
GREETER_RUN_SH = """#!/bin/sh
exec python3 /site/app.py
"""


def test_a_static_site_is_served_at_once_and_a_second_apply_fails_no_request_of_the_first(
    director: ControllerProcess, settings: Settings, store: SiteStore
):
    applied = time.monotonic()
    store.create(site("first"))
    first = host_of(settings, "first")
    eventually(lambda: serves(settings, first, 200, "<h1>first</h1>"), 30, "first served", director)
    served_after = time.monotonic() - applied
    assert served_after < STATIC_SERVED_SECONDS, f"first served only {served_after:.1f}s after its apply"
    eventually(lambda: ready(store, "first"), 10, "first Ready", director)

    with RequestLoop(settings, [first], ["<h1>first</h1>"]) as loop:
        time.sleep(0.3)
        store.create(site("second", domains=["second.example.org"]))
        eventually(lambda: serves(settings, "second.example.org", 200, "<h1>second</h1>"), 30, "second")
        # A further route change of the second site: another validation and reload under the loop.
        second = store.get("second")
        second.spec.domains = ["second.example.org", "www.second.example.org"]
        store.update(second)
        eventually(lambda: serves(settings, "www.second.example.org", 200, "<h1>second</h1>"), 30, "www")
        time.sleep(0.5)
    loop.assert_no_failure(at_least=20)


def test_a_dynamic_site_is_served_and_an_env_change_rolls_it_without_a_failed_request(
    director: ControllerProcess, settings: Settings, store: SiteStore, swarm: docker.DockerClient
):
    # The owner's files are there before the site is applied, as after an upload through the API.
    (settings.sites_dir / "greeter").mkdir(mode=0o755)
    write_site_file(settings, "greeter", "app.py", GREETER_APP)
    write_site_file(settings, "greeter", "run.sh", GREETER_RUN_SH, 0o755)
    host = host_of(settings, "greeter")
    store.create(site("greeter", type="dynamic", image=LOCAL_IMAGE, env={"GREETING": "hello-1"}))
    eventually(lambda: serves(settings, host, 200, "greeting=hello-1"), 60, "greeter served", director)
    eventually(lambda: ready(store, "greeter"), 30, "greeter Ready", director)
    service = settings.service_name("greeter")
    before = {t["ID"] for t in running_tasks(swarm, service)}

    def rolled() -> bool:
        inspected = swarm.api.inspect_service(service)
        state = (inspected.get("UpdateStatus") or {}).get("State")
        tasks = {t["ID"] for t in running_tasks(swarm, service)}
        return state == "completed" and len(tasks) == 1 and not tasks & before

    with RequestLoop(settings, [host], ["greeting=hello-1", "greeting=hello-2"]) as loop:
        time.sleep(0.5)
        greeter = store.get("greeter")
        greeter.spec.env = {"GREETING": "hello-2"}
        store.update(greeter)
        eventually(rolled, 90, "the update to roll and complete", director)
        time.sleep(1.0)
    loop.assert_no_failure(at_least=50)
    # Both tasks answer (DNS round-robin) while the new one starts; once the roll is done, only the new.
    assert loop.result.seen[0] == "greeting=hello-1" and loop.result.seen[-1] == "greeting=hello-2"
    assert all(serves(settings, host, 200, "greeting=hello-2") for _ in range(10))
    eventually(lambda: ready(store, "greeter"), 30, "greeter Ready after the update", director)
    status = store.get("greeter").status
    assert status is not None and status.observed_generation == 2


def _drift_repaired(
    director: ControllerProcess, what: str, command: list[str], repaired: Callable[[], bool]
) -> float:
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    took = eventually(repaired, 60, f"repair of: {what}", director)
    assert took < DRIFT_REPAIRED_SECONDS, f"{what}: repaired only after {took:.1f}s"
    return took


def test_drift_in_swarm_is_repaired_within_seconds_and_recorded(
    director: ControllerProcess, settings: Settings, store: SiteStore, swarm: docker.DockerClient
):
    host = host_of(settings, "drifty")
    store.create(site("drifty", type="dynamic", image=LOCAL_IMAGE, command=SERVE_PUBLIC))
    eventually(lambda: serves(settings, host, 200, "<h1>drifty</h1>"), 60, "drifty served", director)
    eventually(lambda: ready(store, "drifty"), 30, "drifty Ready", director)
    service = settings.service_name("drifty")

    # 1. The site's service is removed by hand: it comes back and serves.
    removed_at = time.time()
    old_id = swarm.api.inspect_service(service)["ID"]
    _drift_repaired(
        director,
        "docker service rm of the site's service",
        ["docker", "service", "rm", service],
        lambda: (
            swarm.api.inspect_service(service)["ID"] != old_id
            and bool(running_tasks(swarm, service))
            and serves(settings, host, 200, "<h1>drifty</h1>")
        ),
    )
    # What was found (no service, woken by its removal) and what was done (created), in one event.
    recreated = [
        e
        for e in events_since(settings, "drifty", removed_at)
        if e.step == "service" and e.result == "created" and f"no service {service} found" in e.message
    ]
    assert recreated, events_since(settings, "drifty", removed_at)

    # 2. An env var is added by hand: the whole spec is sent back, the variable is gone.
    def env_of() -> list[str]:
        spec = swarm.api.inspect_service(service)["Spec"]
        return list(spec["TaskTemplate"]["ContainerSpec"].get("Env", []))

    edited_at = time.time()
    _drift_repaired(
        director,
        "docker service update --env-add",
        ["docker", "service", "update", "--detach", "--env-add", "X=1", service],
        lambda: "X=1" not in env_of(),
    )
    assert sorted(variable.split("=")[0] for variable in env_of()) == ["HOST", "PORT"]
    updated = [e for e in events_since(settings, "drifty", edited_at) if e.step == "service"]
    assert any(e.result == "updated" and "Env" in e.message for e in updated), updated
    eventually(lambda: serves(settings, host, 200, "<h1>drifty</h1>"), 30, "drifty served after the repair")

    # 3. The edge service is removed by hand: the platform puts it back and every site is served again.
    # The old edge answers for a moment while it stops: only the new service's own task counts.
    edge_removed_at = time.time()
    old_edge = swarm.api.inspect_service(settings.edge_service)["ID"]
    _drift_repaired(
        director,
        "docker service rm of the edge",
        ["docker", "service", "rm", settings.edge_service],
        lambda: (
            swarm.api.inspect_service(settings.edge_service)["ID"] != old_edge
            and bool(running_tasks(swarm, settings.edge_service))
            and serves(settings, host, 200, "<h1>drifty</h1>")
        ),
    )
    platform = events_since(settings, "edge", edge_removed_at)
    assert any(
        e.step == "platform.edge-service"
        and e.result == "created"
        and f"no service {settings.edge_service} found" in e.message
        for e in platform
    ), platform
    eventually(lambda: ready(store, "drifty"), 30, "drifty Ready after the repairs", director)


def test_bad_sites_say_what_is_wrong_while_the_others_keep_serving(
    director: ControllerProcess, settings: Settings, store: SiteStore
):
    store.create(site("keeper", domains=["kept.example.org"]))
    for host in (host_of(settings, "keeper"), "kept.example.org"):
        eventually(lambda h=host: serves(settings, h, 200, "<h1>keeper</h1>"), 30, f"{host} served", director)
    hosts = [host_of(settings, "keeper"), "kept.example.org"]
    with RequestLoop(settings, hosts, ["<h1>keeper</h1>"]) as loop:
        store.create(site("no-image", type="dynamic", image="registry.invalid/nobody/no-such-image:1"))
        with pytest.raises(HostTaken):
            store.create(site("grabber", domains=["kept.example.org"]))
        # What the store refuses, a record written by hand can still say: the edge must hold just as well.
        store.create(site("grabber"))
        record = store.spec_path("grabber")
        record.write_text(record.read_text().replace("  domains: []\n", "  domains: [kept.example.org]\n"))

        def no_image_reported() -> bool:
            found = condition(store, "no-image", "Ready")
            return found is not None and found.status == "False" and "no-such-image" in found.message

        eventually(no_image_reported, 60, "no-image reported not Ready, naming its image", director)

        def conflict_reported() -> bool:
            ready = condition(store, "grabber", "Ready")
            return ready is not None and ready.status == "False" and "kept.example.org" in ready.message

        eventually(conflict_reported, 30, "grabber not Ready, naming the domain it may not have", director)
        eventually(
            lambda: serves(settings, host_of(settings, "grabber"), 200, "<h1>grabber</h1>"),
            30,
            "grabber served on its own host",
            director,
        )
    loop.assert_no_failure(at_least=20)

    no_image = condition(store, "no-image", "Ready")
    assert no_image is not None and "0/1 tasks running" in no_image.message, no_image
    grabber_ready = condition(store, "grabber", "Ready")
    stalled = condition(store, "grabber", "Stalled")
    assert grabber_ready is not None and "served by site keeper" in grabber_ready.message
    assert stalled is not None and stalled.status == "False"
    assert serves(settings, "kept.example.org", 200, "<h1>keeper</h1>"), "the first claim keeps the domain"


def test_deleting_a_dynamic_site_removes_its_service_routes_and_files(
    director: ControllerProcess, settings: Settings, store: SiteStore, swarm: docker.DockerClient
):
    domains = ["doomed.example.org"]
    store.create(site("doomed", type="dynamic", image=LOCAL_IMAGE, command=SERVE_PUBLIC, domains=domains))
    hosts = [host_of(settings, "doomed"), "doomed.example.org"]
    for host in hosts:
        eventually(lambda h=host: serves(settings, h, 200, "<h1>doomed</h1>"), 60, f"{host} served", director)
    service = swarm.api.inspect_service(settings.service_name("doomed"))
    site_dir = settings.sites_dir / "doomed"
    assert site_dir.is_dir() and "doomed" in live_routes(settings.edge_dir)
    deleted_at = time.time()
    ours = f"{LABEL_INSTANCE}={settings.instance}"

    store.delete("doomed")
    for host in hosts:
        eventually(lambda h=host: serves(settings, h, 404), 30, f"{host} answers 404", director)
    eventually(lambda: "doomed" not in services_of(swarm, settings).values(), 30, "service gone", director)
    eventually(
        lambda: not swarm.containers.list(all=True, filters={"label": [f"{LABEL_SITE}=doomed", ours]}),
        60,
        "its containers gone",
        director,
    )
    with pytest.raises(docker.errors.NotFound):
        swarm.api.inspect_service(service["ID"])
    with pytest.raises(NotFound):
        store.get("doomed")
    assert not store.status_path("doomed").exists()
    # Files: archived to the trash (kept for the retention days), not left in the sites directory.
    assert not site_dir.exists()
    archived = list(settings.trash_dir.glob("doomed-*"))
    assert len(archived) == 1 and (archived[0] / "public" / "index.html").exists()
    # Routes: neither the live configuration nor the last good routes kept with it know the site.
    assert "doomed" not in live_routes(settings.edge_dir)
    assert not any("doomed" in text for text in live_files(settings.edge_dir).values())
    deleted = {e.step for e in events_since(settings, "doomed", deleted_at) if e.result == "deleted"}
    assert {"service", "routes", "files.directories"} <= deleted, deleted
    # Nothing of the site left anywhere in Swarm: no service of its name, no task of its service.
    leftovers = [s for s in swarm.api.services() if s["Spec"]["Name"] == settings.service_name("doomed")]
    assert leftovers == []
    eventually(
        lambda: all(task["ServiceID"] != service["ID"] for task in swarm.api.tasks()),
        30,
        "its tasks gone",
        director,
    )


def test_the_platform_record_shows_the_edge_and_its_drift(
    director: ControllerProcess, settings: Settings, swarm: docker.DockerClient
):
    platforms = PlatformStore(settings.state_dir)

    def edge_status() -> EdgeStatus | None:
        status = platforms.get("edge").status
        ready = status.condition("Ready") if status is not None else None
        if status is None or ready is None or ready.status != "True":
            return None
        return status.platform

    def serving() -> bool:
        edge = edge_status()
        return edge is not None and edge.running_nodes == edge.desired_nodes == 1

    eventually(serving, 60, "the platform Ready with the edge running on the node", director)
    edge = edge_status()
    assert edge is not None
    assert (edge.network, edge.service) == (settings.network, settings.edge_service)
    assert edge.network_id and edge.routes_revision and edge.edge_revision
    [before] = edge.tasks
    assert before.state == "running" and before.since is not None

    # The edge's container is killed by hand: Swarm starts another, and the platform's status says so.
    [container] = swarm.containers.list(
        filters={"label": f"com.docker.swarm.service.name={settings.edge_service}"}
    )
    container.kill()

    def replaced() -> bool:
        edge = edge_status()
        return (
            edge is not None
            and len(edge.tasks) == 1
            and edge.tasks[0].state == "running"
            and edge.tasks[0].since is not None
            and edge.tasks[0].since > before.since  # type: ignore[operator]
        )

    eventually(replaced, 60, "the platform's status showing the edge's new task", director)
