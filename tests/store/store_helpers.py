"""Helpers for the store tests, importable by child processes (hence not in conftest)."""

from __future__ import annotations

import ctypes
import os
from multiprocessing.synchronize import Event
from pathlib import Path

from specs.models import ObjectMeta, Site, SiteSpec
from store.events import EventLog
from store.records import Conflict, SiteStore


def make_site(name: str, **spec: object) -> Site:
    return Site(metadata=ObjectMeta(name=name), spec=SiteSpec.model_validate(spec))


def increment_counter(state_dir: Path, name: str, times: int) -> int:
    """get + update with CAS, retrying on Conflict; returns how many conflicts it saw."""
    store = SiteStore(state_dir)
    conflicts = 0
    for _ in range(times):
        while True:
            site = store.get(name)
            site.spec.env["COUNTER"] = str(int(site.spec.env.get("COUNTER", "0")) + 1)
            try:
                store.update(site)
                break
            except Conflict:
                conflicts += 1
    return conflicts


def write_big_records_forever(
    state_dir: Path, name: str, completed_round: ctypes.c_long, first_write: Event
) -> None:
    """Rewrites one large record (about 1 MB) and its status as fast as it can, until killed.

    Each round continues from the stored ROUND, so rounds grow across writers. After each round
    (spec and status written) `completed_round` holds it, and `first_write` is set after the first:
    the killer waits for that instead of guessing how fast this machine writes.
    """
    store = SiteStore(state_dir)
    first_round = int(store.get(name).spec.env.get("ROUND", "0")) + 1
    round_ = first_round - 1
    while True:
        round_ += 1
        filler = f"{round_:08d}" * 4000
        site = store.get(name)
        site.spec.env = {f"VALUE_{i}": filler for i in range(32)}
        site.spec.env["ROUND"] = str(round_)
        store.update(site)
        status = site.status or store.get(name).status
        if status is not None:
            status.urls = [f"http://{name}.example.com/{round_}"]
            store.update_status(name, status)
        # A raw value (no lock) and one set() only: a writer killed while holding a lock shared with
        # the test would leave the test blocked forever.
        completed_round.value = round_
        if round_ == first_round:
            first_write.set()


def record_events_forever(path: Path, wrote: Event | None = None, records_before_signal: int = 1) -> None:
    """Records events into the log as fast as it can, until killed; sets `wrote` once it has recorded
    `records_before_signal` events."""
    log = EventLog(path, max_per_site=50, max_events=400)
    index = 0
    while True:
        index += 1
        log.record(
            site=f"site-{index % 7}",
            generation=index % 3,
            reconcile_id=f"r{index}",
            trigger="resync",
            step="service",
            result="failed" if index % 5 else "updated",
            duration_seconds=0.01,
            message=f"attempt {index % 11} " + "x" * 2000,
        )
        if wrote is not None and index == records_before_signal:
            wrote.set()
        if index % 1000 == 0:
            os.sched_yield()
