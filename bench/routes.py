"""What a route change costs at the edge (validated, reloaded, served) at 1,000 and 10,000 sites.

Runs a real edge (the local base image) on the Swarm under a throwaway instance and routes N sites at once
(each with a custom domain, 1 in 100 with its own upload limit): the first burst. Then it flips one site
between served and not served several times, timing SiteRoutes.reconcile (debounce, plan, write, nginx -t,
install, reload and the edge's confirmation) and the moment the edge answers the site's new status, and
counting the bytes each change wrote under the edge directory (files that are new, not links to old ones).
Everything it created is removed at the end.

With --before REF, the same measurements are made of the routes reconciler of the git revision REF (this
file run against REF's code, in a copy of it), alternating with this tree's, and printed side by side.

    .venv/bin/python -m bench.routes [--sites 1000 10000] [--changes 7] [--before main] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

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

REPO = Path(__file__).resolve().parents[1]


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


def _inodes(directory: Path) -> dict[int, int]:
    """inode -> size of every file under `directory`."""
    found: dict[int, int] = {}
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                status = os.stat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            found[status.st_ino] = status.st_size
    return found


async def _measure(
    settings: Settings, client: docker.DockerClient, sites: int, changes: int
) -> dict[str, float]:
    routes = SiteRoutes(settings, client)
    started = time.monotonic()
    await asyncio.gather(*(routes.reconcile(_site(i), _context()) for i in range(sites)))
    burst = time.monotonic() - started
    reconciles: list[float] = []
    served: list[float] = []
    written: list[int] = []
    host = f"bench-1.{settings.sites_domain}"
    for change in range(changes):
        availability, expected = ("not-served", 403) if change % 2 == 0 else ("enabled", 404)
        before = _inodes(settings.edge_dir)
        started = time.monotonic()
        await routes.reconcile(_site(1, availability), _context())
        reconciles.append(time.monotonic() - started)
        while _status(settings, host) != expected and time.monotonic() - started < 10:
            await asyncio.sleep(0.005)
        served.append(time.monotonic() - started)
        written.append(sum(size for inode, size in _inodes(settings.edge_dir).items() if inode not in before))
    return {
        "burst_s": burst,
        "change_ms": statistics.median(reconciles) * 1000,
        "served_ms": statistics.median(served) * 1000,
        "written_kb": statistics.median(written) / 1000,
    }


async def measure(site_counts: list[int], changes: int) -> dict[int, dict[str, float]]:
    client = make_client()
    image = ensure_base_image(client)
    figures: dict[int, dict[str, float]] = {}
    for sites in site_counts:
        with throwaway_instance(client, image) as settings:
            platform = EdgePlatform(
                settings, client, SwarmCache(settings, client), ImageResolver(client, settings)
            )
            await wait_for_platform(platform, _context())
            figures[sites] = await _measure(settings, client, sites, changes)
    return figures


def _measure_at(tree: Path, site_counts: list[int], changes: int) -> dict[int, dict[str, float]]:
    """The figures of the code in `tree` (this file run there, in a subprocess)."""
    command = [sys.executable, "-m", "bench.routes", "--json", "--changes", str(changes), "--sites"]
    output = subprocess.run(
        [*command, *map(str, site_counts)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {int(sites): figures for sites, figures in json.loads(output.splitlines()[-1]).items()}


def _copy_of(revision: str, directory: Path) -> Path:
    """The tree of `revision`, with this benchmark in it."""
    archive = subprocess.run(["git", "archive", revision], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    shutil.copyfile(Path(__file__), directory / "bench" / "routes.py")
    return directory


LINES = (
    ("burst_s", "first burst, all routes at once", "s", 2),
    ("change_ms", "one change, validated and reloaded", "ms", 0),
    ("served_ms", "one change, served by the edge", "ms", 0),
    ("written_kb", "written per change", "kB", 1),
)


def _report(figures: dict[str, list[dict[int, dict[str, float]]]], site_counts: list[int]) -> None:
    """Medians over the rounds, one column per tree."""
    names = list(figures)
    heading = "".join(f"{name:>12}" for name in names) + ("   ratio" if len(names) == 2 else "")
    print(f"{'sites':>6}  {'':<36}{heading}")
    for sites in site_counts:
        for key, label, unit, digits in LINES:
            values = [statistics.median(run[sites][key] for run in figures[name]) for name in names]
            cells = "".join(f"{value:>9.{digits}f} {unit:<2}" for value in values)
            ratio = f"   {values[1] / values[0]:.2f}x" if len(values) == 2 and values[0] else ""
            print(f"{sites:>6}  {label:<36}{cells}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--changes", type=int, default=7, help="route changes timed at each size (7)")
    parser.add_argument("--before", metavar="REF", help="also measure git revision REF, side by side")
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each tree, alternating (1)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.json:
        print(json.dumps(asyncio.run(measure(arguments.sites, arguments.changes))))
        return
    figures: dict[str, list[dict[int, dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-routes-") as scratch:
        before = _copy_of(arguments.before, Path(scratch)) if arguments.before else None
        for _ in range(arguments.rounds):
            if before is not None:
                figures.setdefault(arguments.before, []).append(
                    _measure_at(before, arguments.sites, arguments.changes)
                )
            figures.setdefault("this tree", []).append(_measure_at(REPO, arguments.sites, arguments.changes))
    _report(figures, arguments.sites)


if __name__ == "__main__":
    main()
