"""Throughput of the Site record store at 10,000 records, list time cold and warm, and watch latency.

Run: .venv/bin/python -m bench.store [--sites 10000] [--changes 100]
Targets: list of 10,000 records under 0.5 s (warm); a change seen by watch() within 100 ms (median).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from specs.models import HealthCheck, ObjectMeta, Site, SiteSpec, SiteStatus
from store.events import EventLog
from store.records import SiteStore


def sample_site(index: int) -> Site:
    return Site(
        metadata=ObjectMeta(name=f"site-{index:05d}", labels={"team": f"t{index % 50}"}),
        spec=SiteSpec(
            type="dynamic",
            purpose="user",
            owners=[f"user{index}"],
            domains=[f"site{index}.example.com"],
            image="director/site:latest",
            command=["python3", "-m", "http.server"],
            env={"APP_ENV": "production", "INDEX": str(index)},
            health_check=HealthCheck(path="/healthz"),
        ),
    )


def timed(label: str, count: int, action) -> None:
    start = time.perf_counter()
    for index in range(count):
        action(index)
    elapsed = time.perf_counter() - start
    print(f"{label:<40} {count / elapsed:>9.0f} /s   ({elapsed:.2f} s for {count})")


def list_time(label: str, store: SiteStore, expected: int, *, quiet: bool = False) -> float:
    start = time.perf_counter()
    listed, errors = store.list()
    elapsed = time.perf_counter() - start
    assert len(listed) == expected and not errors
    if not quiet:
        print(f"{label:<40} {elapsed:>9.3f} s  for {len(listed)} records")
    return elapsed


async def watch_latency(store: SiteStore, changes: int) -> list[float]:
    events = store.watch(initial=False, resync_seconds=60)
    latencies: list[float] = []
    try:
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.2)
        for index in range(changes):
            site = store.get(f"site-{index:05d}")
            site.spec.replicas = 2
            start = time.perf_counter()
            store.update(site)
            event = await asyncio.wait_for(pending, timeout=10)
            latencies.append(time.perf_counter() - start)
            assert event.name == site.name and event.type == "MODIFIED", event
            pending = asyncio.ensure_future(anext(events))
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await pending
    finally:
        await events.aclose()
    return latencies


def event_log_figures(path: Path, count: int) -> None:
    with EventLog(path) as log:
        start = time.perf_counter()
        for index in range(count):
            log.record(
                site=f"site-{index % 500:05d}",
                generation=index,
                reconcile_id=f"r{index}",
                trigger="resync",
                step="service",
                result="updated",
                duration_seconds=0.01,
                message="service updated",
            )
        elapsed = time.perf_counter() - start
        print(f"{'event log record':<40} {count / elapsed:>9.0f} /s   (WAL, synchronous=NORMAL)")
        start = time.perf_counter()
        pages = 0
        before = None
        while page := log.query("site-00007", limit=5, before_id=before):
            before, pages = page[-1].id, pages + 1
        print(
            f"{'event log per-site paging':<40} {(time.perf_counter() - start) / pages * 1000:>9.2f} ms/page"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="director-bench-store-") as directory:
        state = Path(directory)
        store = SiteStore(state)
        sites = [sample_site(i) for i in range(args.sites)]
        print(f"{args.sites} site records in {state} (every write: temp file, fsync, rename, fsync dir)")
        timed("create", args.sites, lambda i: store.create(sites[i]))

        def change(i: int) -> None:
            site = store.get(sites[i].name)
            site.spec.env["INDEX"] = f"changed-{i}"
            store.update(site)

        timed("get + update (spec change)", args.sites, change)
        timed(
            "update_status",
            args.sites,
            lambda i: store.update_status(sites[i].name, SiteStatus(observed_generation=2)),
        )
        cold = SiteStore(state)
        timed("get (new process cache)", args.sites, lambda i: cold.get(sites[i].name))
        index = state / ".cache" / "records.json"
        index.unlink(missing_ok=True)
        list_time("list, new process, YAML (+index write)", SiteStore(state), args.sites)
        list_time("list, new process, index", SiteStore(state), args.sites)
        cold.list()
        warm_times = [list_time("list warm", cold, args.sites, quiet=True) for _ in range(7)]
        print(
            f"{'list warm (7 runs)':<40} {statistics.median(warm_times):>9.3f} s  median, "
            f"min {min(warm_times):.3f} s, max {max(warm_times):.3f} s (max includes Python GC pauses)"
        )
        latencies = asyncio.run(watch_latency(store, min(args.changes, args.sites)))
        ms = sorted(latency * 1000 for latency in latencies)
        print(
            f"watch latency, {len(ms)} changes (write start to event): "
            f"median {statistics.median(ms):.1f} ms, p90 {ms[int(len(ms) * 0.9) - 1]:.1f} ms, "
            f"max {ms[-1]:.1f} ms"
        )
        event_log_figures(state / "events.db", args.sites)


if __name__ == "__main__":
    main()
