"""`director controller` as a process against the real Swarm, edge Nginx and site directories.

The tests write desired state straight into the record store (as the API would) and judge the result only
by what runs: HTTP answers through the edge port, services in Swarm, files on disk, status records.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
from swarm_helpers import (
    ControllerProcess,
    eventually,
    host_of,
    ready,
    record_gone,
    serves,
    services_of,
    site,
)

from reconcilers.docker_calls import LABEL_SITE
from store.events import EventLog
from store.records import NotFound, SiteStore

pytestmark = [pytest.mark.swarm, pytest.mark.slow]


# Serves the site's public/ on $PORT; the image is Director's local base image (python3, no shell tricks).
SERVE = ["sh", "-c", 'exec python3 -m http.server "$PORT" --bind "$HOST" --directory /site/public']


@pytest.fixture
def director(make_settings, base_image, swarm, tmp_path) -> Iterator[ControllerProcess]:
    settings = make_settings(edge_image=base_image, site_image=base_image)
    controller = ControllerProcess(settings, tmp_path / "controller.log")
    yield controller
    controller.kill()


def test_a_static_site_is_applied_served_reported_and_deleted(director: ControllerProcess, swarm):
    settings = director.settings
    store = SiteStore(settings.state_dir)
    director.start()
    store.create(site("hello"))
    eventually(
        lambda: serves(settings, host_of(settings, "hello"), 200, "<h1>hello</h1>"),
        90,
        "hello served",
        director,
    )
    eventually(lambda: ready(store, "hello"), 30, "hello Ready", director)
    status = store.get("hello").status
    assert status is not None and status.observed_generation == 1
    assert status.urls == [f"http://hello.{settings.sites_domain}:{settings.http_port}/"]
    events = EventLog(settings.events_db).query("hello")
    assert {"files.directories", "routes"} <= {e.step for e in events}
    assert all(e.result != "failed" for e in events)
    assert all(e.reconcile_id and e.trigger and e.generation == 1 for e in events)

    store.delete("hello")
    eventually(
        lambda: serves(settings, host_of(settings, "hello"), 404), 30, "hello gone from the edge", director
    )
    # The edge stops serving the site a moment before the finalizer comes off the record.
    eventually(lambda: record_gone(store, "hello"), 10, "hello's record gone", director)
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
    eventually(lambda: "lost" in services_of(swarm, settings).values(), 90, "lost's service", director)
    for name in names:
        if name in dynamic:
            store.create(site(name, type="dynamic", image="director-local/site:latest", command=SERVE))
        else:
            store.create(site(name))
    eventually(
        lambda: sum(store.get(n).status is not None for n in names) >= 3,
        60,
        "the apply under way",
        director,
    )
    director.signal(signal.SIGKILL)
    half_done = sum(ready(store, n) for n in names)
    assert half_done < len(names), "the kill came too late to interrupt anything"
    # Removed by hand, finalizer and all, while no controller runs: nothing will say it was deleted.
    store.spec_path("lost").unlink()
    store.status_path("lost").unlink(missing_ok=True)

    director.start()
    eventually(lambda: all(ready(store, n) for n in names), 180, "all 20 sites Ready after restart", director)
    for name in names:
        eventually(lambda n=name: serves(settings, host_of(settings, n), 200), 30, f"{name} served", director)
    # No orphan service: exactly the edge and one service per dynamic site; the lost site's is gone.
    eventually(
        lambda: "lost" not in services_of(swarm, settings).values(), 60, "the orphan removed", director
    )
    eventually(
        lambda: serves(settings, host_of(settings, "lost"), 404), 30, "lost gone from the edge", director
    )
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
    eventually(
        lambda: serves(settings, host_of(settings, victim), 404), 60, f"{victim} gone from the edge", director
    )
    eventually(lambda: victim not in services_of(swarm, settings).values(), 60, f"{victim}'s service gone")
    eventually(
        lambda: not swarm.containers.list(all=True, filters={"label": f"{LABEL_SITE}={victim}"}),
        60,
        f"{victim}'s containers gone",
    )
    assert director.signal(signal.SIGTERM) == 0
