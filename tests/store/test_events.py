from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from store_helpers import record_events_forever

from store.events import EventLog, NewEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(log: EventLog, site: str = "blog", *, at: datetime = T0, message: str = "ok", **fields):
    values = {
        "generation": 1,
        "reconcile_id": "r1",
        "trigger": "watch",
        "step": "service",
        "result": "updated",
        "duration_seconds": 0.5,
    }
    values.update(fields)
    return log.record(site=site, message=message, time=at, **values)


@pytest.fixture
def log(tmp_path: Path):
    with EventLog(tmp_path / "events.db") as event_log:
        yield event_log


def test_identical_repeats_collapse(log: EventLog):
    first = record(log, message="boom", result="failed")
    again = record(
        log,
        message="boom",
        result="failed",
        at=T0 + timedelta(seconds=30),
        reconcile_id="r2",
        trigger="resync",
    )
    assert again.id == first.id and again.count == 2
    assert again.time == T0 and again.last_time == T0 + timedelta(seconds=30)
    assert (again.reconcile_id, again.trigger) == ("r2", "resync")
    different = record(log, message="other", result="failed", at=T0 + timedelta(seconds=60))
    assert different.id != first.id and different.count == 1
    # Only the site's newest event collapses: the older "boom" is not revived.
    third = record(log, message="boom", result="failed", at=T0 + timedelta(seconds=90))
    assert third.id not in (first.id, different.id)
    assert [e.count for e in log.query("blog")] == [1, 1, 2]


def test_append_records_as_record_many_does(tmp_path: Path):
    def batch(step: str, at: datetime) -> list[NewEvent]:
        return [
            NewEvent(
                site=site,
                generation=1,
                reconcile_id="r1",
                trigger="resync",
                step=step,
                result="unchanged",
                duration_seconds=0.01,
                message="nothing to change",
                time=at,
                uid="u1",
            )
            for site in ("alpha", "beta")
        ]

    with EventLog(tmp_path / "a.db") as appended, EventLog(tmp_path / "b.db") as returned:
        for at, step in ((T0, "reconcile"), (T0 + timedelta(seconds=30), "reconcile"), (T0, "files")):
            appended.append(batch(step, at))
            returned.record_many(batch(step, at))
        assert appended.query() == returned.query()
        assert [(e.site, e.step, e.count) for e in appended.query("alpha")] == [
            ("alpha", "reconcile", 2),
            ("alpha", "files", 1),
        ]


def test_query_is_per_site_newest_first_with_paging(log: EventLog):
    for i in range(25):
        record(log, "blog", at=T0 + timedelta(seconds=i), message=f"m{i}")
        record(log, "shop", at=T0 + timedelta(seconds=i), message=f"s{i}")
    pages: list[list[str]] = []
    before = None
    while True:
        page = log.query("blog", limit=10, before_id=before)
        if not page:
            break
        pages.append([e.message for e in page])
        before = page[-1].id
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [message for page in pages for message in page] == [f"m{i}" for i in reversed(range(25))]
    everything = log.query(limit=100)
    assert len(everything) == 50 and {e.site for e in everything} == {"blog", "shop"}
    assert all(a.last_time >= b.last_time for a, b in itertools.pairwise(everything))


def test_retention_by_site_total_and_age(tmp_path: Path):
    log = EventLog(tmp_path / "events.db", max_events=30, max_per_site=10, max_age=timedelta(days=1))
    for i in range(15):
        record(log, "blog", at=T0 + timedelta(minutes=i), message=f"m{i}")
    assert len(log.query("blog", limit=100)) == 10
    for site in ("a1", "a2", "a3"):
        for i in range(10):
            record(log, site, at=T0 + timedelta(hours=1, minutes=i), message=f"m{i}")
    log.prune(now=T0 + timedelta(hours=2))
    assert len(log.query(limit=1000)) == 30
    assert log.query("blog") == []  # the oldest go first
    removed = log.prune(now=T0 + timedelta(days=2))
    assert removed == 30 and log.query(limit=1000) == []
    log.close()


def test_an_event_older_than_the_retained_ones_is_returned_though_dropped(tmp_path: Path):
    with EventLog(tmp_path / "events.db", max_per_site=2) as log:
        for minute in (1, 2):
            record(log, at=T0 + timedelta(minutes=minute), message=f"m{minute}")
        late = record(log, at=T0, message="recorded late")
        assert (late.message, late.time) == ("recorded late", T0)
        assert [event.message for event in log.query("blog")] == ["m2", "m1"]


def test_bad_input_is_refused(log: EventLog):
    with pytest.raises(ValueError, match="result must be one of"):
        record(log, result="exploded")
    with pytest.raises(ValueError, match="timezone-aware"):
        record(log, at=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        EventLog(Path("/tmp/unused.db"), max_per_site=0)


def test_several_processes_share_the_log(tmp_path: Path):
    path = tmp_path / "events.db"
    EventLog(path).close()
    ctx = multiprocessing.get_context("fork")
    wrote = [ctx.Event() for _ in range(2)]
    children = [
        ctx.Process(target=record_events_forever, args=(path, event, 50), daemon=True) for event in wrote
    ]
    for child in children:
        child.start()
    # Both write at once until each has recorded 50 events, however slow this machine is.
    for event in wrote:
        assert event.wait(timeout=120), "a writer did not record 50 events in 120 s"
    for child in children:
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join()
    with EventLog(path) as reader:
        assert reader.query(limit=5)


def test_log_survives_its_writer_being_killed(tmp_path: Path):
    path = tmp_path / "events.db"
    rng = random.Random(7)
    ctx = multiprocessing.get_context("fork")
    for _ in range(8):
        first_write = ctx.Event()
        child = ctx.Process(target=record_events_forever, args=(path, first_write), daemon=True)
        child.start()
        # The kill must land while the writer writes: after its first record, then anywhere.
        assert first_write.wait(timeout=120), "the writer recorded nothing in 120 s"
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join()
        with EventLog(path, max_per_site=50, max_events=400) as log:
            events = log.query(limit=1000)
            assert events and all(e.site.startswith("site-") or e.site == "after-crash" for e in events)
            assert len(log.query("site-1", limit=1000)) <= 50
            record(log, "after-crash")
        check = sqlite3.connect(path)
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        check.close()


def test_events_of_a_site_created_again_under_its_name_are_its_own(log: EventLog):
    record(log, uid="first-uid", message="made the first")
    record(log, uid="first-uid", message="made the first")
    # The same step and message for the new site is not a repeat of the old site's event.
    record(log, uid="second-uid", message="made the first")
    assert [(e.uid, e.count) for e in log.query("blog")] == [("second-uid", 1), ("first-uid", 2)]
    assert [e.count for e in log.query("blog", uid="first-uid")] == [2]
    assert [e.uid for e in log.query("blog", uid="second-uid")] == ["second-uid"]
    assert log.query("blog", uid="third-uid") == []


def test_a_log_from_before_uids_is_migrated_and_keeps_its_rows(tmp_path: Path):
    path = tmp_path / "events.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT, time_us INTEGER NOT NULL, last_time_us INTEGER NOT NULL,
            count INTEGER NOT NULL DEFAULT 1, site TEXT NOT NULL, generation INTEGER,
            reconcile_id TEXT NOT NULL, trigger TEXT NOT NULL, step TEXT NOT NULL, result TEXT NOT NULL,
            duration_seconds REAL NOT NULL, message TEXT NOT NULL
        );
        CREATE INDEX events_by_site ON events (site, last_time_us DESC, id DESC);
        INSERT INTO events (time_us, last_time_us, site, generation, reconcile_id, trigger, step, result,
                            duration_seconds, message)
        VALUES (1767225600000000, 1767225600000000, 'blog', 1, 'r0', 'watch', 'service', 'created', 0.1,
                'from an older Director');
        """
    )
    old.close()
    # The first to open it migrates it; the next finds the column there.
    with EventLog(path) as first, EventLog(path) as second:
        record(second, uid="new-uid", at=T0 + timedelta(minutes=1), message="after the upgrade")
        assert [(e.message, e.uid) for e in first.query("blog")] == [
            ("after the upgrade", "new-uid"),
            ("from an older Director", None),
        ]
        assert [e.message for e in first.query("blog", uid="new-uid")] == ["after the upgrade"]
    with EventLog(path) as reopened:
        assert len(reopened.query("blog")) == 2
