"""The whole controller loop over a real SiteStore and EventLog in a tmp dir, with recording reconcilers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from controller_fakes import (
    Journal,
    RecordingPlatform,
    RecordingReconciler,
    converged,
    failing,
    hanging_first,
    permanent,
    site_and_platform,
    starting,
)
from swarm_helpers import record_gone

from controller.backoff import Backoff
from controller.runtime import Controller, ControllerOptions
from controller.types import FINALIZER
from specs.config import Settings
from specs.models import RECONCILE_REQUEST_ANNOTATION, ObjectMeta, Site, SiteSpec
from store.events import EventLog
from store.records import NotFound, SiteStore


@dataclass
class World:
    settings: Settings
    store: SiteStore
    events: EventLog
    journal: Journal
    files: RecordingReconciler
    service: RecordingReconciler
    routes: RecordingReconciler
    platform: RecordingPlatform

    def controller(self, **options: object) -> Controller:
        values: dict[str, object] = {
            "workers": 3,
            "step_timeout": 1.0,
            "resync_seconds": 3600.0,
            "shutdown_grace": 2.0,
            "backoff": Backoff(base=0.05, cap=1.0, jitter=0.0),
        } | options
        return Controller(
            kinds=site_and_platform(
                self.settings, self.store, [self.files, self.service, self.routes], self.platform
            ),
            events=self.events,
            state_dir=self.settings.state_dir,
            options=ControllerOptions(**values),  # type: ignore[arg-type]
        )

    def create(self, name: str, **spec: object) -> Site:
        return self.store.create(Site(metadata=ObjectMeta(name=name), spec=SiteSpec.model_validate(spec)))

    def condition(self, name: str, type_: str) -> tuple[str, str] | None:
        status = self.store.get(name).status
        found = status.condition(type_) if status is not None else None  # type: ignore[arg-type]
        return (found.status, found.reason) if found is not None else None


@pytest.fixture
def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = Settings(state_dir=tmp_path / "state", sites_domain="sites.test", http_port=8080)
    journal = Journal()
    events = EventLog(settings.events_db)
    yield World(
        settings=settings,
        store=SiteStore(settings.state_dir),
        events=events,
        journal=journal,
        files=RecordingReconciler("files", journal),
        service=RecordingReconciler("service", journal),
        routes=RecordingReconciler("routes", journal),
        platform=RecordingPlatform(journal),
    )
    events.close()


@contextlib.asynccontextmanager
async def running(controller: Controller) -> AsyncIterator[Controller]:
    task = asyncio.create_task(controller.run())
    try:
        yield controller
    finally:
        controller.stop()
        async with asyncio.timeout(10):
            await task


async def eventually(check: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except NotFound:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_new_site_is_reconciled_in_order_and_reported_ready_with_events(world: World):
    async with running(world.controller()):
        world.create("alpha", domains=["alpha.example.org"])
        await eventually(lambda: world.condition("alpha", "Ready") == ("True", "Ready"), what="Ready")
    site = world.store.get("alpha")
    status = site.status
    assert status is not None
    assert FINALIZER in site.metadata.finalizers
    assert status.observed_generation == 1
    assert status.urls == ["http://alpha.sites.test:8080/", "http://alpha.example.org:8080/"]
    assert status.last_reconcile is not None and status.last_reconcile.result == "succeeded"
    assert world.condition("alpha", "Reconciling") == ("False", "Reconciled")
    assert world.condition("alpha", "Stalled") == ("False", "AsExpected")
    # The platform goes first, then each site's concerns in order.
    calls = world.journal.calls
    assert calls.index(("platform", "platform", "")) < calls.index(("files", "reconcile", "alpha"))
    assert world.journal.of("reconcile", "alpha")[:3] == ["files", "service", "routes"]
    events = world.events.query("alpha")
    created = [e for e in events if e.result == "created"]
    assert sorted(e.step for e in created) == ["files.apply", "routes.apply", "service.apply"]
    first = created[0]
    assert (
        first.generation == 1 and first.trigger and first.reconcile_id == status.last_reconcile.reconcile_id
    )
    assert all(e.duration_seconds >= 0 for e in events)
    assert {e.uid for e in events} == {site.metadata.uid}
    assert [e.step for e in world.events.query("edge")] == ["platform.network"]


async def test_a_failing_reconciler_is_retried_with_growing_backoff_and_reported(world: World):
    world.service.behaviours["bravo"] = failing(times=3, message="docker said no")
    attempt_times: list[float] = []
    original = world.service.reconcile

    async def timed(site, ctx):
        attempt_times.append(time.monotonic())
        return await original(site, ctx)

    world.service.reconcile = timed  # type: ignore[method-assign]
    async with running(world.controller(backoff=Backoff(base=0.1, cap=1.0, jitter=0.0))):
        world.create("bravo")
        await eventually(
            lambda: world.condition("bravo", "Ready") == ("False", "ReconcileFailed"), what="failure"
        )
        ready = world.store.get("bravo").status.condition("Ready")  # type: ignore[union-attr]
        assert "docker said no" in ready.message and "retrying in" in ready.message  # type: ignore[union-attr]
        await eventually(lambda: world.condition("bravo", "Ready") == ("True", "Ready"), what="recovery")
    assert len(attempt_times) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempt_times)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39
    # A failed step stops the chain: routes never ran against a service that failed.
    assert world.journal.count("routes", "reconcile", "bravo") == 1
    failed = [e for e in world.events.query("bravo") if e.result == "failed"]
    # Identical failures collapse into one event counted three times.
    assert len(failed) == 1 and failed[0].count == 3
    assert failed[0].step == "service.reconcile" and "docker said no" in failed[0].message


class FullDiskLog(EventLog):
    """The event log as a full disk makes it: every write refused in SQLite's words until `full` is False."""

    full = True

    # Every way in (record_many, append) writes through _record_many.
    def _record_many(self, events, *, read_back):  # type: ignore[no-untyped-def]
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        return super()._record_many(events, read_back=read_back)


async def test_events_refused_by_a_full_disk_are_held_back_and_space_returning_retries_what_failed(
    world: World,
):
    world.events = FullDiskLog(world.settings.state_dir / "full-disk-events.db")
    world.service.behaviours["delta"] = failing(times=1, message="no space left on device")
    # A backoff far longer than the test: only the log's return can bring the site back this soon.
    async with running(world.controller(backoff=Backoff(base=60.0, cap=60.0, jitter=0.0))):
        world.create("delta")
        await eventually(lambda: world.service.attempts.get("delta") == 1, what="the failure")
        assert world.events.query("delta") == []
        world.events.full = False  # type: ignore[attr-defined]
        await eventually(
            lambda: world.condition("delta", "Ready") == ("True", "Ready"), timeout=15, what="the retry"
        )
    recorded = world.events.query("delta", limit=100)
    assert any(e.result == "failed" and "no space left" in e.message for e in recorded), recorded
    assert world.service.attempts["delta"] == 2


async def test_a_hanging_reconciler_hits_its_deadline_fails_and_is_retried(world: World):
    world.routes.behaviours["charlie"] = hanging_first(seconds=30)
    started = time.monotonic()
    async with running(world.controller(step_timeout=0.3)):
        world.create("charlie")
        await eventually(
            lambda: world.condition("charlie", "Ready") == ("True", "Ready"), what="Ready after retry"
        )
    assert time.monotonic() - started < 5
    failed = [e for e in world.events.query("charlie") if e.result == "failed"]
    assert [e.message for e in failed] == ["routes: did not finish within 0.3s"]
    assert world.journal.count("routes", "reconcile", "charlie") == 2


async def test_a_permanent_error_stalls_until_the_spec_changes(world: World):
    world.service.behaviours["delta"] = permanent("image registry.invalid/x does not exist")
    async with running(world.controller(resync_seconds=0.2)) as _:
        world.create("delta")
        await eventually(
            lambda: world.condition("delta", "Stalled") == ("True", "PermanentError"), what="Stalled"
        )
        assert world.condition("delta", "Ready") == ("False", "Stalled")
        # Several resyncs pass; a stalled site is not retried.
        observed = world.files.observed
        await eventually(lambda: world.files.observed >= observed + 3, what="three resyncs")
        assert world.journal.count("service", "reconcile", "delta") == 1
        world.service.behaviours["delta"] = converged
        site = world.store.get("delta")
        site.spec.replicas = 2
        world.store.update(site)
        await eventually(
            lambda: world.condition("delta", "Ready") == ("True", "Ready"), what="Ready after fix"
        )
        assert world.condition("delta", "Stalled") == ("False", "AsExpected")
    assert world.store.get("delta").status.observed_generation == 2  # type: ignore[union-attr]


async def test_a_manual_request_reconciles_now_bypassing_backoff_and_stall(world: World):
    world.service.behaviours["echo"] = permanent("quota exceeded")
    async with running(world.controller(backoff=Backoff(base=60, cap=300, jitter=0.0))):
        world.create("echo")
        await eventually(
            lambda: world.condition("echo", "Stalled") == ("True", "PermanentError"), what="Stalled"
        )
        world.service.behaviours["echo"] = failing(times=1)
        world.service.attempts["echo"] = 0
        site = world.store.get("echo")
        site.metadata.annotations[RECONCILE_REQUEST_ANNOTATION] = datetime.now(UTC).isoformat()
        world.store.update(site)
        await eventually(
            lambda: world.condition("echo", "Ready") == ("False", "ReconcileFailed"), what="retry"
        )
        # Now in a 60 s backoff: a second request still runs at once.
        asked = time.monotonic()
        site = world.store.get("echo")
        site.metadata.annotations[RECONCILE_REQUEST_ANNOTATION] = "again"
        world.store.update(site)
        await eventually(lambda: world.condition("echo", "Ready") == ("True", "Ready"), what="Ready")
        assert time.monotonic() - asked < 3
    assert world.store.get("echo").status.last_reconcile.trigger.startswith("manual request")  # type: ignore[union-attr]


async def test_requeue_after_polls_until_running_and_reports_the_tasks(world: World):
    world.service.behaviours["foxtrot"] = starting(polls=2, requeue_after=0.1)
    polling: list[tuple[object, object]] = []
    async with running(world.controller()):
        world.create("foxtrot")

        def starting_tasks() -> bool:
            # One read: the status may move on between two.
            status = world.store.get("foxtrot").status
            if status is None or status.condition("Ready") is None:
                return False
            ready, reconciling = status.condition("Ready"), status.condition("Reconciling")
            polling.append(((ready.status, ready.reason), (reconciling.status, reconciling.reason)))  # type: ignore[union-attr]
            return polling[-1][0] == ("False", "Progressing")

        await eventually(starting_tasks, what="a status while tasks start")
        assert polling[-1][1] == ("True", "Progressing")
        await eventually(lambda: world.condition("foxtrot", "Ready") == ("True", "Ready"), what="Ready")
    status = world.store.get("foxtrot").status
    assert status is not None and status.service is not None
    assert (status.service.running_tasks, status.service.desired_tasks) == (1, 1)
    assert world.condition("foxtrot", "Reconciling") == ("False", "Reconciled")
    assert world.service.attempts["foxtrot"] == 3


async def test_delete_finalizes_in_reverse_order_then_the_record_goes(world: World):
    async with running(world.controller()):
        uid = world.create("golf").metadata.uid
        await eventually(lambda: world.condition("golf", "Ready") == ("True", "Ready"), what="Ready")
        world.store.delete("golf")

        await eventually(lambda: record_gone(world.store, "golf"), what="record removed")
    assert world.journal.of("finalize", "golf")[:3] == ["routes", "service", "files"]
    deleted = [e for e in world.events.query("golf") if e.result == "deleted"]
    assert sorted(e.step for e in deleted) == ["files.remove", "routes.remove", "service.remove"]
    # Finalizing is still that site's history: its events carry its uid.
    assert {e.uid for e in deleted} == {uid}
    assert not any("golf" in r.owned_names() for r in (world.files, world.service, world.routes))


async def test_a_site_created_again_under_its_name_starts_a_history_of_its_own(world: World):
    async with running(world.controller()):
        first = world.create("juliet").metadata.uid
        await eventually(lambda: world.condition("juliet", "Ready") == ("True", "Ready"), what="Ready")
        world.store.delete("juliet")
        await eventually(lambda: record_gone(world.store, "juliet"), what="record removed")
        second = world.create("juliet").metadata.uid
        await eventually(lambda: world.condition("juliet", "Ready") == ("True", "Ready"), what="Ready again")
    assert first and second and first != second
    earlier, later = world.events.query("juliet", uid=first), world.events.query("juliet", uid=second)
    assert {e.result for e in earlier} >= {"created", "deleted"}
    # (The fake reconcilers count attempts by name, so the second site's pass reports "unchanged".)
    assert later and "deleted" not in {e.result for e in later}
    assert len(world.events.query("juliet", limit=1000)) == len(earlier) + len(later)


async def test_a_failing_finalizer_keeps_the_record_and_retries(world: World):
    world.service.finalize_failures["hotel"] = 2
    async with running(world.controller()):
        world.create("hotel")
        await eventually(lambda: world.condition("hotel", "Ready") == ("True", "Ready"), what="Ready")
        world.store.delete("hotel")
        await eventually(
            lambda: world.condition("hotel", "Ready") == ("False", "ReconcileFailed"), what="failure"
        )
        assert world.store.get("hotel").metadata.deletion_timestamp is not None

        await eventually(lambda: record_gone(world.store, "hotel"), what="record removed after retries")
    # Two failures, the success, and perhaps one more look once the record is gone.
    assert world.journal.count("service", "finalize", "hotel") in (3, 4)


async def test_resync_finalizes_orphans_and_leaves_unreadable_records_alone(world: World):
    # Left behind by a crash: things exist for a site with no record.
    world.service.owned.add("india")
    world.routes.owned.add("india")
    world.create("juliet")
    world.files.owned.add("juliet")
    broken = world.settings.state_dir / "specs" / "sites" / "juliet.yaml"
    broken.write_text(
        "apiVersion: director.io/v1\nkind: Site\nmetadata: {name: juliet}\nspec: {replicas: -3}\n"
    )
    async with running(world.controller()):
        await eventually(lambda: "india" not in world.service.owned_names(), what="orphan finalized")
        await eventually(lambda: "india" not in world.routes.owned_names(), what="orphan finalized")
    assert world.journal.of("finalize", "india") == ["routes", "service", "files"]
    assert world.journal.of("finalize", "juliet") == []
    assert world.journal.of("reconcile", "juliet") == []
    assert "juliet" in world.files.owned_names()


async def test_a_steady_site_is_not_rewritten_and_its_events_collapse(world: World):
    async with running(world.controller(resync_seconds=0.1, resync_jitter=0.0)):
        world.create("kilo")
        await eventually(lambda: world.condition("kilo", "Ready") == ("True", "Ready"), what="Ready")
        version = world.store.get("kilo").metadata.resource_version
        await eventually(lambda: world.service.attempts["kilo"] >= 6, what="several resyncs")
        assert world.store.get("kilo").metadata.resource_version == version
    quiet = [e for e in world.events.query("kilo") if e.step == "reconcile"]
    assert len(quiet) == 1
    assert quiet[0].result == "unchanged" and quiet[0].count >= 4
    assert world.files.observed >= 5


async def test_a_second_controller_in_the_same_process_waits_for_the_lock(world: World):
    first = world.controller()
    second = world.controller()
    async with running(first):
        world.create("lima")
        await eventually(lambda: world.condition("lima", "Ready") == ("True", "Ready"), what="Ready")
        task = asyncio.create_task(second.run())
        await asyncio.sleep(0.5)
        assert not task.done()
        report = (world.settings.state_dir / "controller.yaml").read_text()
        assert report.count("pid:") == 2
        second.stop()
        async with asyncio.timeout(3):
            await task


async def test_a_slow_new_generation_says_it_is_being_applied_while_a_quick_one_is_written_once(world: World):
    world.service.behaviours["slowpoke"] = hanging_first(1.5)
    async with running(world.controller(step_timeout=5.0, progress_after=0.2)):
        world.create("quick")
        await eventually(lambda: world.condition("quick", "Ready") == ("True", "Ready"), what="quick Ready")
        quick = world.store.get("quick")
        # The record, its finalizer and one status: no status write saying it was being applied.
        assert int(quick.metadata.resource_version or 0) - int(quick.metadata.uid is not None) >= 0
        world.create("slowpoke")
        await eventually(
            lambda: world.condition("slowpoke", "Reconciling") == ("True", "Progressing"),
            what="slowpoke said to be applying its generation",
        )
        status = world.store.get("slowpoke").status
        assert status is not None and status.condition("Reconciling").message == "applying generation 1"  # type: ignore[union-attr]
        await eventually(lambda: world.condition("slowpoke", "Ready") == ("True", "Ready"), what="Ready")
