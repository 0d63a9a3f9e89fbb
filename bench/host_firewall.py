"""What the host firewall (reconcilers/host_firewall.py) costs the edge: wrk on a static page, with and
without it.

Runs a real edge (the local base image) on the Swarm under a throwaway instance with one static site, then
alternates `wrk` runs against its published port with the DIRECTOR-SITES rules in place and with their
jump taken out of INPUT, and prints the requests per second of each and their ratio. Every reply of the
edge to Docker's proxy enters the host from docker_gwbridge, so it passes the chain's first rule.

The rules are off only during the "without" runs and put back after each; another Director's platform
reconciler on this host may put them back sooner (its resync), which makes the two sides look closer.

    .venv/bin/python -m bench.host_firewall [--rounds 5] [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

from bench.e2e_helpers import throwaway_instance
from controller.types import ReconcileContext
from reconcilers.docker_calls import make_client
from reconcilers.files import SiteFiles
from reconcilers.host_firewall import CHAIN, GATEWAY_BRIDGE, families, remove_host_firewall
from reconcilers.images import ImageResolver
from reconcilers.local_images import ensure_base_image
from reconcilers.platform import EdgePlatform, platform_record, wait_for_platform
from reconcilers.routes import SiteRoutes
from reconcilers.swarm_cache import SwarmCache
from specs.config import Settings
from specs.models import ObjectMeta, Site, SiteSpec

SITE = "firewall-bench"
PAGE = "<h1>a small static page</h1>\n"


def _context(seconds: float = 120.0) -> ReconcileContext:
    return ReconcileContext("bench", "bench", time.monotonic() + seconds)


def _wrk(settings: Settings, seconds: int, connections: int) -> float:
    host = f"{SITE}.{settings.sites_domain}"
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Host: {host}"]
    done = subprocess.run(
        [*command, f"http://127.0.0.1:{settings.http_port}/"], capture_output=True, text=True, check=True
    )
    if "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
        raise SystemExit(f"wrk saw failed requests:\n{done.stdout}")
    found = re.search(r"Requests/sec:\s+([0-9.]+)", done.stdout)
    if found is None:
        raise SystemExit(f"no Requests/sec in wrk's output:\n{done.stdout}")
    return float(found.group(1))


def _rules_in_place() -> bool:
    listed = subprocess.run(
        ["iptables", "-w", "10", "-S", "INPUT"], capture_output=True, text=True, check=True
    )
    return f"-A INPUT -i {GATEWAY_BRIDGE} -j {CHAIN}" in listed.stdout


def _chain_packets() -> dict[str, int]:
    """Packets each rule of the IPv4 chain has seen (its counters), by the rule, in the chain's order. The
    chain is the host's, shared by every Director on it: another one's edge adds its port to it meanwhile."""
    listed = subprocess.run(
        ["iptables", "-w", "10", "-L", CHAIN, "-v", "-n", "-x"], capture_output=True, text=True, check=True
    )
    packets: dict[str, int] = {}
    for line in listed.stdout.splitlines()[2:]:
        if line.strip():
            count, _bytes, *rule = line.split()
            packets[" ".join(rule)] = int(count)
    return packets


async def _measure(args: argparse.Namespace) -> None:
    client = make_client()
    image = ensure_base_image(client)
    with throwaway_instance(client, image, prefix="fwbench") as settings:
        platform = EdgePlatform(
            settings, client, SwarmCache(settings, client), ImageResolver(client, settings)
        )
        await wait_for_platform(platform, _context())
        site = Site(
            metadata=ObjectMeta(name=SITE, generation=1, creation_timestamp=datetime.now(UTC)),
            spec=SiteSpec(),
        )
        files = SiteFiles(settings)
        await files.reconcile(site, _context())
        (settings.sites_dir / SITE / "public" / "index.html").write_text(PAGE)
        await SiteRoutes(settings, client).reconcile(site, _context())
        _wrk(settings, 2, args.connections)  # warm up: workers, connections, caches

        with_rules: list[float] = []
        without_rules: list[float] = []
        requests, packets, first_rule = 0.0, 0, 0
        for round_number in range(args.rounds):
            # In turn first and second (ABBA), so that a machine getting busier favours neither side.
            for rules_on in (True, False) if round_number % 2 == 0 else (False, True):
                if rules_on:
                    # The platform reconciler's own repair puts the rules back, as it does at each resync.
                    await platform.reconcile(platform_record(settings), _context())
                    if not _rules_in_place():
                        raise SystemExit("the platform reconciler did not put the host rules back")
                    before = _chain_packets()
                    with_rules.append(_wrk(settings, args.seconds, args.connections))
                    after = _chain_packets()
                    requests += with_rules[-1] * args.seconds
                    seen = [after[rule] - early for rule, early in before.items() if rule in after]
                    packets, first_rule = packets + sum(seen), first_rule + seen[0]
                else:
                    remove_host_firewall()
                    try:
                        without_rules.append(_wrk(settings, args.seconds, args.connections))
                    finally:
                        await platform.reconcile(platform_record(settings), _context())
        print(f"host families: {', '.join(family.binary for family in families())}")
        print(f"wrk -t2 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, alternating (ABBA)")
        for label, values in (("with the rules", with_rules), ("without the rules", without_rules)):
            median = statistics.median(values)
            print(f"{label + ':':19} {median:9.0f} req/s  (median; {_shown(values)})")
        print(
            f"packets through the chain: {packets / requests:.2f} a request, "
            f"{first_rule / max(packets, 1):.1%} of them matched by its first rule (replies)"
        )
        ratio = statistics.median(with_rules) / statistics.median(without_rules)
        print(f"ratio with/without: {ratio:.3f}")


def _shown(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.host_firewall",
        description="wrk against the edge with and without the host firewall",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 1
    asyncio.run(_measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
