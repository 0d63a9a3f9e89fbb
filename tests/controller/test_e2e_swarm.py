"""`director controller` as a process against the real Swarm, edge Nginx and site directories.

The tests write desired state straight into the record store (as the API would) and judge the result only
by what runs: HTTP answers through the edge port, services in Swarm, files on disk, status records.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from reconcilers.docker_calls import LABEL_INSTANCE, LABEL_SITE
from specs.config import Settings
from specs.events import EventLog
from specs.models import ObjectMeta, Site, SiteSpec
from specs.store import NotFound, SiteStore

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DIRECTOR = Path(sys.executable).with_name("director")
# Serves the site's public/ on $PORT; the image is Director's local base image (python3, no shell tricks).
SERVE = ["sh", "-c", 'exec python3 -m http.server "$PORT" --bind "$HOST" --directory /site/public']


class ControllerProcess:
    """One `director controller` subprocess, its log in a file."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = os.environ | {
            "DIRECTOR_STATE_DIR": str(self.settings.state_dir),
            "DIRECTOR_INSTANCE": self.settings.instance,
            "DIRECTOR_HTTP_PORT": str(self.settings.http_port),
            "DIRECTOR_SITES_DOMAIN": self.settings.sites_domain,
            "DIRECTOR_EDGE_IMAGE": self.settings.edge_image,
            "DIRECTOR_SITE_IMAGE": self.settings.site_image,
            "DIRECTOR_RESYNC_SECONDS": "10",
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(DIRECTOR), "controller", "--step-timeout", "30", "--max-backoff", "5"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )

    def signal(self, signum: int) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def director(make_settings, base_image, swarm, tmp_path) -> Iterator[ControllerProcess]:
    settings = make_settings(edge_image=base_image, site_image=base_image)
    controller = ControllerProcess(settings, tmp_path / "controller.log")
    yield controller
    controller.stop()


def get(settings: Settings, host: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", settings.http_port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def host_of(settings: Settings, name: str) -> str:
    return f"{name}.{settings.sites_domain}"


def eventually(check: Callable[[], bool], seconds: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except (OSError, NotFound):
            pass
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text().splitlines()[-30:]) if log is not None else ""
            pytest.fail(f"timed out after {seconds:.0f}s waiting for {what}\n{tail}")
        time.sleep(0.25)


def ready(store: SiteStore, name: str) -> bool:
    status = store.get(name).status
    condition = status.condition("Ready") if status is not None else None
    return condition is not None and condition.status == "True"


def serves(settings: Settings, name: str, status: int, text: str = "") -> bool:
    answer = get(settings, host_of(settings, name))
    return answer[0] == status and text in answer[1]


def services_of(client: docker.DockerClient, settings: Settings) -> dict[str, str]:
    """Every Swarm service of this instance: name -> the site label (empty for the edge)."""
    found = client.api.services(filters={"label": f"{LABEL_INSTANCE}={settings.instance}"})
    return {s["Spec"]["Name"]: s["Spec"].get("Labels", {}).get(LABEL_SITE, "") for s in found}


def site(name: str, **spec: object) -> Site:
    return Site(metadata=ObjectMeta(name=name), spec=SiteSpec.model_validate(spec))


def test_a_static_site_is_applied_served_reported_and_deleted(director: ControllerProcess, swarm):
    settings = director.settings
    store = SiteStore(settings.state_dir)
    director.start()
    store.create(site("hello"))
    eventually(lambda: serves(settings, "hello", 200, "<h1>hello</h1>"), 90, "hello served", director.log)
    eventually(lambda: ready(store, "hello"), 30, "hello Ready", director.log)
    status = store.get("hello").status
    assert status is not None and status.observed_generation == 1
    assert status.urls == [f"http://hello.{settings.sites_domain}:{settings.http_port}/"]
    events = EventLog(settings.events_db).query("hello")
    assert {"files.directories", "routes"} <= {e.step for e in events}
    assert all(e.result != "failed" for e in events)
    assert all(e.reconcile_id and e.trigger and e.generation == 1 for e in events)

    store.delete("hello")
    eventually(lambda: serves(settings, "hello", 404), 30, "hello gone from the edge", director.log)
    with pytest.raises(NotFound):
        store.get("hello")
    assert any(e.result == "deleted" for e in EventLog(settings.events_db).query("hello"))
    started = time.monotonic()
    assert director.signal(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    assert "controller lock released" in director.log.read_text()


def test_sigkill_while_applying_twenty_sites_then_restart_converges_with_nothing_left_over(
    director: ControllerProcess, swarm
):
    settings = director.settings
    store = SiteStore(settings.state_dir)
    names = [f"load-{i:02d}" for i in range(20)]
    dynamic = set(names[::4])
    director.start()
    # A site whose record will be lost while the controller is down: its service must not outlive it.
    store.create(site("lost", type="dynamic", image="director-local/site:latest", command=SERVE))
    eventually(lambda: "lost" in services_of(swarm, settings).values(), 90, "lost's service", director.log)
    for name in names:
        if name in dynamic:
            store.create(site(name, type="dynamic", image="director-local/site:latest", command=SERVE))
        else:
            store.create(site(name))
    eventually(
        lambda: sum(store.get(n).status is not None for n in names) >= 3,
        60,
        "the apply under way",
        director.log,
    )
    director.signal(signal.SIGKILL)
    half_done = sum(ready(store, n) for n in names)
    assert half_done < len(names), "the kill came too late to interrupt anything"
    # Removed by hand, finalizer and all, while no controller runs: nothing will say it was deleted.
    store.spec_path("lost").unlink()
    store.status_path("lost").unlink(missing_ok=True)

    director.start()
    eventually(
        lambda: all(ready(store, n) for n in names), 180, "all 20 sites Ready after restart", director.log
    )
    for name in names:
        eventually(lambda n=name: serves(settings, n, 200), 30, f"{name} served", director.log)
    # No orphan service: exactly the edge and one service per dynamic site; the lost site's is gone.
    eventually(
        lambda: "lost" not in services_of(swarm, settings).values(), 60, "the orphan removed", director.log
    )
    eventually(lambda: serves(settings, "lost", 404), 30, "lost gone from the edge", director.log)
    live = services_of(swarm, settings)
    assert sorted(label for label in live.values() if label) == sorted(dynamic)
    assert settings.edge_service in live and len(live) == len(dynamic) + 1
    # No half-written config: no temporary file left in the edge dir, and Nginx accepts what is there.
    leftovers = [p for p in settings.edge_dir.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []
    edge = swarm.containers.list(filters={"label": f"com.docker.swarm.service.name={settings.edge_service}"})
    assert edge, "the edge container runs"
    tested = edge[0].exec_run(["nginx", "-t"])
    assert tested.exit_code == 0, tested.output.decode()

    # Delete a dynamic site: its host answers 404 and nothing of it is left in Swarm.
    victim = sorted(dynamic)[0]
    store.delete(victim)
    eventually(lambda: serves(settings, victim, 404), 60, f"{victim} gone from the edge", director.log)
    eventually(lambda: victim not in services_of(swarm, settings).values(), 60, f"{victim}'s service gone")
    eventually(
        lambda: not swarm.containers.list(all=True, filters={"label": f"{LABEL_SITE}={victim}"}),
        60,
        f"{victim}'s containers gone",
    )
    assert director.signal(signal.SIGTERM) == 0
