"""The edge's throughput on a small static page, side by side with a plain Nginx published the same way.

Runs, under a throwaway instance on the Swarm: the edge (the local base image, Director's configuration)
serving one static site, and a plain Nginx (the same image, Debian's stock configuration and page) as a
Swarm service publishing its port the same way (host mode). `wrk` is run against each through its
published port on 127.0.0.1 (through docker-proxy while the daemon's userland proxy is on), the same port on
this machine's own address (forwarded by the kernel, as a visitor's connection from another machine is, and
as 127.0.0.1 would be with `"userland-proxy": false`), and the container's own address on docker_gwbridge
(no port mapping); the six targets take turns, round after round, so that a busy moment of the machine
falls on all of them alike. It prints each target's median requests per second and latency, and the edge's
ratio to the plain Nginx. Everything it created is removed at the end.

    .venv/bin/python -m bench.edge_throughput [--rounds 3] [--seconds 8] [--threads 2] [--connections 32]

It also says whether docker-proxy carries the published ports.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import ipaddress
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import docker

from bench.e2e_helpers import throwaway_instance, wait_until
from controller.types import ReconcileContext
from reconcilers.docker_calls import LABEL_INSTANCE, make_client
from reconcilers.files import SiteFiles
from reconcilers.images import ImageResolver
from reconcilers.local_images import ensure_base_image
from reconcilers.platform import EdgePlatform, wait_for_platform
from reconcilers.routes import SiteRoutes
from reconcilers.swarm_cache import SwarmCache
from specs.config import Settings
from specs.models import ObjectMeta, Site, SiteSpec

SITE = "page"
PLAIN_PAGE = "/var/www/html/index.nginx-debian.html"
_RATE = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_LATENCY = re.compile(r"^\s+Latency\s+([0-9.]+)(us|ms|s)\s", re.MULTILINE)
_ERRORS = re.compile(r"Non-2xx or 3xx responses: ([0-9]+)|Socket errors: (.*)$", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Target:
    name: str
    address: str
    port: int
    host: str


@dataclass(frozen=True)
class Run:
    rate: float
    latency_ms: float
    errors: str


def _context(seconds: float = 120.0) -> ReconcileContext:
    return ReconcileContext("bench", "bench", time.monotonic() + seconds)


def wrk(target: Target, seconds: int, threads: int, connections: int) -> Run:
    output = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "-H",
            f"Host: {target.host}",
            f"http://{target.address}:{target.port}/",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rate, latency = _RATE.search(output), _LATENCY.search(output)
    if rate is None or latency is None:
        raise RuntimeError(f"wrk said something unexpected:\n{output}")
    errors = "; ".join(m.group(0) for m in _ERRORS.finditer(output))
    return Run(float(rate.group(1)), float(latency.group(1)) * _UNITS[latency.group(2)], errors)


def _get(address: str, port: int, host: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(address, port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _answers(address: str, port: int, host: str, body: bytes) -> bool:
    try:
        return _get(address, port, host) == (200, body)
    except OSError:
        return False


def _gwbridge_address(client: docker.DockerClient, service: str) -> str:
    """The address on docker_gwbridge of the one running container of `service` (where host-mode ports are
    forwarded to), read in the container's network namespace: Docker lists it under no network."""
    container = client.containers.list(filters={"label": f"com.docker.swarm.service.name={service}"})[0]
    bridge = client.api.inspect_network("docker_gwbridge")
    subnet = ipaddress.ip_network(str(bridge["IPAM"]["Config"][0]["Subnet"]))
    pid = str(container.attrs["State"]["Pid"])
    found = subprocess.run(
        ["nsenter", "-t", pid, "-n", "ip", "-4", "-o", "addr"], check=True, capture_output=True, text=True
    ).stdout
    address: str
    for address in re.findall(r"inet ([0-9.]+)/", found):
        if ipaddress.ip_address(address) in subnet:
            return address
    raise RuntimeError(f"the container of {service} has no address on docker_gwbridge ({subnet})")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        port: int = probe.getsockname()[1]
        return port


def _host_address() -> str:
    """An address of this machine on a network interface of its own (not Docker's): a connection to a
    published port there is forwarded by the kernel (iptables DNAT), as a visitor's from another machine is,
    while one to 127.0.0.1 goes through docker-proxy when the daemon's userland proxy is on."""
    found = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], check=True, capture_output=True, text=True
    ).stdout
    for line in found.splitlines():
        interface, address = line.split()[1], line.split()[3].split("/")[0]
        if not interface.startswith(("docker", "br-", "veth")):
            return address
    raise RuntimeError("this machine has no address of its own besides Docker's bridges")


def _plain_service(client: docker.DockerClient, settings: Settings, image: str, port: int) -> str:
    name = f"{settings.instance}-plain-nginx"
    labels = {LABEL_INSTANCE: settings.instance}
    client.api.create_service(
        {
            "ContainerSpec": {
                "Image": image,
                "Command": ["nginx", "-g", "daemon off;"],
                "Labels": labels,
            },
            "RestartPolicy": {"Condition": "none"},
            # The edge's network: the same path from the published port to the container.
            "Networks": [{"Target": settings.network}],
        },
        name=name,
        labels=labels,
        mode={"Global": {}},
        endpoint_spec={
            "Mode": "dnsrr",
            "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": port, "PublishMode": "host"}],
        },
    )
    return name


async def _edge_with_a_page(client: docker.DockerClient, settings: Settings, page: bytes) -> None:
    platform = EdgePlatform(settings, client, SwarmCache(settings, client), ImageResolver(client, settings))
    await wait_for_platform(platform, _context())
    site = Site(
        metadata=ObjectMeta(name=SITE, generation=1, creation_timestamp=datetime.now(UTC)),
        spec=SiteSpec(),
    )
    files = SiteFiles(settings)
    provided = await files.reconcile(site, _context())
    index = settings.sites_dir / SITE / "public" / "index.html"
    index.write_bytes(page)
    uid = files.uid_of(SITE)
    assert uid is not None
    os.chown(index, uid, 33)
    index.chmod(0o640)
    ctx = ReconcileContext("bench", "bench", time.monotonic() + 120, given={"files": dict(provided.provides)})
    await SiteRoutes(settings, client).reconcile(site, ctx)


def _userland_proxy(port: int) -> bool:
    """Whether a docker-proxy process carries `port` (the daemon's userland proxy is on)."""
    found = subprocess.run(["pgrep", "-af", "docker-proxy"], capture_output=True, text=True).stdout
    return any(f"-host-port {port} " in f"{line} " for line in found.splitlines())


def measure(rounds: int, seconds: int, threads: int, connections: int) -> dict[str, list[Run]]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (scripts/setup.sh installs it)")
    client = make_client()
    image = ensure_base_image(client)
    with throwaway_instance(client, image) as settings:
        # Debian's page, as the plain Nginx in the same image serves it.
        page = Path(PLAIN_PAGE).read_bytes()
        asyncio.run(_edge_with_a_page(client, settings, page))
        plain_port = _free_port()
        plain = _plain_service(client, settings, image, plain_port)
        wait_until(
            lambda: _answers("127.0.0.1", plain_port, "localhost", page),
            120,
            "the plain Nginx answers",
            poll=0.2,
        )
        edge_host = f"{SITE}.{settings.sites_domain}"
        wait_until(
            lambda: _answers("127.0.0.1", settings.http_port, edge_host, page),
            60,
            "the edge serves the page",
            poll=0.2,
        )
        edge_address = _gwbridge_address(client, settings.edge_service)
        host_address = _host_address()
        targets = [
            Target("plain, published port", "127.0.0.1", plain_port, "localhost"),
            Target("edge, published port", "127.0.0.1", settings.http_port, edge_host),
            Target("plain, host address", host_address, plain_port, "localhost"),
            Target("edge, host address", host_address, settings.http_port, edge_host),
            Target("plain, container address", _gwbridge_address(client, plain), 80, "localhost"),
            Target("edge, container address", edge_address, 80, edge_host),
        ]
        for target in targets:
            if not _answers(target.address, target.port, target.host, page):
                raise RuntimeError(f"{target.name} ({target.address}:{target.port}) does not serve the page")
        print(
            f"page: {len(page)} bytes; docker-proxy carries the published ports: "
            f"{_userland_proxy(settings.http_port)}; wrk -t{threads} -c{connections} -d{seconds}s, "
            f"{rounds} rounds, {os.cpu_count()} CPUs",
            flush=True,
        )
        runs: dict[str, list[Run]] = {target.name: [] for target in targets}
        for _ in range(rounds):
            for target in targets:
                runs[target.name].append(wrk(target, seconds, threads, connections))
        return runs


def report(runs: dict[str, list[Run]]) -> dict[str, float]:
    medians = {name: statistics.median(run.rate for run in found) for name, found in runs.items()}
    for name, found in runs.items():
        latency = statistics.median(run.latency_ms for run in found)
        rates = ", ".join(f"{run.rate:,.0f}" for run in found)
        errors = "; ".join(sorted({run.errors for run in found if run.errors}))
        print(
            f"{name:28} {medians[name]:>9,.0f} req/s  latency {latency:5.2f} ms  (runs: {rates})"
            + (f"  errors: {errors}" if errors else "")
        )
    for path in ("published port", "host address", "container address"):
        ratio = medians[f"edge, {path}"] / medians[f"plain, {path}"]
        print(f"edge / plain Nginx, {path}: {ratio:.2f}")
    for path in ("published port", "host address"):
        cost = 1 - medians[f"plain, {path}"] / medians["plain, container address"]
        print(f"the {path} costs the plain Nginx {cost:.0%} of its rate to its own address")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="also print the medians as one JSON line")
    args = parser.parse_args()
    medians = report(measure(args.rounds, args.seconds, args.threads, args.connections))
    if args.json:
        print(json.dumps(medians))


if __name__ == "__main__":
    main()
