"""How long a route change takes to be validated by `nginx -t` and reloaded, at 1,000 and 10,000 sites.

Runs a real edge (the local base image) on the Swarm under a throwaway instance, routes N sites (each with
a custom domain, 1 in 100 with its own upload limit), then flips one site between served and not served
several times, timing SiteRoutes.reconcile (debounce + render + nginx -t + rename + SIGHUP) and the moment
the edge answers with the new route. Everything it created is removed at the end.

    .venv/bin/python -m bench.routes [--sites 1000 10000] [--changes 7]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import statistics
import time
from datetime import UTC, datetime

import docker

from bench.e2e_helpers import throwaway_instance
from controller.types import ReconcileContext
from reconcilers.docker_calls import make_client
from reconcilers.images import ImageResolver
from reconcilers.local_images import ensure_base_image
from reconcilers.platform import EdgePlatform, wait_for_platform
from reconcilers.routes import SiteRoutes
from reconcilers.swarm_cache import SwarmCache
from specs.config import Settings
from specs.models import ObjectMeta, Site, SiteSpec


def _context(seconds: float = 120.0) -> ReconcileContext:
    return ReconcileContext("bench", "bench", time.monotonic() + seconds)


def _site(index: int, availability: str = "enabled") -> Site:
    resources = {"uploadLimit": "16Mi"} if index % 100 == 0 else {}
    return Site(
        metadata=ObjectMeta(name=f"bench-{index}", generation=1, creation_timestamp=datetime.now(UTC)),
        spec=SiteSpec(
            domains=[f"www.bench-{index}.example.org"], availability=availability, resources=resources
        ),
    )


def _status(settings: Settings, host: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", settings.http_port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": host})
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


async def _measure(settings: Settings, client: docker.DockerClient, sites: int, changes: int) -> None:
    routes = SiteRoutes(settings, client)
    started = time.monotonic()
    await asyncio.gather(*(routes.reconcile(_site(i), _context()) for i in range(sites)))
    print(f"{sites:>6} sites: first burst (all routes, one validation) {time.monotonic() - started:.2f} s")
    reconciles: list[float] = []
    served: list[float] = []
    host = f"bench-1.{settings.sites_domain}"
    for change in range(changes):
        availability, expected = ("not-served", 403) if change % 2 == 0 else ("enabled", 404)
        started = time.monotonic()
        await routes.reconcile(_site(1, availability), _context())
        reconciles.append(time.monotonic() - started)
        while _status(settings, host) != expected and time.monotonic() - started < 10:
            await asyncio.sleep(0.005)
        served.append(time.monotonic() - started)
    routes_conf = settings.edge_dir / "routes.conf"
    print(
        f"{sites:>6} sites: route change validated+reloaded "
        f"median {statistics.median(reconciles) * 1000:.0f} ms "
        f"(min {min(reconciles) * 1000:.0f}, max {max(reconciles) * 1000:.0f}; includes the 50 ms debounce); "
        f"served by the edge after median {statistics.median(served) * 1000:.0f} ms; "
        f"routes.conf {routes_conf.stat().st_size / 1e6:.1f} MB"
    )


async def main(site_counts: list[int], changes: int) -> None:
    client = make_client()
    image = ensure_base_image(client)
    for sites in site_counts:
        with throwaway_instance(client, image) as settings:
            platform = EdgePlatform(
                settings, client, SwarmCache(settings, client), ImageResolver(client, settings)
            )
            await wait_for_platform(platform, _context())
            await _measure(settings, client, sites, changes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--changes", type=int, default=7)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.sites, arguments.changes))
