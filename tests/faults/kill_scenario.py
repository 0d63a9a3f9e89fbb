"""The controller SIGKILLed again and again while records are applied: the scenario shared by the fault test
(tests/faults/test_controller_killed.py), which judges it, and bench/faults.py, which prints its figures.

Applies go to the record store as the API writes them; a static site's applies move it from one custom domain
to the next, a dynamic site's change its environment, so that each one is work for the edge or for Swarm.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import docker
from swarm_helpers import ControllerProcess, get, host_of

from reconcilers.docker_calls import LABEL_INSTANCE, LABEL_SITE
from specs.config import Settings
from specs.models import ObjectMeta, Site, SiteSpec
from store.records import Conflict, InvalidRecord, NotFound, SiteStore

LOCAL_IMAGE = "director-local/site:latest"
SERVE_PUBLIC = ["sh", "-c", 'exec python3 -m http.server "$PORT" --bind "$HOST" --directory /site/public']


@dataclass(frozen=True)
class Plan:
    static_sites: int = 40
    applies_per_static: int = 4
    dynamic_sites: int = 4
    applies_per_dynamic: int = 10
    # Between two applies, and between a start of the controller and its SIGKILL (uniformly in the range).
    apply_pause_seconds: float = 0.15
    kill_after_seconds: tuple[float, float] = (2.0, 5.0)

    @property
    def applies(self) -> int:
        return self.static_sites * self.applies_per_static + self.dynamic_sites * self.applies_per_dynamic


@dataclass
class KillRun:
    kills: int = 0
    applies: int = 0
    # From the last restart of the controller to every site converged (or None if it did not).
    recovery_seconds: float | None = None
    # Each site's last apply: its custom domain (static) or its ROUND (dynamic).
    last: dict[str, str] = field(default_factory=dict)


def static_domain(name: str, round_: int) -> str:
    return f"{name}-v{round_}.example.org"


def _spec(name: str, round_: int) -> SiteSpec:
    if name.startswith("d"):
        return SiteSpec.model_validate(
            {"type": "dynamic", "image": LOCAL_IMAGE, "command": SERVE_PUBLIC, "env": {"ROUND": str(round_)}}
        )
    return SiteSpec.model_validate({"domains": [static_domain(name, round_)]})


def apply_once(store: SiteStore, name: str, round_: int) -> None:
    """Create the site or update it to `round_`, as a client retrying on conflicts would."""
    while True:
        try:
            current = store.get(name)
        except NotFound:
            store.create(Site(metadata=ObjectMeta(name=name), spec=_spec(name, round_)))
            return
        current.spec = _spec(name, round_)
        try:
            store.update(current)
            return
        except Conflict:
            continue


def applies_in_order(plan: Plan, seed: int) -> list[tuple[str, int]]:
    """(site, round) of every apply; each site's rounds in order, the sites interleaved at random."""
    queues = [[(f"s{i:02d}", r) for r in range(plan.applies_per_static)] for i in range(plan.static_sites)]
    queues += [[(f"d{i}", r) for r in range(plan.applies_per_dynamic)] for i in range(plan.dynamic_sites)]
    chooser = random.Random(seed)
    order: list[tuple[str, int]] = []
    while queues:
        queue = chooser.choice(queues)
        order.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return order


def services_by_site(client: docker.DockerClient, settings: Settings) -> dict[str, list[dict[str, object]]]:
    found = client.api.services(filters={"label": f"{LABEL_INSTANCE}={settings.instance}"})
    by_site: dict[str, list[dict[str, object]]] = {}
    for service in found:
        label = service["Spec"].get("Labels", {}).get(LABEL_SITE)
        if label:
            by_site.setdefault(label, []).append(service)
    return by_site


def unconverged(store: SiteStore, settings: Settings, run: KillRun) -> list[str]:
    """The sites not yet at their last apply: their status behind their generation, not Ready, or not served
    as that apply asks."""
    behind: list[str] = []
    for name, last in sorted(run.last.items()):
        try:
            record = store.get(name)
        except (NotFound, InvalidRecord):
            behind.append(f"{name}: no readable record")
            continue
        ready = record.status.condition("Ready") if record.status is not None else None
        if ready is None or ready.status != "True" or ready.observed_generation != record.metadata.generation:
            behind.append(f"{name}: not Ready at generation {record.metadata.generation}")
            continue
        host = static_domain(name, int(last)) if name.startswith("s") else host_of(settings, name)
        try:
            status, body = get(settings, host)
        except OSError as error:
            behind.append(f"{name}: {error}")
            continue
        if status != 200 or f"<h1>{name}</h1>" not in body:
            behind.append(f"{name}: {host} answers {status}")
    return behind


def run_with_kills(
    controller: ControllerProcess,
    store: SiteStore,
    plan: Plan,
    converge_seconds: float,
    *,
    seed: int = 13,
) -> KillRun:
    """Apply the plan while the controller is SIGKILLed and started again every few seconds; after the last
    apply, one more kill, then wait up to `converge_seconds` for every site to converge."""
    run = KillRun()
    order = applies_in_order(plan, seed)
    done = threading.Event()
    failures: list[BaseException] = []

    def apply_all() -> None:
        try:
            for name, round_ in order:
                apply_once(store, name, round_)
                run.last[name] = str(round_)
                run.applies += 1
                done.wait(plan.apply_pause_seconds)
        except BaseException as error:  # reported by the caller, not lost in the thread
            failures.append(error)
        finally:
            done.set()

    chooser = random.Random(seed + 1)
    applier = threading.Thread(target=apply_all, name="applies", daemon=True)
    applier.start()
    while not done.wait(chooser.uniform(*plan.kill_after_seconds)):
        controller.kill()
        controller.start()
        run.kills += 1
    applier.join()
    if failures:
        raise failures[0]
    controller.kill()
    controller.start()
    run.kills += 1
    restarted = time.monotonic()
    while time.monotonic() - restarted < converge_seconds:
        if not unconverged(store, controller.settings, run):
            run.recovery_seconds = time.monotonic() - restarted
            break
        time.sleep(0.5)
    return run
