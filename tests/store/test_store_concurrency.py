from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from store_helpers import increment_counter, make_site, write_big_records_forever

from specs.models import SiteStatus
from specs.store import SiteStore

_FORK = multiprocessing.get_context("fork")


def test_processes_doing_cas_updates_lose_no_update(store: SiteStore):
    store.create(make_site("counter"))
    processes, updates = 4, 50
    with ProcessPoolExecutor(processes, mp_context=_FORK) as pool:
        futures = [
            pool.submit(increment_counter, store.state_dir, "counter", updates) for _ in range(processes)
        ]
        conflicts = sum(f.result(timeout=120) for f in futures)
    site = store.get("counter")
    assert site.spec.env["COUNTER"] == str(processes * updates)
    # Every successful update changed the spec: generation counts them exactly.
    assert site.metadata.generation == 1 + processes * updates
    assert conflicts >= 0


def test_threads_doing_cas_updates_lose_no_update(store: SiteStore):
    store.create(make_site("counter"))
    threads = [
        threading.Thread(target=increment_counter, args=(store.state_dir, "counter", 25)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert store.get("counter").spec.env["COUNTER"] == "100"


def test_writer_killed_at_any_instant_never_leaves_a_torn_record(store: SiteStore):
    store.create(make_site("big"))
    store.update_status("big", SiteStatus(urls=["http://big.example.com/"]))
    rng = random.Random(1234)
    deadline = time.monotonic() + 4.0
    kills = 0
    seen_rounds: set[str] = set()
    while time.monotonic() < deadline:
        child = _FORK.Process(target=write_big_records_forever, args=(store.state_dir, "big"))
        child.start()
        time.sleep(rng.uniform(0.02, 0.12))
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join()
        kills += 1
        # A fresh store (no cache) must read a whole record: the old one or the new one.
        fresh = SiteStore(store.state_dir)
        site = fresh.get("big")
        sites, errors = fresh.list()
        assert errors == [] and [s.name for s in sites] == ["big"]
        assert site.status is not None and site.status.urls
        round_ = site.spec.env.get("ROUND", "0")
        filler = site.spec.env.get("VALUE_0")
        if filler is not None:
            assert filler == f"{int(round_):08d}" * 4000
            assert all(v == filler for k, v in site.spec.env.items() if k.startswith("VALUE_"))
        seen_rounds.add(round_)
        # Temp files of the killed writer are swept by the next store; none is visible as a record.
        assert not [p for p in store.specs_dir.iterdir() if p.name.endswith(".tmp")]
    assert kills >= 10
    # The writer did make progress between kills, so the kills landed mid-stream.
    assert len(seen_rounds) > 1
