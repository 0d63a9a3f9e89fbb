"""The edge under load while Director changes everything around it: no request to an unchanged site fails.

Under a throwaway instance, with `director controller` as a subprocess: a few sites that nothing touches
(static ones, one with its own upload limit, and dynamic ones) are loaded with `wrk` through the edge's
published port for the whole run, while at the same time
- `--sites` new static sites are applied, at an even pace over the first two thirds of the run;
- one site's route changes every second (served, then not served, then served...);
- one dynamic site rolls (a restart, new tasks before old) twice, and is loaded by its own `wrk` too.
Each wrk (one thread, two connections) says how many requests it made, how many failed (an answer other
than 2xx or 3xx, or a socket error) and its latency percentiles. By default each request opens its own
connection, as a new visitor's does. With --keepalive, connections are kept between requests: then every
reload of the edge (one or more a second here) closes each idle one, and wrk, which always has its next
request under way, counts a read error each time; a browser sends such a request again on a new connection
(RFC 9112, 9.3.1), wrk does not. It prints those of each site, the totals
of the unchanged ones (the goal: 0 failed), the rolling site's apart, and what was changed meanwhile.

    .venv/bin/python -m bench.load [--seconds 60] [--sites 100]

Bounded for a shared machine of 2 cores: wrk never opens more than 12 connections in all.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.e2e_helpers import ControllerProcess, http_status, throwaway_instance, wait_until
from reconcilers.docker_calls import make_client
from reconcilers.local_images import ensure_base_image
from specs.config import Settings
from specs.models import RECONCILE_REQUEST_ANNOTATION, RESTART_REQUEST_ANNOTATION, ObjectMeta, Site, SiteSpec
from store.records import Conflict, SiteStore

LOCAL_IMAGE = "director-local/site:latest"
SERVE_PUBLIC = ["sh", "-c", 'exec python3 -m http.server "$PORT" --bind "$HOST" --directory /site/public']
EDGE_START_SECONDS = 120
SERVED_SECONDS = 180
UNCHANGED: dict[str, dict[str, object]] = {
    "still-static-a": {},
    "still-static-b": {},
    "still-static-limit": {"resources": {"uploadLimit": "16Mi"}},
    "still-dynamic-a": {"type": "dynamic", "image": LOCAL_IMAGE, "command": SERVE_PUBLIC},
    "still-dynamic-b": {"type": "dynamic", "image": LOCAL_IMAGE, "command": SERVE_PUBLIC},
}
ROLLING = "rolling"
FLIPPING = "flipping"
_PERCENTILE = re.compile(r"^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s+([0-9]+) requests in", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)"
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: ([0-9]+)")
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Load:
    """One wrk run against one site, and what it said."""

    site: str
    process: subprocess.Popen[str]
    requests: int = 0
    failed: int = 0
    errors: str = ""
    p50_ms: float = 0.0
    p99_ms: float = 0.0

    def collect(self) -> None:
        output, _ = self.process.communicate()
        requests = _REQUESTS.search(output)
        if requests is None:
            raise RuntimeError(f"wrk against {self.site} said something unexpected:\n{output}")
        self.requests = int(requests.group(1))
        percentiles = {
            found.group(1): float(found.group(2)) * _UNITS[found.group(3)]
            for found in _PERCENTILE.finditer(output)
        }
        self.p50_ms, self.p99_ms = percentiles["50"], percentiles["99"]
        kinds: list[str] = []
        if (non_2xx := _NON_2XX.search(output)) is not None:
            self.failed += int(non_2xx.group(1))
            kinds.append(f"{non_2xx.group(1)} non-2xx/3xx")
        if (socket_errors := _SOCKET_ERRORS.search(output)) is not None:
            counts = dict(
                zip(("connect", "read", "write", "timeout"), map(int, socket_errors.groups()), strict=True)
            )
            self.failed += sum(counts.values())
            kinds.extend(f"{count} {kind}" for kind, count in counts.items() if count)
        self.errors = ", ".join(kinds)


@dataclass
class Changes:
    """What was changed while the load ran."""

    applied: int = 0
    flips: int = 0
    flip_conflicts: int = 0
    rolls: int = 0
    problems: list[str] = field(default_factory=list)


def _site(name: str, **spec: object) -> Site:
    return Site(metadata=ObjectMeta(name=name), spec=SiteSpec.model_validate(spec))


def _host(settings: Settings, name: str) -> str:
    return f"{name}.{settings.sites_domain}"


def _serves_its_page(settings: Settings, name: str) -> Callable[[], bool]:
    def check() -> bool:
        status, body = http_status(settings, _host(settings, name))
        return status == 200 and f"<h1>{name}</h1>" in body

    return check


def _wrk(settings: Settings, name: str, seconds: int, keepalive: bool) -> Load:
    command = [
        "wrk",
        "-t1",
        "-c2",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Host: {_host(settings, name)}",
        *([] if keepalive else ["-H", "Connection: close"]),
        f"http://127.0.0.1:{settings.http_port}/",
    ]
    return Load(name, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))


def _every(seconds: float, until: float, action: Callable[[int], None]) -> None:
    """Call action(0), action(1), ... every `seconds` (on a fixed schedule) until the monotonic `until`."""
    started = time.monotonic()
    tick = 0
    while (moment := started + tick * seconds) < until:
        time.sleep(max(0.0, moment - time.monotonic()))
        action(tick)
        tick += 1


def _change_everything(store: SiteStore, seconds: int, sites: int, changes: Changes) -> None:
    started = time.monotonic()
    end = started + seconds
    names = [f"applied-{index:03d}" for index in range(sites)]

    def apply(index: int) -> None:
        store.create(_site(names[index]))
        changes.applied += 1

    def flip(index: int) -> None:
        current = store.get(FLIPPING)
        current.spec.availability = "not-served" if index % 2 == 0 else "enabled"
        try:
            store.update(current)
            changes.flips += 1
        except Conflict:  # the controller wrote its status in between: the next second flips again
            changes.flip_conflicts += 1

    def roll(_index: int) -> None:
        current = store.get(ROLLING)
        moment = datetime.now(UTC).isoformat()
        current.metadata.annotations[RESTART_REQUEST_ANNOTATION] = moment
        current.metadata.annotations[RECONCILE_REQUEST_ANNOTATION] = moment
        store.update(current)
        changes.rolls += 1

    def guarded(action: Callable[[int], None]) -> Callable[[int], None]:
        def run(index: int) -> None:
            try:
                action(index)
            # Reported with the figures; the run goes on.
            except Exception as error:
                changes.problems.append(f"{action.__name__}: {error}")

        return run

    def rolls() -> None:
        # A quarter into the run, and three quarters in.
        time.sleep(seconds / 4)
        _every(seconds / 2, end, guarded(roll))

    workers = [
        threading.Thread(
            target=_every, args=(seconds * 2 / 3 / sites, started + seconds * 2 / 3, guarded(apply))
        ),
        threading.Thread(target=_every, args=(1.0, end, guarded(flip))),
        threading.Thread(target=rolls),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _ready(store: SiteStore, prefix: str) -> int:
    sites, _ = store.list()
    ready = 0
    for found in sites:
        condition = found.status.condition("Ready") if found.status else None
        ready += found.name.startswith(prefix) and condition is not None and condition.status == "True"
    return ready


def run(seconds: int, sites: int, keepalive: bool) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (scripts/setup.sh installs it)")
    client = make_client()
    image = ensure_base_image(client)
    with throwaway_instance(client, image, "benchload") as settings:
        controller = ControllerProcess(settings)
        controller.start()
        try:
            wait_until(
                lambda: http_status(settings, "nobody.example.org")[0] == 404, EDGE_START_SECONDS, "edge"
            )
            store = SiteStore(settings.state_dir)
            loaded: dict[str, dict[str, object]] = {
                **UNCHANGED,
                ROLLING: {"type": "dynamic", "image": LOCAL_IMAGE, "command": SERVE_PUBLIC},
            }
            everything: dict[str, dict[str, object]] = {**loaded, FLIPPING: {}}
            for name, spec in everything.items():
                store.create(_site(name, **spec))
            for name in loaded:
                wait_until(_serves_its_page(settings, name), SERVED_SECONDS, f"{name} served", poll=0.2)
            # Ready follows the routes; the edge's workers need a moment more, and a dynamic site its task.
            loads = [_wrk(settings, name, seconds, keepalive) for name in loaded]
            changes = Changes()
            _change_everything(store, seconds, sites, changes)
            for load in loads:
                load.collect()
            settled = time.monotonic()
            try:
                wait_until(
                    lambda: _ready(store, "applied-") == changes.applied, 120, "applied sites Ready", 0.5
                )
            except TimeoutError as error:
                changes.problems.append(str(error))
            ready_after = time.monotonic() - settled
            _report(loads, changes, sites, _ready(store, "applied-"), ready_after)
        finally:
            controller.stop()


def _report(loads: list[Load], changes: Changes, sites: int, ready: int, ready_after: float) -> None:
    for load in loads:
        kind = "rolls twice" if load.site == ROLLING else "unchanged"
        print(
            f"{load.site:20} {kind:12} {load.requests:>8,} requests  {load.failed:>4} failed  "
            f"p50 {load.p50_ms:6.2f} ms  p99 {load.p99_ms:7.2f} ms"
            + (f"  ({load.errors})" if load.errors else "")
        )
    unchanged = [load for load in loads if load.site != ROLLING]
    total = sum(load.requests for load in unchanged)
    failed = sum(load.failed for load in unchanged)
    print(
        f"unchanged sites: {total:,} requests, {failed} failed; p50 (median of sites) "
        f"{statistics.median(load.p50_ms for load in unchanged):.2f} ms, p99 (worst site) "
        f"{max(load.p99_ms for load in unchanged):.2f} ms"
    )
    print(
        f"meanwhile: {changes.applied} of {sites} sites applied ({ready} Ready {ready_after:.1f} s after "
        f"the load ended), {changes.flips} route flips ({changes.flip_conflicts} skipped on a conflict), "
        f"{changes.rolls} rolls of {ROLLING}"
    )
    for problem in changes.problems:
        print(f"problem: {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument(
        "--keepalive",
        action="store_true",
        help="keep each wrk connection open between requests (by default each request opens its own)",
    )
    args = parser.parse_args()
    run(args.seconds, args.sites, args.keepalive)


if __name__ == "__main__":
    main()
