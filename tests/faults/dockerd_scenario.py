"""dockerd stopped and started again, for real, while sites are being applied: the scenario shared by the
fault test (tests/faults/test_dockerd_restart.py), which judges it, and bench/faults.py, which prints its
figures.

The daemon is stopped and started by scripts/dockerd.sh, the way scripts/setup.sh starts it on this machine.
Whatever happens, `engine_back()` leaves the engine answering and its Swarm active.
"""

from __future__ import annotations

import concurrent.futures
import random
import subprocess
import threading
import time
from dataclasses import dataclass, field

import docker
from kill_scenario import LOCAL_IMAGE, SERVE_PUBLIC, services_by_site
from swarm_helpers import ROOT, ControllerProcess, get, host_of

from reconcilers.docker_calls import LABEL_INSTANCE, LABEL_ROLE
from specs.config import Settings
from specs.models import ObjectMeta, Site, SiteSpec
from store.records import InvalidRecord, NotFound, SiteStore

DOCKERD_SCRIPT = ROOT / "scripts" / "dockerd.sh"
ENGINE_BACK_SECONDS = 180.0


def dockerd(command: str) -> None:
    """`scripts/dockerd.sh start|stop`, which waits until the engine answers or has exited."""
    subprocess.run(
        ["bash", str(DOCKERD_SCRIPT), command],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=ENGINE_BACK_SECONDS,
    )


def swarm_state() -> str:
    found = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return found.stdout.strip() if found.returncode == 0 else f"no answer ({found.stderr.strip()})"


def engine_back() -> str:
    """Start the engine if it is down and wait for its Swarm to be active again; the last state seen."""
    dockerd("start")
    deadline = time.monotonic() + ENGINE_BACK_SECONDS
    state = swarm_state()
    while state != "active" and time.monotonic() < deadline:
        time.sleep(0.5)
        state = swarm_state()
    return state


@dataclass(frozen=True)
class Plan:
    static_sites: int = 40
    dynamic_sites: int = 10
    apply_pause_seconds: float = 0.1
    # How many applies go in before dockerd is stopped; the rest are applied while it stops and is down.
    applied_before_stop: int = 15
    # How long the engine stays away at least, from the stop, as a restart that stops many containers does:
    # the reconciles failing meanwhile back off up to about 16 s, which its return cuts short.
    outage_seconds: float = 20.0

    def names(self, seed: int) -> list[str]:
        names = [f"s{i:02d}" for i in range(self.static_sites)] + [f"d{i}" for i in range(self.dynamic_sites)]
        random.Random(seed).shuffle(names)
        return names


@dataclass
class DockerdRun:
    names: list[str] = field(default_factory=list)
    # How long the daemon took to stop, and was away in all (stop, then start until it answered).
    stop_seconds: float = 0.0
    away_seconds: float = 0.0
    # From the engine answering again to: the edge serving every site, every site converged (Ready at its
    # generation and served); None if that did not happen within the patience given.
    served_seconds: float | None = None
    converged_seconds: float | None = None


def spec_of(name: str) -> SiteSpec:
    if name.startswith("d"):
        return SiteSpec.model_validate({"type": "dynamic", "image": LOCAL_IMAGE, "command": SERVE_PUBLIC})
    return SiteSpec()


def served(settings: Settings, name: str) -> bool:
    try:
        status, body = get(settings, host_of(settings, name), timeout=3)
    except OSError:
        return False
    return status == 200 and f"<h1>{name}</h1>" in body


def all_served(settings: Settings, names: list[str]) -> bool:
    # Side by side: a site not served yet may take its whole timeout to say so.
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return all(pool.map(lambda name: served(settings, name), names))


def not_converged(store: SiteStore, settings: Settings, names: list[str]) -> list[str]:
    behind = []
    for name in names:
        try:
            record = store.get(name)
        except (NotFound, InvalidRecord):
            behind.append(f"{name}: no record")
            continue
        ready = record.status.condition("Ready") if record.status is not None else None
        if ready is None or ready.status != "True" or ready.observed_generation != record.metadata.generation:
            behind.append(f"{name}: {ready.message if ready is not None else 'no status'}")
        elif not served(settings, name):
            behind.append(f"{name}: not served")
    return behind


def edge_services(client: docker.DockerClient, settings: Settings) -> list[str]:
    found = client.api.services(
        filters={"label": [f"{LABEL_INSTANCE}={settings.instance}", f"{LABEL_ROLE}=edge"]}
    )
    return [service["Spec"]["Name"] for service in found]


def restart_during_applies(
    controller: ControllerProcess, store: SiteStore, plan: Plan, patience: float, *, seed: int = 5
) -> DockerdRun:
    """Apply the plan's sites, stopping dockerd once `applied_before_stop` of them are in and starting it
    again once every apply is in; then wait up to `patience` seconds for every site to converge."""
    settings = controller.settings
    run = DockerdRun(names=plan.names(seed))
    enough = threading.Event()
    finished = threading.Event()
    failures: list[BaseException] = []

    def apply_all() -> None:
        try:
            for count, name in enumerate(run.names, start=1):
                store.create(Site(metadata=ObjectMeta(name=name), spec=spec_of(name)))
                if count >= plan.applied_before_stop:
                    enough.set()
                finished.wait(plan.apply_pause_seconds)
        except BaseException as error:  # reported by the caller, not lost in the thread
            failures.append(error)
        finally:
            enough.set()
            finished.set()

    applier = threading.Thread(target=apply_all, name="applies", daemon=True)
    applier.start()
    enough.wait()
    stopping = time.monotonic()
    dockerd("stop")
    run.stop_seconds = time.monotonic() - stopping
    applier.join()
    if failures:
        raise failures[0]
    # The outage lasts its time: a fault held, not a wait for anything to happen.
    threading.Event().wait(max(0.0, plan.outage_seconds - (time.monotonic() - stopping)))
    dockerd("start")
    back = time.monotonic()
    run.away_seconds = back - stopping
    while time.monotonic() - back < patience:
        if run.served_seconds is None and all_served(settings, run.names):
            run.served_seconds = time.monotonic() - back
        if run.served_seconds is not None and not not_converged(store, settings, run.names):
            run.converged_seconds = time.monotonic() - back
            break
        time.sleep(0.25)
    return run


__all__ = [
    "DockerdRun",
    "Plan",
    "edge_services",
    "engine_back",
    "not_converged",
    "restart_during_applies",
    "services_by_site",
]
