"""The controller SIGKILLed every few seconds during 200 applies, for real: after its last restart every site
converges (Ready at its last generation, served as its last apply asks), no record is torn, each dynamic
site has exactly one service and no service is left of a site that has none."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from kill_scenario import Plan, run_with_kills, services_by_site, unconverged
from swarm_helpers import ControllerProcess, eventually, serves

from specs.config import Settings
from store.records import SiteStore

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

CONVERGE_SECONDS = 120.0


def test_the_controller_killed_every_few_seconds_during_200_applies_converges_and_tears_nothing(
    new_settings: Callable[[Path], Settings], swarm: docker.DockerClient, tmp_path: Path
):
    settings = new_settings(tmp_path / "state")
    controller = ControllerProcess(settings, tmp_path / "controller.log", resync_seconds=10)
    controller.start()
    try:
        eventually(lambda: serves(settings, "nobody.example.org", 404), 120, "the edge", controller)
        store = SiteStore(settings.state_dir)
        plan = Plan()
        assert plan.applies == 200
        run = run_with_kills(controller, store, plan, CONVERGE_SECONDS)
        assert run.applies == plan.applies
        assert run.kills >= 5, f"only {run.kills} kills: the applies ran faster than the kills"
        assert run.recovery_seconds is not None, (
            f"not converged {CONVERGE_SECONDS:.0f}s after the last of {run.kills} kills: "
            f"{unconverged(store, settings, run)[:10]}\n{controller.tail(40)}"
        )
        print(
            f"\n{run.kills} SIGKILLs during {run.applies} applies; "
            f"converged {run.recovery_seconds:.1f}s after the last"
        )

        sites, broken = store.list()
        assert not broken, broken
        assert {site.name for site in sites} == set(run.last)
        leftovers = list((settings.state_dir / "specs").rglob(".*.tmp")) + list(
            (settings.state_dir / "status").rglob(".*.tmp")
        )
        assert not leftovers, leftovers
        with sqlite3.connect(settings.events_db) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

        services = services_by_site(swarm, settings)
        dynamic = {name for name in run.last if name.startswith("d")}
        assert set(services) == dynamic, f"services of {sorted(set(services) - dynamic)}: orphans"
        for name, found in services.items():
            assert len(found) == 1, f"{name} has {len(found)} services"
            env = found[0]["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env", [])
            assert f"ROUND={run.last[name]}" in env, (name, env)
    finally:
        controller.stop()
