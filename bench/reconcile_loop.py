"""The controller end to end on the real Swarm: apply-to-served latency, 1,000 sites, and their resyncs.

1. Apply-to-served latency (`director controller` as a subprocess): a static site, record written to first
   200 through the edge; a dynamic site, the same, interleaved with a plain `docker service create` of the
   same image and command (dnsrr, same overlay network) timed to its first 200 as fetched by curl from a
   helper container on that network. Medians and the dynamic/plain ratio.
2. 1,000 static sites from an empty state to all Ready (a sample fetched for a 200 through the edge), and
   the controller's RSS. With `first`: the records written before the controller starts, timed from its
   start (the edge included) to all Ready, with its CPU seconds and RSS.
3. Resyncs of the 1,000 converged sites (5, every 10 s), the controller in this process with its Docker
   client counting every call: calls by method, writes, CPU seconds (median), wall time and RSS. The cold
   start before them (a fresh controller meeting 1,000 converged sites) is reported too.
4. 100 dynamic sites from an empty state to all serving (records written to every site's first 200 through
   the edge), side by side with `docker stack deploy` of the same 100 services (image, command, env,
   limits, restart policy, mounts, dnsrr, the same overlay network) timed to every service answering from
   that network. Alternated when repeated; medians and the Director/stack ratio.

Everything is created under throwaway instances and removed at the end.

    .venv/bin/python -m bench.reconcile_loop [--rounds 10] [--sites 1000] [--resyncs 5] [--burst 100]
        [--burst-rounds 1] [--workers N] [--parts latency,many,resync,first,burst]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import yaml

from bench.e2e_helpers import (
    ControllerProcess,
    counting_client,
    cpu_seconds,
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
from reconcilers.service import RESTART_ATTEMPTS, RESTART_DELAY_SECONDS, RESTART_WINDOW_SECONDS, TMPFS_BYTES
from specs.config import Settings
from specs.models import ObjectMeta, Site, SiteSpec
from store.records import SiteStore

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
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


class ReadyCount:
    """How many status records say Ready=True, re-reading only the files that changed since the last count:
    a list() of the store every poll would parse and validate every record, and rewrite the store's shared
    index, taking CPU from the controller being measured on the same cores."""

    def __init__(self, settings: Settings) -> None:
        self._directory = settings.state_dir / "status" / "sites"
        self._seen: dict[str, tuple[tuple[int, int, int], bool]] = {}

    def __call__(self) -> int:
        current: dict[str, tuple[tuple[int, int, int], bool]] = {}
        for entry in os.scandir(self._directory):
            if entry.name.startswith(".") or not entry.name.endswith(".yaml"):
                continue
            with contextlib.suppress(FileNotFoundError):
                st = entry.stat()
                key = (st.st_mtime_ns, st.st_size, st.st_ino)
                seen = self._seen.get(entry.name)
                if seen is None or seen[0] != key:
                    seen = (key, _ready(entry.path))
                current[entry.name] = seen
        self._seen = current
        return sum(ready for _, ready in current.values())


def _ready(path: str) -> bool:
    with contextlib.suppress(FileNotFoundError, yaml.YAMLError):
        document = yaml.load(Path(path).read_bytes(), Loader=_Loader)
        conditions = document.get("status", {}).get("conditions", []) if isinstance(document, dict) else []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return False


def converge_many(settings: Settings, count: int, workers: int | None) -> None:
    controller = ControllerProcess(settings, resync_seconds=RESYNC_SECONDS, workers=workers)
    controller.start()
    try:
        wait_until(_edge_answers(settings), EDGE_START_SECONDS, "the edge", 0.1)
        store = SiteStore(settings.state_dir)
        names = [f"many-{index:04d}" for index in range(count)]
        started = time.monotonic()
        for name in names:
            store.create(_site(name))
        written = time.monotonic() - started

        ready = ReadyCount(settings)
        wait_until(lambda: ready() == count, 600, f"{count} sites Ready", poll=0.5)
        converged = time.monotonic() - started
        # Ready follows the edge's SIGHUP; Nginx's new workers take a moment more to load the routes.
        sample = random.Random(7).sample(names, min(100, count))
        waited = [wait_until(_served(settings, name), 10, name, poll=0.01) for name in sample]
        print(
            f"{count} static sites: records written in {written:.1f} s; all Ready {converged:.1f} s "
            f"after the first write ({count / converged:.0f} sites/s); a sample of {len(sample)} all "
            f"answered 200 with their page (the last {max(waited):.2f} s after all were Ready)"
        )
        print(
            f"controller RSS with {count} converged sites: {controller.rss_mb():.0f} MB; "
            f"CPU {controller.cpu_seconds():.1f} s ({workers or 'default'} workers)"
        )
    finally:
        controller.stop()


# -- 2b. the controller started over records written before it ------------------------------------------


def converge_from_records(settings: Settings, count: int, workers: int | None) -> None:
    """`count` static Site records written first, then `director controller` started over them with nothing
    in the world (no edge, no directories): seconds from its start to all Ready, its CPU and RSS."""
    store = SiteStore(settings.state_dir)
    names = [f"first-{index:05d}" for index in range(count)]
    writing = time.monotonic()
    for name in names:
        store.create(_site(name))
    written = time.monotonic() - writing
    controller = ControllerProcess(settings, resync_seconds=RESYNC_SECONDS, workers=workers)
    started = time.monotonic()
    controller.start()
    try:
        edge_up = wait_until(_edge_answers(settings), EDGE_START_SECONDS, "the edge", 0.1)
        ready = ReadyCount(settings)
        wait_until(lambda: ready() == count, 900, f"{count} sites Ready", poll=0.5)
        converged = time.monotonic() - started
        cpu = controller.cpu_seconds()
        sample = random.Random(7).sample(names, min(100, count))
        waited = [wait_until(_served(settings, name), 10, name, poll=0.01) for name in sample]
        print(
            f"{count} static site records written first ({written:.1f} s), then the controller started "
            f"({workers or 'default'} workers): edge answering after {edge_up:.1f} s, all Ready "
            f"{converged:.1f} s after its start ({count / converged:.0f} sites/s; target <= 60 s at 10,000); "
            f"a sample of {len(sample)} answered 200 (the last {max(waited):.2f} s after)"
        )
        print(
            f"controller with {count} sites: CPU {cpu:.1f} s to all Ready "
            f"({cpu / count * 1000:.1f} ms/site), "
            f"RSS {controller.rss_mb():.0f} MB (target <= 150 MB at 10,000)"
        )
    finally:
        controller.stop()


# -- 3. one resync of the converged sites, counted -------------------------------------------------------


class ReconcileLog(logging.Handler):
    """Counts the runtime's per-site reconcile lines by trigger, and notes when each resync round ends."""

    def __init__(self) -> None:
        # DEBUG: a reconcile that found nothing to do is logged at that level.
        super().__init__(logging.DEBUG)
        self.by_trigger: Counter[str] = Counter()
        self.results: Counter[str] = Counter()
        self.rounds_done: dict[str, float] = {}
        self.last_at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        message = str(record.msg)
        # The runtime's lines: "%s %s generation %s: %s%s in %.2fs (trigger: %s, ...)" (kind, name, ...) and
        # "%s: %d %s records, ..." (trigger, count, kind) at the end of each kind's part of a resync.
        if message.startswith("%s %s generation") and len(args) >= 7 and args[0] == "Site":
            self.by_trigger[str(args[6])] += 1
            self.results[f"{args[3]}{args[4]}"] += 1
            self.last_at = time.monotonic()
        elif message.startswith("%s: %d %s records") and len(args) >= 3 and args[2] == "Site":
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


def _resync_interval(count: int) -> float:
    """The in-process controller's resync period: room for a round of `count` sites between two."""
    return max(10.0, count / 100)


async def resync_in_process(settings: Settings, count: int, rounds: int) -> None:
    # As `director controller` runs it: blocking Docker, store and event-log calls in a larger pool.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(THREADS, thread_name_prefix="pool"))
    client, api = counting_client(make_client())
    runtime_log = logging.getLogger("controller.runtime")
    reconciles = ReconcileLog()
    runtime_log.addHandler(reconciles)
    runtime_log.setLevel(logging.DEBUG)
    runtime_log.propagate = False
    interval = _resync_interval(count)
    options = ControllerOptions(resync_seconds=interval, resync_jitter=0.0)
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
        cpus: list[float] = []
        walls: list[float] = []
        for round_number in range(1, rounds + 1):
            previous = "start" if round_number == 1 else "resync"
            resync_at = reconciles.rounds_done[previous] + interval
            if reconciles.last_at > resync_at - 1:
                print("  (a round ran into the next resync: the figures below overlap it)")
            await asyncio.sleep(max(0.0, resync_at - 0.3 - time.monotonic()))
            window_start = time.monotonic()
            cpu_before = _cpu_seconds()
            await _until(
                lambda n=round_number: reconciles.by_trigger["resync"] >= n * count,
                300,
                "the resync's reconciles",
            )
            window_end = time.monotonic()
            cpus.append(_cpu_seconds() - cpu_before)
            walls.append(reconciles.last_at - reconciles.rounds_done["resync"])
            calls = api.between(window_start, window_end)
            writes = {
                name: n
                for name, n in calls.items()
                if name.startswith(("create", "update", "remove", "kill"))
            }
            print(
                f"  resync {round_number}: {walls[-1]:.2f} s wall after the listing, {cpus[-1]:.2f} CPU s; "
                f"{_calls_line(calls)}; writes: {sum(writes.values())}"
            )
        print(
            f"one resync of {count} converged sites, median of {rounds}: {statistics.median(cpus):.2f} CPU s "
            f"(min {min(cpus):.2f}, max {max(cpus):.2f}; target <= 0.5 at 1,000), "
            f"{statistics.median(walls):.2f} s wall"
        )
        print(f"  reconcile results: {dict(reconciles.results)}")
        print(f"controller RSS (in-process, after the resyncs): {rss_mb():.0f} MB")
    finally:
        controller.stop()
        await asyncio.wait_for(running, 60)
        runtime_log.removeHandler(reconciles)
        client.close()


# -- 4. 100 dynamic sites from empty, beside docker stack deploy ---------------------------------------


def _remove_services(client: docker.DockerClient, settings: Settings) -> None:
    """Remove the instance's services and wait until Swarm has removed their containers: removing those by
    force meanwhile (as the instance's cleanup does) races Swarm's own removal ("already in progress")."""
    ours = f"{LABEL_INSTANCE}={settings.instance}"
    for service in client.services.list(filters={"label": ours}):
        with contextlib.suppress(docker.errors.NotFound):
            service.remove()
    tasks = {"label": [ours, "com.docker.swarm.service.id"]}
    wait_until(lambda: not client.api.containers(all=True, filters=tasks), 300, "their containers gone", 0.5)


def _no_containers_left(client: docker.DockerClient, settings: Settings) -> None:
    """Wait until the instance's containers are gone: the next measurement must not share CPU with them."""
    labelled = {"label": f"{LABEL_INSTANCE}={settings.instance}"}
    wait_until(lambda: not client.api.containers(all=True, filters=labelled), 300, "containers removed", 0.5)


class SwarmEvents:
    """When Docker said each service was created and its first container started (wall-clock seconds, by
    service name), read from its event stream in a thread for the timeline of a burst."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._stream: Any = client.events(decode=True, filters={"type": ["service", "container"]})
        self.created: dict[str, float] = {}
        self.containers: dict[str, float] = {}
        self.started: dict[str, float] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        # Closing the stream ends the iteration with an error: that is how it stops.
        with contextlib.suppress(Exception):
            for event in self._stream:
                attributes = event.get("Actor", {}).get("Attributes", {})
                at = event.get("timeNano", 0) / 1e9
                if event.get("Type") == "service" and event.get("Action") == "create":
                    self.created.setdefault(attributes.get("name", ""), at)
                elif event.get("Type") == "container" and event.get("Action") in ("create", "start"):
                    service = attributes.get("com.docker.swarm.service.name", "")
                    seen = self.started if event["Action"] == "start" else self.containers
                    seen.setdefault(service, at)

    def close(self) -> None:
        self._stream.close()


def _pid_of(command: str) -> int | None:
    found = subprocess.run(["pidof", "-s", command], capture_output=True, text=True).stdout.split()
    return int(found[0]) if found else None


class MachineCpu:
    """CPU seconds of dockerd, containerd and the whole machine (busy, all cores) since it was made."""

    def __init__(self) -> None:
        self._pids = {name: _pid_of(name) for name in ("dockerd", "containerd")}
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        ticks = os.sysconf("SC_CLK_TCK")
        now = {"machine busy": (sum(fields) - idle) / ticks, "machine total": sum(fields) / ticks}
        for name, pid in self._pids.items():
            if pid is not None:
                now[name] = cpu_seconds(pid)
        return now

    def line(self) -> str:
        now = self._now()
        used = {name: now[name] - self._start.get(name, now[name]) for name in now}
        busy = used.pop("machine busy") / max(used.pop("machine total"), 1e-9)
        return ", ".join(f"{name} {seconds:.1f} CPU s" for name, seconds in used.items()) + (
            f"; the machine {busy:.0%} busy"
        )


class Timeline:
    """Per site, the wall-clock time of each phase from its record written to its first 200."""

    PHASES = (
        "written",
        "service created",
        "container created",
        "container started",
        "routed at the edge",
        "first 200",
    )

    def __init__(self) -> None:
        self.at: dict[str, dict[str, float]] = {}

    def note(self, name: str, phase: str, at: float) -> None:
        self.at.setdefault(name, {}).setdefault(phase, at)

    def add_events(self, events: SwarmEvents, sites: dict[str, str]) -> None:
        """When Docker said each service of `sites` (service name: site) was created and first started."""
        for service, name in sites.items():
            for phase, seen in (
                ("service created", events.created),
                ("container created", events.containers),
                ("container started", events.started),
            ):
                if service in seen:
                    self.note(name, phase, seen[service])

    def print(self, label: str, started: float) -> None:
        print(f"  timeline of {label}, seconds after the first write: median / p90 / max over the sites")
        for phase in self.PHASES:
            offsets = sorted(times[phase] - started for times in self.at.values() if phase in times)
            if offsets:
                p90 = offsets[min(len(offsets) - 1, int(len(offsets) * 0.9))]
                print(
                    f"    {phase:20s} {statistics.median(offsets):6.2f} / {p90:6.2f} / {offsets[-1]:6.2f} "
                    f"(n={len(offsets)})"
                )


# The probe of both sides of the burst, the same code with the same pace: run by the host's Python against
# the edge for Director's sites, by the prober container's python3 on the sites' network for the stack's
# services. One thread per site asks it every PROBE_PERIOD_SECONDS (each GET on a fresh connection, at most
# PROBE_TIMEOUT_SECONDS), so a site that hangs does not hold up another's answer. A name is looked up as the
# edge's Nginx does (IPv4 only, no AAAA query): a name with no task yet is passed on to the host's resolver
# by Docker's DNS, and more lookups there slow whatever else waits on it (Swarm's image pulls). It prints,
# as JSON lines, the first time it saw each status of each site ("served": a 200 with the site's page) and
# ends once all are served.
PROBE_SCRIPT = r"""
import http.client, json, socket, sys, threading, time
targets = json.loads(sys.argv[1])
period, timeout = float(sys.argv[2]), float(sys.argv[3])
lock = threading.Lock()
def say(*fields):
    with lock:
        print(json.dumps([*fields, time.time()]), flush=True)
def get(address, port, host):
    connection = None
    try:
        found = socket.getaddrinfo(address, port, socket.AF_INET, socket.SOCK_STREAM)
        connection = http.client.HTTPConnection(found[0][4][0], port, timeout=timeout)
        connection.request("GET", "/", headers={"Host": host, "Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return 0, ""
    finally:
        if connection is not None:
            connection.close()
def probe(label, address, port, host, page):
    seen = set()
    while True:
        status, body = get(address, port, host)
        if status == 200 and page in body:
            say(label, "served")
            return
        if status not in seen:
            seen.add(status)
            say(label, status)
        time.sleep(period)
threads = [threading.Thread(target=probe, args=target) for target in targets]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""
PROBE_PERIOD_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 2.0


class Probe:
    """PROBE_SCRIPT run by `python` (a command) over `targets` (label, address, port, Host, page); what it saw
    of each label: {status or "served": first wall-clock time}."""

    def __init__(self, python: list[str], targets: list[tuple[str, str, int, str, str]]) -> None:
        arguments = [json.dumps(targets), str(PROBE_PERIOD_SECONDS), str(PROBE_TIMEOUT_SECONDS)]
        self._process = subprocess.Popen([*python, "-c", PROBE_SCRIPT, *arguments], stdout=subprocess.PIPE)
        self._labels = {target[0] for target in targets}
        self.seen: dict[str, dict[str | int, float]] = {}
        self._served: set[str] = set()
        self._all_served = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            label, what, at = json.loads(line)
            self.seen.setdefault(label, {}).setdefault(what, at)
            if what == "served":
                self._served.add(label)
                if self._served >= self._labels:
                    self._all_served.set()

    def wait(self, seconds: float) -> float:
        """Wall-clock time the last site was first served; TimeoutError past `seconds`."""
        if not self._all_served.wait(seconds):
            pending = len(self._labels - self._served)
            raise TimeoutError(f"{pending} of {len(self._labels)} not served after {seconds:.0f} s")
        return max(self.seen[label]["served"] for label in self._labels)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()


def director_burst(
    client: docker.DockerClient, image: str, count: int, workers: int | None = None, timeline: bool = False
) -> float:
    """Seconds from the first of `count` dynamic Site records written to all of them served by the edge."""
    with throwaway_instance(client, image, "benchburst") as settings:
        controller = ControllerProcess(settings, workers=workers)
        controller.start()
        events = SwarmEvents(client)
        names = [f"burst-{index:03d}" for index in range(count)]
        probe = Probe(
            [sys.executable],
            [
                (name, "127.0.0.1", settings.http_port, f"{name}.{settings.sites_domain}", _index_of(name))
                for name in names
            ],
        )
        try:
            wait_until(_edge_answers(settings), EDGE_START_SECONDS, "the edge", 0.1)
            # The probe's threads are asking (404: no such site yet) before the clock starts.
            wait_until(lambda: len(probe.seen) == count, 30, "the probe", 0.05)
            store = SiteStore(settings.state_dir)
            phases = Timeline()
            machine = MachineCpu()
            controller_cpu = controller.cpu_seconds()
            started = time.time()
            for name in names:
                store.create(_site(name, type="dynamic", image=LOCAL_IMAGE, command=SERVE_PUBLIC))
                phases.note(name, "written", time.time())
            seconds = probe.wait(600) - started
            used = f"{machine.line()}; the controller {controller.cpu_seconds() - controller_cpu:.1f} CPU s"
            if timeline:
                for name in names:
                    seen = probe.seen[name]
                    routed = [at for status, at in seen.items() if status not in (0, 404)]
                    if routed:
                        phases.note(name, "routed at the edge", min(routed))
                    phases.note(name, "first 200", seen["served"])
                phases.add_events(events, {settings.service_name(name): name for name in names})
                phases.print(f"{count} sites via Director ({workers or 'default'} workers)", started)
                print(f"    until all served: {used}")
        finally:
            probe.stop()
            events.close()
            controller.stop()
            _remove_services(client, settings)
    _no_containers_left(client, settings)
    return seconds


def _stack_file(settings: Settings, names: list[str], image: str, root: Path) -> str:
    """The compose file of `names`, each service as Director would run a default dynamic site of that name."""
    defaults = SiteSpec().resources
    labels = {LABEL_INSTANCE: settings.instance}
    tmpfs = [
        {"type": "tmpfs", "target": target, "tmpfs": {"size": TMPFS_BYTES}} for target in ("/tmp", "/run")
    ]
    services = {
        name: {
            "image": image,
            # Compose would put its own environment's $PORT in: $$ leaves it to the container's shell.
            "command": [part.replace("$", "$$") for part in SERVE_PUBLIC],
            "environment": {"PORT": str(SITE_PORT), "HOST": "0.0.0.0"},
            "working_dir": "/site",
            "read_only": True,
            "init": True,
            "volumes": [
                {"type": "bind", "source": str(root / name), "target": "/site", "read_only": True},
                *tmpfs,
            ],
            "networks": ["sites"],
            "labels": dict(labels),
            "stop_grace_period": "10s",
            "deploy": {
                "endpoint_mode": "dnsrr",
                "labels": dict(labels),
                "resources": {
                    "limits": {"cpus": f"{defaults.cpus:g}", "memory": f"{defaults.memory_bytes}b"}
                },
                "restart_policy": {
                    "condition": "any",
                    "delay": f"{RESTART_DELAY_SECONDS}s",
                    "max_attempts": RESTART_ATTEMPTS,
                    "window": f"{RESTART_WINDOW_SECONDS}s",
                },
            },
        }
        for name in names
    }
    networks = {"sites": {"external": True, "name": settings.network}}
    return yaml.safe_dump({"version": "3.8", "services": services, "networks": networks}, sort_keys=False)


def stack_burst(
    client: docker.DockerClient, image: str, count: int, timeline: bool = False, by_id: bool = False
) -> float:
    """Seconds from `docker stack deploy` of `count` services to each answering 200 from their network."""
    with throwaway_instance(client, image, "benchstack") as settings:
        labels = {LABEL_INSTANCE: settings.instance}
        client.api.create_network(settings.network, driver="overlay", attachable=True, labels=labels)
        stack = settings.instance
        names = [f"s{index:03d}" for index in range(count)]
        root = settings.state_dir / "stack"
        for name in names:
            public = root / name / "public"
            public.mkdir(parents=True)
            (public / "index.html").write_text(_index_of(name))
        root.chmod(0o755)
        compose = settings.state_dir / "stack.yaml"
        # As a user writes it, the image is named by its tag; Director names its local images by their ID.
        named = str(client.images.get(image).id) if by_id else image
        compose.write_text(_stack_file(settings, names, named, root))
        prober = client.containers.run(
            image,
            ["sleep", "infinity"],
            detach=True,
            network=settings.network,
            labels=labels,
            name=f"{stack}-prober",
        )
        events = SwarmEvents(client)
        probe = Probe(
            ["docker", "exec", prober.id, "python3"],
            [(name, f"{stack}_{name}", SITE_PORT, f"{stack}_{name}", _index_of(name)) for name in names],
        )
        try:
            # The probe's threads are asking (no such name yet) before the clock starts, as for Director.
            wait_until(lambda: len(probe.seen) == count, 30, "the probe", 0.05)
            machine = MachineCpu()
            started = time.time()
            subprocess.run(
                [
                    "docker",
                    "stack",
                    "deploy",
                    "--detach=true",
                    "--resolve-image=never",
                    "-c",
                    str(compose),
                    stack,
                ],
                check=True,
                capture_output=True,
            )
            seconds = probe.wait(600) - started
            used = machine.line()
            if timeline:
                phases = Timeline()
                for name in names:
                    phases.note(name, "first 200", probe.seen[name]["served"])
                phases.add_events(events, {f"{stack}_{name}": name for name in names})
                phases.print(f"the stack's {count} services", started)
                print(f"    until all served: {used}")
        finally:
            probe.stop()
            events.close()
            _remove_services(client, settings)
    _no_containers_left(client, settings)
    return seconds


def measure_burst(
    client: docker.DockerClient,
    image: str,
    count: int,
    rounds: int,
    workers: int | None = None,
    timeline: bool = False,
    stack_by_id: bool = False,
) -> None:
    director: list[float] = []
    stack: list[float] = []
    for index in range(rounds):

        def director_round() -> None:
            director.append(director_burst(client, image, count, workers, timeline))
            print(f"  Director: {director[-1]:.1f} s")

        def stack_round() -> None:
            stack.append(stack_burst(client, image, count, timeline, stack_by_id))
            print(f"  stack: {stack[-1]:.1f} s")

        for measure in [director_round, stack_round] if index % 2 == 0 else [stack_round, director_round]:
            measure()
    print(
        _median_line(f"{count} dynamic sites via Director, records -> all served through the edge", director)
    )
    named = "its ID" if stack_by_id else "its tag"
    print(
        _median_line(
            f"docker stack deploy of the same {count} services (image by {named}) -> all answering", stack
        )
    )
    ratio = statistics.median(director) / statistics.median(stack)
    print(f"{count} dynamic sites from empty, Director / docker stack deploy: {ratio:.2f}x (target <= 0.7x)")


PARTS = ("latency", "many", "resync", "first", "burst")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="latency measurements of each kind (10)")
    parser.add_argument("--sites", type=int, default=1000, help="static sites to converge and resync (1000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="the controller's workers in many, first and burst (its default)",
    )
    parser.add_argument("--resyncs", type=int, default=5, help="resyncs measured in-process, median (5)")
    parser.add_argument("--burst", type=int, default=100, help="dynamic sites started at once (100)")
    parser.add_argument("--burst-rounds", type=int, default=1, help="bursts of each kind, alternated (1)")
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="in burst: when each site's service was created, its container started, it was routed, served",
    )
    parser.add_argument(
        "--stack-image",
        choices=("tag", "id"),
        default="tag",
        help="in burst, how the stack names the image: by its tag, as a user writes it (tag), or by its ID",
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"which parts to run, comma-separated ({','.join(PARTS)})"
    )
    arguments = parser.parse_args()
    parts = {part.strip() for part in arguments.parts.split(",") if part.strip()}
    if unknown := parts - set(PARTS):
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}; choose among {', '.join(PARTS)}")
    if "resync" in parts and "many" not in parts:
        parser.error("--parts: resync counts a resync of the sites the 'many' part converges; add many")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    client = make_client()
    image = ensure_base_image(client)
    try:
        if "latency" in parts:
            measure_latency(client, image, arguments.rounds)
        if "many" in parts:
            with throwaway_instance(client, image, "benchk") as settings:
                converge_many(settings, arguments.sites, arguments.workers)
                if "resync" in parts:
                    asyncio.run(resync_in_process(settings, arguments.sites, arguments.resyncs))
        if "first" in parts:
            with throwaway_instance(client, image, "benchf") as settings:
                converge_from_records(settings, arguments.sites, arguments.workers)
        if "burst" in parts:
            measure_burst(
                client,
                image,
                arguments.burst,
                arguments.burst_rounds,
                arguments.workers,
                arguments.timeline,
                arguments.stack_image == "id",
            )
    finally:
        client.close()
    print(f"benchmark total {time.monotonic() - started:.0f} s; everything it created is removed")


if __name__ == "__main__":
    main()
