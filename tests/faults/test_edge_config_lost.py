"""The edge's configuration directory broken by hand, for real: a fragment of the live routes overwritten with
garbage, then the whole directory deleted. Within a resync the files are rebuilt from the records, the edge
serves every site again (and a site applied afterwards), and an event of the edge says what was done."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from swarm_helpers import ControllerProcess, eventually, host_of, serves, site

from reconcilers.edge import live_generation
from reconcilers.nginx_config import ROUTES_DIR
from specs.config import Settings
from specs.platform import PLATFORM_NAME
from store.records import SiteStore
from tests.e2e.e2e_helpers import events_since

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

RESYNC_SECONDS = 10
# One resync (with its jitter), the edge's own restart when its directory was replaced, and a busy machine.
REBUILT_SECONDS = 3 * RESYNC_SECONDS + 30


def edge_rebuilt_event(settings: Settings, since: float, words: str) -> bool:
    return any(
        event.step.endswith("edge-routes") and event.result == "updated" and words in event.message
        for event in events_since(settings, PLATFORM_NAME, since)
    )


def served(settings: Settings, names: list[str], seconds: float, controller: ControllerProcess) -> None:
    for name in names:
        host, page = host_of(settings, name), f"<h1>{name}</h1>"
        eventually(lambda: serves(settings, host, 200, page), seconds, f"{name} served", controller)  # noqa: B023


def test_edge_files_corrupted_or_deleted_by_hand_are_rebuilt_within_a_resync_with_an_event(
    new_settings: Callable[[Path], Settings], swarm: docker.DockerClient, tmp_path: Path
):
    settings = new_settings(tmp_path / "state")
    controller = ControllerProcess(settings, tmp_path / "controller.log", resync_seconds=RESYNC_SECONDS)
    controller.start()
    try:
        eventually(lambda: serves(settings, "nobody.example.org", 404), 120, "the edge", controller)
        store = SiteStore(settings.state_dir)
        names = ["alpha", "beta", "gamma"]
        for name in names:
            store.create(site(name))
        served(settings, names, 60, controller)

        # A fragment of the live generation overwritten in place, as an editor would.
        generation = live_generation(settings.edge_dir)
        assert generation is not None
        fragment = sorted((settings.edge_dir / ROUTES_DIR / generation).glob("hosts-*.conf"))[0]
        corrupted_at = time.time()
        fragment.write_text("this is not nginx {\n")
        eventually(
            lambda: edge_rebuilt_event(settings, corrupted_at, "edited"),
            REBUILT_SECONDS,
            "an event of the edge's routes rebuilt after the corruption",
            controller,
        )
        rebuilt = live_generation(settings.edge_dir)
        assert rebuilt is not None
        assert all(
            "this is not nginx" not in path.read_text()
            for path in (settings.edge_dir / ROUTES_DIR / rebuilt).iterdir()
        )
        served(settings, names, 30, controller)

        # The whole directory gone; the edge runs on what it loaded until it is rebuilt.
        deleted_at = time.time()
        shutil.rmtree(settings.edge_dir)
        eventually(
            lambda: edge_rebuilt_event(settings, deleted_at, "removed"),
            REBUILT_SECONDS,
            "an event of the edge's routes rebuilt after the deletion",
            controller,
        )
        served(settings, names, 60, controller)
        # The edge loads the new directory, not the deleted one it had mounted: a new site reaches it.
        store.create(site("delta"))
        eventually(
            lambda: serves(settings, host_of(settings, "delta"), 200, "<h1>delta</h1>"),
            60,
            "delta",
            controller,
        )
        assert "Traceback" not in controller.log.read_text(errors="replace"), controller.tail(60)
    finally:
        controller.stop()
