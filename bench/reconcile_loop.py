"""The controller end to end on the real Swarm: apply-to-served latency, 1,000 sites, and one resync.

1. Apply-to-served latency (`director controller` as a subprocess): a static site, record written to first
   200 through the edge; a dynamic site, the same, interleaved with a plain `docker service create` of the
   same image and command (dnsrr, same overlay network) timed to its first 200 as fetched by curl from a
   helper container on that network. Medians and the dynamic/plain ratio.
2. 1,000 static sites from an empty state to all Ready (a sample fetched for a 200 through the edge), and
   the controller's RSS.
3. One resync of the 1,000 converged sites, the controller in this process with its Docker client counting
   every call: calls by method, CPU seconds, wall time and RSS. The cold start before it (a fresh controller
   meeting 1,000 converged sites) is reported too.

Everything is created under throwaway instances and removed at the end.

    .venv/bin/python -m bench.reconcile_loop [--rounds 10] [--sites 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import resource
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import docker
import docker.types

from bench.e2e_helpers import (
    ControllerProcess,
    counting_client,
    http_status,
    rss_mb,
    throwaway_instance,
    wait_until,
)
from controller.process import THREADS
from controller.runtime import ControllerOptions
from orchestrator.main import build_controller
from reconcilers.docker_calls import LABEL_INSTANCE, make_client
from reconcilers.local_images import ensure_base_image
from reconcilers.nginx_config import SITE_PORT
from specs.config import Settings
from specs.models import ObjectMeta, Site, SiteSpec
from store.records import SiteStore

LOCAL_IMAGE = "director-local/site:latest"
SERVE_PUBLIC = ["sh", "-c", 'exec python3 -m http.server "$PORT" --bind "$HOST" --directory /site/public']
EDGE_START_SECONDS = 120
RESYNC_SECONDS = 30


def _site(name: str, **spec: object) -> Site:
    return Site(metadata=ObjectMeta(name=name), spec=SiteSpec.model_validate(spec))


def _served(settings: Settings, name: str) -> Callable[[], bool]:
    host = f"{name}.{settings.sites_domain}"
    return lambda: _has_title(settings, host, name)


def _edge_answers(settings: Settings) -> Callable[[], bool]:
    return lambda: http_status(settings, "nobody.example.org")[0] == 404


def _index_of(name: str) -> str:
    return f"<h1>{name}</h1>"


def _has_title(settings: Settings, host: str, name: str) -> bool:
    status, body = http_status(settings, host)
    return status == 200 and _index_of(name) in body


def _median_line(label: str, seconds: list[float]) -> str:
    return (
        f"{label}: median {statistics.median(seconds):.2f} s "
        f"(min {min(seconds):.2f}, max {max(seconds):.2f}, n={len(seconds)})"
    )


# -- 1. apply-to-served latency ------------------------------------------------------------------------


class PlainPeer:
    """`docker service create` of the same image and command as a dynamic site, timed to its first 200."""

    def __init__(self, client: docker.DockerClient, settings: Settings, image: str) -> None:
        self.client = client
        self.settings = settings
        self.image = image
        self.prober = client.containers.run(
            image,
            ["sleep", "infinity"],
            detach=True,
            network=settings.network,
            labels={LABEL_INSTANCE: settings.instance},
            name=f"{settings.instance}-prober",
        )

    def measure(self, index: int) -> float:
        name = f"{self.settings.instance}-plain-{index}"
        public = self.settings.state_dir / "plain" / name / "public"
        public.mkdir(parents=True)
        (public / "index.html").write_text(_index_of(name))
        public.parent.chmod(0o755)
        poll = (
            f"until curl -fsS -o /dev/null --max-time 2 http://{name}:{SITE_PORT}/ 2>/dev/null; "
            "do sleep 0.01; done"
        )
        served = threading.Event()

        def probe() -> None:
            self.prober.exec_run(["sh", "-c", poll])
            served.set()

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        # The probe's exec is under way before the clock starts, as the edge is for a Director site.
        time.sleep(0.2)
        started = time.monotonic()
        self.client.api.create_service(
            docker.types.TaskTemplate(
                container_spec=docker.types.ContainerSpec(
                    self.image,
                    command=SERVE_PUBLIC,
                    env=[f"PORT={SITE_PORT}", "HOST=0.0.0.0"],
                    mounts=[docker.types.Mount("/site", str(public.parent), type="bind", read_only=True)],
                ),
                networks=[self.settings.network],
            ),
            name=name,
            labels={LABEL_INSTANCE: self.settings.instance},
            endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
        )
        if not served.wait(120):
            raise TimeoutError(f"{name} did not answer within 120 s")
        return time.monotonic() - started


def measure_latency(client: docker.DockerClient, image: str, rounds: int) -> None:
    with throwaway_instance(client, image, "benchlat") as settings:
        controller = ControllerProcess(settings)
        controller.start()
        try:
            edge_up = wait_until(_edge_answers(settings), EDGE_START_SECONDS, "the edge", 0.1)
            print(f"edge up {edge_up:.1f} s after the controller started")
            store = SiteStore(settings.state_dir)
            static: list[float] = []
            for index in range(rounds):
                name = f"static-{index}"
                started = time.monotonic()
                store.create(_site(name))
                wait_until(_served(settings, name), 60, name)
                static.append(time.monotonic() - started)
                time.sleep(0.3)
            print(_median_line("static site, record written -> first 200 through the edge", static))

            peer = PlainPeer(client, settings, image)
            director: list[float] = []
            plain: list[float] = []
            for index in range(rounds):

                def director_round(i: int = index) -> None:
                    name = f"dyn-{i}"
                    started = time.monotonic()
                    store.create(_site(name, type="dynamic", image=LOCAL_IMAGE, command=SERVE_PUBLIC))
                    wait_until(_served(settings, name), 120, name, poll=0.01)
                    director.append(time.monotonic() - started)

                def plain_round(i: int = index) -> None:
                    plain.append(peer.measure(i))

                order = [director_round, plain_round] if index % 2 == 0 else [plain_round, director_round]
                for measure in order:
                    measure()
                    time.sleep(0.5)
            print(_median_line("dynamic site via Director, record -> first 200 through the edge", director))
            print(_median_line("plain docker service create -> first 200 from the network", plain))
            ratio = statistics.median(director) / statistics.median(plain)
            print(f"dynamic apply-to-served, Director / plain service create: {ratio:.2f}x (target <= 1.3x)")
        finally:
            controller.stop()


# -- 2. 1,000 static sites -----------------------------------------------------------------------------


def converge_many(settings: Settings, count: int) -> None:
    controller = ControllerProcess(settings, resync_seconds=RESYNC_SECONDS)
    controller.start()
    try:
        wait_until(_edge_answers(settings), EDGE_START_SECONDS, "the edge", 0.1)
        store = SiteStore(settings.state_dir)
        names = [f"many-{index:04d}" for index in range(count)]
        started = time.monotonic()
        for name in names:
            store.create(_site(name))
        written = time.monotonic() - started

        def all_ready() -> bool:
            sites, _ = store.list()
            ready = 0
            for found in sites:
                condition = found.status.condition("Ready") if found.status else None
                ready += condition is not None and condition.status == "True"
            return ready == count

        wait_until(all_ready, 600, f"{count} sites Ready", poll=0.5)
        converged = time.monotonic() - started
        # Ready follows the edge's SIGHUP; Nginx's new workers take a moment more to load the routes.
        sample = random.Random(7).sample(names, min(100, count))
        waited = [wait_until(_served(settings, name), 10, name, poll=0.01) for name in sample]
        print(
            f"{count} static sites: records written in {written:.1f} s; all Ready {converged:.1f} s "
            f"after the first write ({count / converged:.0f} sites/s); a sample of {len(sample)} all "
            f"answered 200 with their page (the last {max(waited):.2f} s after all were Ready)"
        )
        print(f"controller RSS with {count} converged sites: {controller.rss_mb():.0f} MB")
    finally:
        controller.stop()


# -- 3. one resync of the converged sites, counted -------------------------------------------------------


class ReconcileLog(logging.Handler):
    """Counts the runtime's per-site reconcile lines by trigger, and notes when each resync round ends."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.by_trigger: Counter[str] = Counter()
        self.results: Counter[str] = Counter()
        self.rounds_done: dict[str, float] = {}
        self.last_at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        message = str(record.msg)
        if message.startswith("site %s generation") and len(args) >= 6:
            self.by_trigger[str(args[5])] += 1
            self.results[f"{args[2]}{args[3]}"] += 1
            self.last_at = time.monotonic()
        elif message.startswith("%s: %d sites") and args:
            self.rounds_done[str(args[0])] = time.monotonic()
        if record.levelno >= logging.WARNING:
            print(f"  controller {record.levelname}: {record.getMessage()[:200]}")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {seconds:.0f}s")
        await asyncio.sleep(0.01)


def _calls_line(calls: Counter[str]) -> str:
    listed = ", ".join(f"{name} {n}" for name, n in sorted(calls.items())) or "none"
    return f"{sum(calls.values())} Docker API calls ({listed})"


async def resync_in_process(settings: Settings, count: int) -> None:
    # As `director controller` runs it: blocking Docker, store and event-log calls in a larger pool.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(THREADS, thread_name_prefix="pool"))
    client, api = counting_client(make_client())
    runtime_log = logging.getLogger("controller.runtime")
    reconciles = ReconcileLog()
    runtime_log.addHandler(reconciles)
    runtime_log.setLevel(logging.INFO)
    runtime_log.propagate = False
    options = ControllerOptions(resync_seconds=RESYNC_SECONDS, resync_jitter=0.0)
    controller = build_controller(settings, options, client)
    started = time.monotonic()
    cpu_started = _cpu_seconds()
    running = asyncio.create_task(controller.run())
    try:
        await _until(lambda: "start" in reconciles.rounds_done, 120, "the start round")
        await _until(lambda: reconciles.by_trigger["start"] >= count, 300, "the cold start's reconciles")
        cold_done = reconciles.last_at
        cold_calls = api.between(started, cold_done)
        cold_cpu = _cpu_seconds() - cpu_started
        print(
            f"cold start (fresh controller, {count} converged sites): all reconciled in "
            f"{cold_done - started:.1f} s, {cold_cpu:.1f} CPU s; {_calls_line(cold_calls)}"
        )
        resync_at = reconciles.rounds_done["start"] + RESYNC_SECONDS
        if cold_done > resync_at - 1:
            print("  (the cold start ran into the next resync: the figures below overlap it)")
        await asyncio.sleep(max(0.0, resync_at - 0.3 - time.monotonic()))
        window_start = time.monotonic()
        cpu_before = _cpu_seconds()
        await _until(lambda: reconciles.by_trigger["resync"] >= count, 300, "the resync's reconciles")
        window_end = time.monotonic()
        cpu = _cpu_seconds() - cpu_before
        calls = api.between(window_start, window_end)
        writes = {
            name: n for name, n in calls.items() if name.startswith(("create", "update", "remove", "kill"))
        }
        resync_seconds = reconciles.last_at - resync_at
        print(
            f"one resync of {count} converged sites: {resync_seconds:.2f} s wall, {cpu:.2f} CPU s; "
            f"{_calls_line(calls)}; writes: {sum(writes.values())}"
        )
        print(f"  reconcile results: {dict(reconciles.results)}")
        print(f"controller RSS (in-process, after the resync): {rss_mb():.0f} MB")
    finally:
        controller.stop()
        await asyncio.wait_for(running, 60)
        runtime_log.removeHandler(reconciles)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="latency measurements of each kind (10)")
    parser.add_argument("--sites", type=int, default=1000, help="static sites to converge and resync (1000)")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    client = make_client()
    image = ensure_base_image(client)
    try:
        measure_latency(client, image, arguments.rounds)
        with throwaway_instance(client, image, "benchk") as settings:
            converge_many(settings, arguments.sites)
            asyncio.run(resync_in_process(settings, arguments.sites))
    finally:
        client.close()
    print(f"benchmark total {time.monotonic() - started:.0f} s; everything it created is removed")


if __name__ == "__main__":
    main()
