"""dockerd stopped and started again, for real, while 50 sites are being applied. Within 30 s of its return
every site converges and its status says so; each dynamic site has one service and nothing is left over; the
edge's events say the Docker event stream was lost and came back; the controller logs no traceback.

Restarting the daemon stops every container on the machine for a while, other people's too: the test runs
where CI=true or DIRECTOR_TEST_RESTART_DOCKERD=1 says so, and leaves the engine answering with its Swarm
active whatever happens.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from dockerd_scenario import (
    Plan,
    edge_services,
    engine_back,
    not_converged,
    restart_during_applies,
    services_by_site,
)
from swarm_helpers import ControllerProcess, eventually, serves

from specs.config import Settings
from specs.platform import PLATFORM_NAME
from store.records import SiteStore
from tests.e2e.e2e_helpers import events_since

pytestmark = [
    pytest.mark.swarm,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CI") != "true" and os.environ.get("DIRECTOR_TEST_RESTART_DOCKERD") != "1",
        reason="restarts dockerd, stopping every container here: set DIRECTOR_TEST_RESTART_DOCKERD=1",
    ),
]

CONVERGED_AFTER_RETURN_SECONDS = 30.0
MEASURED_SECONDS = 120.0
# Only the step timeout is shortened: the backoff is the production one, which a long outage lets grow.
PRODUCTION_BACKOFF = ("--step-timeout", "30")
PRODUCTION_RESYNC_SECONDS = 30


@pytest.fixture
def engine_restored() -> Iterator[None]:
    yield
    state = engine_back()
    assert state == "active", f"after the test the Swarm is {state!r}, not active"


def test_dockerd_restarted_while_50_sites_are_applied_all_converge_within_30s_of_its_return(
    new_settings: Callable[[Path], Settings],
    swarm: docker.DockerClient,
    tmp_path: Path,
    # Last: torn down first, so that the engine answers again before the instance's objects are removed.
    engine_restored: None,
):
    settings = new_settings(tmp_path / "state")
    controller = ControllerProcess(
        settings,
        tmp_path / "controller.log",
        resync_seconds=PRODUCTION_RESYNC_SECONDS,
        arguments=PRODUCTION_BACKOFF,
    )
    controller.start()
    try:
        eventually(lambda: serves(settings, "nobody.example.org", 404), 120, "the edge", controller)
        store = SiteStore(settings.state_dir)
        started = time.time()
        # Watched for longer than the 30 s asked, so that a failure says how long it did take.
        run = restart_during_applies(controller, store, Plan(), MEASURED_SECONDS)
        print(
            f"\ndockerd took {run.stop_seconds:.1f}s to stop and was away {run.away_seconds:.1f}s; after its "
            f"return every site was served in {run.served_seconds}s and converged in {run.converged_seconds}s"
        )
        assert (
            run.converged_seconds is not None and run.converged_seconds <= CONVERGED_AFTER_RETURN_SECONDS
        ), (
            f"not converged {CONVERGED_AFTER_RETURN_SECONDS:.0f}s after dockerd's return "
            f"(after {run.converged_seconds}s): "
            f"{not_converged(store, settings, run.names)[:10]}\n{controller.tail(40)}"
        )

        dynamic = {name for name in run.names if name.startswith("d")}
        services = services_by_site(swarm, settings)
        assert set(services) == dynamic, f"services of {sorted(set(services) - dynamic)}: orphans"
        assert all(len(found) == 1 for found in services.values()), {n: len(f) for n, f in services.items()}
        assert edge_services(swarm, settings) == [settings.edge_service]

        said = [(event.result, event.message) for event in events_since(settings, PLATFORM_NAME, started)]
        assert any(result == "failed" and "event stream was lost" in message for result, message in said), (
            said
        )
        assert any(result == "updated" and "reopened after" in message for result, message in said), said
        assert controller.process is not None and controller.process.poll() is None
        assert "Traceback" not in controller.log.read_text(errors="replace"), controller.tail(60)
    finally:
        controller.stop()
