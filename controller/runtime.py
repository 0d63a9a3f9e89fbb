"""The controller: workers draining the queue, triggers feeding it, status and events for each reconcile.

Level-based, after controller-runtime: a key says only which site to look at; each reconcile reads the
record afresh and lets every reconciler compare it with the world. Triggers only wake; the jittered
resync of every site is the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from controller.backoff import Backoff
from controller.leader import LeaderLock
from controller.queue import WorkItem, WorkQueue
from controller.status import Verdict, reconciling_status, status_after, truncate, worth_writing
from controller.steps import EventRecorder, Pass, StepCall, describe, run_pass
from controller.types import FINALIZER, PLATFORM, PlatformReconciler, Reconciler, Request, Trigger
from controller.watch import FingerprintCache, StoreWatch, classify
from specs.config import Settings
from specs.models import KIND_SITE, LastReconcile, Site, SiteStatus
from store.events import EventLog
from store.records import BeingDeleted, InvalidRecord, NotFound, SiteStore, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControllerOptions:
    workers: int = 4
    # Deadline of each reconciler call (observe, reconcile, finalize, the platform).
    step_timeout: float = 60.0
    resync_seconds: float = 30.0
    resync_jitter: float = 0.1
    # How long in-flight reconciles may run on after SIGTERM before they are cancelled.
    shutdown_grace: float = 20.0
    # A status whose only news is a newer lastReconcile is rewritten at most this often.
    status_heartbeat: timedelta = timedelta(minutes=10)
    backoff: Backoff = field(default_factory=Backoff)
    # A trigger whose run() fails is restarted after this long.
    trigger_restart_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.step_timeout <= 0:
            raise ValueError(f"step_timeout must be positive, got {self.step_timeout}")
        if self.resync_seconds <= 0:
            raise ValueError(f"resync_seconds must be positive, got {self.resync_seconds}")


class Controller:
    def __init__(
        self,
        *,
        store: SiteStore,
        events: EventLog,
        settings: Settings,
        reconcilers: Sequence[Reconciler],
        platform: PlatformReconciler | None = None,
        triggers: Sequence[Trigger] = (),
        options: ControllerOptions | None = None,
        lock: LeaderLock | None = None,
    ) -> None:
        self._store = store
        self._recorder = EventRecorder(events)
        self._settings = settings
        self._reconcilers = list(reconcilers)
        self._platform = platform
        self._triggers = list(triggers)
        self._options = options if options is not None else ControllerOptions()
        self._lock = lock if lock is not None else LeaderLock(settings.state_dir)
        self._fingerprints = FingerprintCache()
        # Sites that raised PermanentError, by the generation that did: not retried until it changes.
        self._stalled: dict[str, int | None] = {}
        self._stop = asyncio.Event()
        self._queue: WorkQueue | None = None
        self._platform_rounds = 0
        self._platform_round_done = asyncio.Condition()

    # -- lifecycle ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the controller to stop (from a signal handler in the loop's thread)."""
        self._stop.set()

    async def run(self) -> None:
        """Wait for the leader lock, then reconcile until stop(); in-flight reconciles finish first."""
        if not await self._lock.acquire(self._stop):
            log.info("stopped before the controller lock was free")
            return
        try:
            await self._serve()
        finally:
            self._lock.release()

    async def _serve(self) -> None:
        queue = WorkQueue(self._options.backoff)
        self._queue = queue
        workers = [
            asyncio.create_task(self._work(queue), name=f"worker-{i}") for i in range(self._options.workers)
        ]
        background = [asyncio.create_task(self._resync_forever(), name="resync")]
        log.info(
            "controller running: %d workers, reconcilers %s, resync every %.0fs",
            self._options.workers,
            ", ".join(r.name for r in self._reconcilers) or "(none)",
            self._options.resync_seconds,
        )
        try:
            await self._stop.wait()
        finally:
            log.info(
                "stopping: no new reconciles; waiting up to %.0fs for those in flight",
                self._options.shutdown_grace,
            )
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            queue.shut_down()
            _, unfinished = await asyncio.wait(workers, timeout=self._options.shutdown_grace)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if unfinished:
                log.warning(
                    "%d reconciles were cut short by the shutdown; the next start converges", len(unfinished)
                )
            log.info("controller stopped")

    def _start_triggers(self) -> list[asyncio.Task[None]]:
        watch = StoreWatch(self._store, self._fingerprints)
        runs: list[tuple[str, Callable[[], Awaitable[None]]]] = [(watch.name, partial(watch.run, self._wake))]
        runs += [(trigger.name, partial(trigger.run, self._enqueue)) for trigger in self._triggers]
        return [asyncio.create_task(self._supervise(name, run), name=name) for name, run in runs]

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await run()
                log.warning("trigger %s ended; restarting it", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "trigger %s failed; restarting it in %.0fs", name, self._options.trigger_restart_seconds
                )
            await asyncio.sleep(self._options.trigger_restart_seconds)

    # -- waking ------------------------------------------------------------------------------------

    def _enqueue(self, request: Request, trigger: str) -> None:
        self._wake(request, trigger, False)

    def _wake(self, request: Request, trigger: str, urgent: bool) -> None:
        if self._queue is None:
            return
        if urgent:
            self._stalled.pop(request.name, None)
        self._queue.add(request, trigger, urgent=urgent)

    async def _resync_forever(self) -> None:
        triggers: list[asyncio.Task[None]] = []
        try:
            await self._resync_once("start")
            # The watch starts after the first round so the platform is reconciled before any site.
            triggers = self._start_triggers()
            while True:
                jitter = self._options.resync_jitter
                await asyncio.sleep(self._options.resync_seconds * random.uniform(1 - jitter, 1 + jitter))
                await self._resync_once("resync")
        finally:
            for task in triggers:
                task.cancel()
            await asyncio.gather(*triggers, return_exceptions=True)

    async def _resync_once(self, trigger: str) -> None:
        try:
            await self._resync(trigger)
        except Exception:
            # The resync is the truth every other trigger relies on: one bad round must not end them all.
            log.exception(
                "%s failed; the next one comes in about %.0fs", trigger, self._options.resync_seconds
            )

    async def _resync(self, trigger: str) -> None:
        started = time.monotonic()
        # The platform first: the reconcilers observe what stands on it (its network, its edge config).
        await self._platform_round(trigger)
        for reconciler in self._reconcilers:
            try:
                async with asyncio.timeout(self._options.step_timeout):
                    await reconciler.observe()
            except Exception as error:
                log.error("%s could not observe the world: %s", reconciler.name, describe(error))
        try:
            sites, broken = await asyncio.to_thread(self._store.list)
        except (OSError, StoreError) as error:
            log.error("resync could not list the sites: %s", error)
            return
        for site in sites:
            previous, current = self._fingerprints.swap(site)
            wake = classify(previous, current)
            self._wake(Request(KIND_SITE, site.name), trigger, wake is not None and wake.urgent)
        recorded = {site.name for site in sites} | {unreadable.name for unreadable in broken}
        owned: set[str] = set()
        for reconciler in self._reconcilers:
            owned |= reconciler.owned_names()
        orphans = sorted(owned - recorded)
        for name in orphans:
            self._wake(Request(KIND_SITE, name), f"{trigger}: orphan", False)
        for unreadable in broken:
            log.warning("site %s: record unreadable, left as it is: %s", unreadable.name, unreadable.message)
        log.info(
            "%s: %d sites, %d orphans, %d unreadable records (%.2fs)",
            trigger,
            len(sites),
            len(orphans),
            len(broken),
            time.monotonic() - started,
        )

    async def _platform_round(self, trigger: str) -> None:
        """Queue the platform and, unless it is backing off after failures, wait until it has run."""
        if self._platform is None or self._queue is None:
            return
        if self._queue.failures(PLATFORM):
            self._queue.add(PLATFORM, trigger)
            return
        async with self._platform_round_done:
            target = self._platform_rounds + 1
            self._queue.add(PLATFORM, trigger)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._options.step_timeout + 5):
                    await self._platform_round_done.wait_for(lambda: self._platform_rounds >= target)

    # -- working -----------------------------------------------------------------------------------

    async def _work(self, queue: WorkQueue) -> None:
        while (item := await queue.get()) is not None:
            try:
                if item.request == PLATFORM:
                    await self._reconcile_platform(queue, item)
                else:
                    await self._reconcile_site(queue, item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "%s %s: the runtime failed around the reconcile", item.request.kind, item.request.name
                )
                queue.add_rate_limited(item.request, "retry after a runtime error")
            finally:
                queue.done(item.request)

    async def _pass(
        self,
        calls: list[tuple[str, StepCall]],
        item: WorkItem,
        reconcile_id: str,
        *,
        failure_step: str,
        stop_on_failure: bool,
    ) -> Pass:
        return await run_pass(
            calls,
            reconcile_id=reconcile_id,
            trigger=item.trigger,
            timeout=self._options.step_timeout,
            failure_step=failure_step,
            stop_on_failure=stop_on_failure,
        )

    async def _reconcile_platform(self, queue: WorkQueue, item: WorkItem) -> None:
        assert self._platform is not None
        platform = self._platform
        reconcile_id = _new_id()
        started = time.monotonic()
        done = await self._pass(
            [(platform.name, platform.reconcile_platform)],
            item,
            reconcile_id,
            failure_step=platform.name,
            stop_on_failure=True,
        )
        seconds = time.monotonic() - started
        await self._recorder.record_pass(
            PLATFORM.name,
            None,
            reconcile_id,
            item.trigger,
            done,
            seconds,
            uid=None,
            summary="nothing to change",
        )
        if done.failure is None:
            queue.forget(item.request)
            outcome = done.outcomes[0]
            if outcome.requeue_after is not None:
                queue.add_after(
                    item.request, outcome.requeue_after, f"poll: {outcome.message or 'converging'}"
                )
            state = "ready" if outcome.ready else f"not ready: {outcome.message}"
            log.info("platform: %s in %.2fs (trigger: %s, id %s)", state, seconds, item.trigger, reconcile_id)
        elif done.failure.permanent:
            queue.forget(item.request)
            log.error("platform: stalled until the next resync: %s", done.failure.message)
        else:
            delay = queue.add_rate_limited(item.request, "retry after failure")
            log.error(
                "platform: failed in %.2fs, retrying in %.1fs: %s", seconds, delay, done.failure.message
            )
        async with self._platform_round_done:
            self._platform_rounds += 1
            self._platform_round_done.notify_all()

    async def _reconcile_site(self, queue: WorkQueue, item: WorkItem) -> None:
        name = item.request.name
        reconcile_id = _new_id()
        try:
            site = await asyncio.to_thread(self._store.get, name)
        except NotFound:
            await self._finalize_orphan(queue, item, reconcile_id)
            return
        except InvalidRecord as error:
            # Never act on a record that cannot be read: the watch wakes us when it is mended.
            log.warning("site %s: record unreadable, not reconciled: %s", name, error.message)
            await self._recorder.record(
                name, None, reconcile_id, item.trigger, "read", "failed", 0.0, str(error), uid=None
            )
            return
        if site.metadata.deletion_timestamp is not None:
            await self._finalize_site(queue, item, site, reconcile_id)
            return
        generation = site.metadata.generation
        if name in self._stalled:
            if self._stalled[name] == generation:
                log.debug("site %s: stalled at generation %s; waiting for a spec change", name, generation)
                return
            del self._stalled[name]
        if FINALIZER not in site.metadata.finalizers:
            try:
                site = await asyncio.to_thread(self._store.add_finalizer, name, FINALIZER)
            except (NotFound, BeingDeleted):
                queue.add(item.request, "record changed while adding the finalizer", urgent=True)
                return
            self._fingerprints.remember(site)
        started = time.monotonic()
        stored = site.status
        if stored is None or stored.observed_generation != generation:
            applying = reconciling_status(
                stored, generation=generation, message=f"applying generation {generation}", now=_now()
            )
            stored = await self._write_status(name, stored, applying)
        done = await self._pass(
            [(r.name, partial(r.reconcile, site)) for r in self._reconcilers],
            item,
            reconcile_id,
            failure_step="reconcile",
            stop_on_failure=True,
        )
        seconds = time.monotonic() - started
        verdict = self._conclude(queue, item, done, generation)
        await self._recorder.record_pass(
            name,
            generation,
            reconcile_id,
            item.trigger,
            done,
            seconds,
            uid=site.metadata.uid,
            summary=_quiet_summary(verdict),
        )
        await self._report(site, stored, verdict, item, reconcile_id, seconds)
        log.log(
            logging.INFO if verdict.result == "succeeded" else logging.WARNING,
            "site %s generation %s: %s%s in %.2fs (trigger: %s, id %s)%s",
            name,
            generation,
            verdict.result,
            " but not ready" if verdict.result == "succeeded" and not verdict.ready else "",
            seconds,
            item.trigger,
            reconcile_id,
            f": {verdict.message}" if verdict.message else "",
        )

    def _conclude(self, queue: WorkQueue, item: WorkItem, done: Pass, generation: int | None) -> Verdict:
        """Decide when the key comes back, and what this reconcile means for the site's conditions."""
        service = next((o.service for o in reversed(done.outcomes) if o.service is not None), None)
        failure = done.failure
        if failure is not None and failure.permanent:
            queue.forget(item.request)
            self._stalled[item.request.name] = generation
            return Verdict("stalled", ready=False, message=failure.message, service=service)
        if failure is not None:
            delay = queue.add_rate_limited(item.request, f"retry after failure ({failure.reconciler})")
            return Verdict("failed", ready=False, message=failure.message, retry_in=delay, service=service)
        queue.forget(item.request)
        ready = all(o.ready for o in done.outcomes)
        message = "; ".join(o.message for o in done.outcomes if o.message and not o.ready)
        waits = [o.requeue_after for o in done.outcomes if o.requeue_after is not None]
        poll = min(waits) if waits else None
        if poll is not None:
            queue.add_after(item.request, poll, f"poll: {message or 'converging'}")
        return Verdict("succeeded", ready=ready, message=message, retry_in=poll, service=service)

    async def _report(
        self,
        site: Site,
        stored: SiteStatus | None,
        verdict: Verdict,
        item: WorkItem,
        reconcile_id: str,
        seconds: float,
    ) -> None:
        """Write the status this reconcile comes to, unless watchers would learn nothing from it."""
        last = LastReconcile(
            time=_now(),
            result=verdict.result,
            reconcile_id=reconcile_id,
            trigger=item.trigger,
            duration_seconds=round(seconds, 3),
            message=truncate(verdict.message),
        )
        status = status_after(
            stored,
            verdict,
            generation=site.metadata.generation,
            urls=self._settings.site_urls(site.name, list(site.spec.domains)),
            last_reconcile=last,
            now=last.time,
        )
        heartbeat = self._options.status_heartbeat
        if worth_writing(stored, status, now=last.time, heartbeat=heartbeat, force=item.urgent):
            await self._write_status(site.name, stored, status)

    # -- deleting ----------------------------------------------------------------------------------

    def _finalize_calls(self, name: str) -> list[tuple[str, StepCall]]:
        # Last first: routes go before the service they point to, the service before its files.
        return [(r.name, partial(r.finalize, name)) for r in reversed(self._reconcilers)]

    async def _finalize_site(self, queue: WorkQueue, item: WorkItem, site: Site, reconcile_id: str) -> None:
        name = site.name
        if FINALIZER not in site.metadata.finalizers:
            return
        generation = site.metadata.generation
        started = time.monotonic()
        deleting = reconciling_status(
            site.status, generation=generation, message="deleting the site", now=_now()
        )
        stored = await self._write_status(name, site.status, deleting)
        # What one concern cannot remove must not keep the others: every finalizer runs.
        done = await self._pass(
            self._finalize_calls(name), item, reconcile_id, failure_step="finalize", stop_on_failure=False
        )
        seconds = time.monotonic() - started
        await self._recorder.record_pass(
            name,
            generation,
            reconcile_id,
            item.trigger,
            done,
            seconds,
            uid=site.metadata.uid,
            summary="nothing left to remove",
        )
        if done.failure is not None:
            delay = queue.add_rate_limited(item.request, f"retry deletion ({done.failure.reconciler} failed)")
            verdict = Verdict("failed", ready=False, message=done.failure.message, retry_in=delay)
            await self._report(site, stored, verdict, item, reconcile_id, seconds)
            log.warning(
                "site %s: deletion failed in %.2fs, retrying in %.1fs: %s",
                name,
                seconds,
                delay,
                done.failure.message,
            )
            return
        with contextlib.suppress(NotFound):
            await asyncio.to_thread(self._store.remove_finalizer, name, FINALIZER)
        queue.forget(item.request)
        self._stalled.pop(name, None)
        log.info("site %s: deleted in %.2fs (trigger: %s, id %s)", name, seconds, item.trigger, reconcile_id)

    async def _finalize_orphan(self, queue: WorkQueue, item: WorkItem, reconcile_id: str) -> None:
        """No record: whatever the reconcilers still hold for this name goes."""
        name = item.request.name
        self._stalled.pop(name, None)
        started = time.monotonic()
        done = await self._pass(
            self._finalize_calls(name), item, reconcile_id, failure_step="finalize", stop_on_failure=False
        )
        seconds = time.monotonic() - started
        # No record, so no uid: these events are an administrator's to read, never a later site's.
        await self._recorder.record_pass(
            name, None, reconcile_id, item.trigger, done, seconds, uid=None, summary=None
        )
        if done.failure is not None:
            delay = queue.add_rate_limited(item.request, f"retry cleanup ({done.failure.reconciler} failed)")
            log.warning(
                "site %s (no record): cleanup failed, retrying in %.1fs: %s",
                name,
                delay,
                done.failure.message,
            )
            return
        queue.forget(item.request)
        if not done.quiet:
            log.info("site %s (no record): cleaned up in %.2fs (trigger: %s)", name, seconds, item.trigger)

    # -- status ------------------------------------------------------------------------------------

    async def _write_status(
        self, name: str, previous: SiteStatus | None, status: SiteStatus
    ) -> SiteStatus | None:
        """Write the status unless it is what is stored; returns what is stored afterwards."""
        if previous is not None and previous == status:
            return previous
        try:
            await asyncio.to_thread(self._store.update_status, name, status)
        except NotFound:
            log.debug("site %s: gone before its status could be written", name)
            return previous
        except (OSError, StoreError) as error:
            log.error("site %s: status not written: %s", name, error)
            return previous
        return status


def _quiet_summary(verdict: Verdict) -> str:
    if verdict.result != "succeeded":
        return verdict.message
    return "nothing to change" if verdict.ready else f"nothing to change; not ready: {verdict.message}"


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


def _now() -> datetime:
    return datetime.now(UTC)
