"""The controller: workers draining the queue, triggers feeding it, status and events for each reconcile.

Level-based, after controller-runtime: a key (kind, name) says only which record to look at; each
reconcile reads the record afresh and lets every reconciler of its kind compare it with the world. Triggers
only wake; the jittered resync of every record is the truth. Every reconcile ends in one Result, which
`apply_result` alone turns into queue actions; the record's status is written after, saying when the key
comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from controller.backoff import Backoff
from controller.kinds import Kind
from controller.leader import LeaderLock
from controller.queue import WorkItem, WorkQueue
from controller.results import Result, apply_result
from controller.status import (
    Verdict,
    is_stalled,
    reconciling_status,
    settled,
    status_after,
    truncate,
    worth_writing,
)
from controller.steps import EventRecorder, Pass, StepCall, describe, run_pass
from controller.types import FINALIZER, Request, Trigger
from controller.watch import FingerprintCache, StoreWatch, classify
from controller.writes import RecordWrites
from specs.models import LastReconcile, Model, Resource
from store.events import EventLog
from store.records import BeingDeleted, NotFound, RecordError, StoreError

log = logging.getLogger(__name__)

AnyKind = Kind[Any]


@dataclass(frozen=True)
class ControllerOptions:
    workers: int = 4
    # Deadline of each reconciler call (observe, reconcile, finalize).
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
    # A reconcile of a new generation still running after this long says so in the status (Reconciling).
    progress_after: float = 1.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.step_timeout <= 0:
            raise ValueError(f"step_timeout must be positive, got {self.step_timeout}")
        if self.resync_seconds <= 0:
            raise ValueError(f"resync_seconds must be positive, got {self.resync_seconds}")


@dataclass
class _Done:
    """A reconcile's result, and what to record of it once the queue has said when the key comes back."""

    result: Result
    finish: Callable[[float | None], Awaitable[None]] | None = None


class Controller:
    def __init__(
        self,
        *,
        kinds: Sequence[AnyKind],
        events: EventLog,
        state_dir: Path | None = None,
        triggers: Sequence[Trigger] = (),
        options: ControllerOptions | None = None,
        lock: LeaderLock | None = None,
    ) -> None:
        if lock is None and state_dir is None:
            raise ValueError("give the controller a lock or the state directory to take it in")
        self._kinds: dict[str, AnyKind] = {kind.name: kind for kind in kinds}
        self._options = options if options is not None else ControllerOptions()
        # Once the event log takes writes again (a full disk has room again), what failed meanwhile is
        # retried at once, not after a backoff grown while the disk was full.
        self._recorder = EventRecorder(
            events, on_writable=lambda: self.retry_failing("the event log takes writes again")
        )
        self._triggers = list(triggers)
        self._lock = lock if lock is not None else LeaderLock(state_dir or Path())
        self._fingerprints = {kind.name: FingerprintCache() for kind in kinds}
        self._writes: dict[str, RecordWrites[Any]] = {
            kind.name: RecordWrites(kind.records, FINALIZER, timeout=self._options.step_timeout)
            for kind in kinds
        }
        self._stop = asyncio.Event()
        self._queue: WorkQueue | None = None
        # How many reconciles of each key have finished: what the resync waits on for a `first` kind.
        self._rounds: dict[Request, int] = {}
        self._round_done = asyncio.Condition()

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
            "controller running: %d workers, kinds %s, resync every %.0fs",
            self._options.workers,
            "; ".join(
                f"{kind.name} ({', '.join(r.name for r in kind.reconcilers) or 'no reconcilers'})"
                for kind in self._kinds.values()
            ),
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
            await self._recorder.flush()
            if unfinished:
                log.warning(
                    "%d reconciles were cut short by the shutdown; the next start converges", len(unfinished)
                )
            log.info("controller stopped")

    def _start_triggers(self) -> list[asyncio.Task[None]]:
        runs: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        for kind in self._kinds.values():
            watch = StoreWatch(kind.records, self._fingerprints[kind.name])
            runs.append((watch.name, partial(watch.run, self._wake)))
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

    def retry_failing(self, trigger: str) -> int:
        """Reconcile now every record waiting out a failure's backoff, as if new: for a trigger that knows the
        cause of those failures is gone (the Docker engine answers again). How many were queued."""
        if self._queue is None:
            return 0
        retried = self._queue.retry_now(trigger)
        if retried:
            log.info("%d reconciles waiting out a backoff retried now (%s)", len(retried), trigger)
        return len(retried)

    def _enqueue(self, request: Request, trigger: str) -> None:
        self._wake(request, trigger, False)

    def _wake(self, request: Request, trigger: str, urgent: bool) -> None:
        if self._queue is not None:
            self._queue.add(request, trigger, urgent=urgent)

    async def _resync_forever(self) -> None:
        triggers: list[asyncio.Task[None]] = []
        try:
            await self._resync_once("start")
            # The watches start after the first round, so what others stand on is reconciled first.
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
            for kind in self._kinds.values():
                await self._resync_kind(kind, trigger)
            self._lock.report_resync(len(self._queue) if self._queue is not None else 0)
        except Exception:
            # The resync is the truth every other trigger relies on: one bad round must not end them all.
            log.exception(
                "%s failed; the next one comes in about %.0fs", trigger, self._options.resync_seconds
            )

    async def _resync_kind(self, kind: AnyKind, trigger: str) -> None:
        started = time.monotonic()
        for reconciler in kind.reconcilers:
            try:
                async with asyncio.timeout(self._options.step_timeout):
                    await reconciler.observe()
            except Exception as error:
                log.error("%s could not observe the world: %s", reconciler.name, describe(error))
        try:
            records, broken = await asyncio.to_thread(kind.records.list)
        except (OSError, StoreError) as error:
            log.error("resync could not list the %s records: %s", kind.name, error)
            return
        fingerprints = self._fingerprints[kind.name]
        requests = []
        for record in records:
            previous, current = fingerprints.swap(record)
            wake = classify(previous, current)
            request = Request(kind.name, record.name)
            requests.append(request)
            self._wake(request, trigger, wake is not None and wake.urgent)
        recorded = {record.name for record in records} | {unreadable.name for unreadable in broken}
        owned: set[str] = set()
        for reconciler in kind.reconcilers:
            owned |= reconciler.owned_names()
        orphans = sorted(owned - recorded)
        for name in orphans:
            self._wake(Request(kind.name, name), f"{trigger}: orphan", False)
        for unreadable in broken:
            log.warning(
                "%s %s: record unreadable, left as it is: %s", kind.name, unreadable.name, unreadable.message
            )
        if kind.first:
            await self._until_reconciled(requests)
        log.info(
            "%s: %d %s records, %d orphans, %d unreadable (%.2fs)",
            trigger,
            len(records),
            kind.name,
            len(orphans),
            len(broken),
            time.monotonic() - started,
        )

    async def _until_reconciled(self, requests: Iterable[Request]) -> None:
        """Wait until each of these keys, just queued, has been reconciled once (not for one backing off)."""
        queue = self._queue
        if queue is None:
            return
        targets = {
            request: self._rounds.get(request, 0) + 1 for request in requests if not queue.failures(request)
        }
        with contextlib.suppress(TimeoutError):
            async with self._round_done, asyncio.timeout(self._options.step_timeout + 5):
                await self._round_done.wait_for(
                    lambda: all(self._rounds.get(request, 0) >= n for request, n in targets.items())
                )

    # -- working -----------------------------------------------------------------------------------

    async def _work(self, queue: WorkQueue) -> None:
        while (item := await queue.get()) is not None:
            request = item.request
            try:
                kind = self._kinds.get(request.kind)
                if kind is None:
                    log.error("%s %s: no such kind is registered; dropped", request.kind, request.name)
                    done = _Done(Result())
                else:
                    done = await self._reconcile(kind, item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s %s: the runtime failed around the reconcile", request.kind, request.name)
                done = _Done(Result(error="the runtime failed around the reconcile", reason="runtime error"))
            try:
                delay = apply_result(queue, item, done.result)
                if done.finish is not None:
                    await done.finish(delay)
            finally:
                queue.done(request)
                async with self._round_done:
                    self._rounds[request] = self._rounds.get(request, 0) + 1
                    self._round_done.notify_all()

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

    async def _reconcile(self, kind: AnyKind, item: WorkItem) -> _Done:
        name = item.request.name
        reconcile_id = _new_id()
        # The record as the store shares it (the reconcile only reads it): read on the loop when that is two
        # stat calls, as for every record of a resync; in a thread when it must be parsed.
        found = kind.records.cached(name)
        if found is None:
            found = await asyncio.to_thread(kind.records.current, name)
        if found is None:
            return await self._finalize_orphan(kind, item, reconcile_id)
        if isinstance(found, RecordError):
            # Never act on a record that cannot be read: the watch wakes us when it is mended.
            log.warning("%s %s: record unreadable, not reconciled: %s", kind.name, name, found.message)
            await self._recorder.record(
                name,
                None,
                reconcile_id,
                item.trigger,
                "read",
                "failed",
                0.0,
                f"{found.path}: {found.message}",
                uid=None,
            )
            return _Done(Result())
        record = found
        if record.metadata.deletion_timestamp is not None:
            return await self._finalize_record(kind, item, record, reconcile_id)
        generation = record.metadata.generation
        if not item.urgent and is_stalled(record.status, generation):
            log.debug(
                "%s %s: stalled at generation %s; waiting for a spec change", kind.name, name, generation
            )
            return _Done(Result(permanent=True))
        if FINALIZER not in record.metadata.finalizers:
            try:
                record = await self._writes[kind.name].add_finalizer(name)
            except (NotFound, BeingDeleted):
                return _Done(Result(requeue_after=0.0, reason="record changed while adding the finalizer"))
            self._fingerprints[kind.name].remember(record)
        started = time.monotonic()
        stored = record.status
        calls: list[tuple[str, StepCall]] = [(r.name, partial(r.reconcile, record)) for r in kind.reconcilers]
        if stored is not None and getattr(stored, "observed_generation", None) == generation:
            # A generation already applied has no progress to report: the pass runs as it is, no task
            # and no timer around it (a resync's thousands of converged records).
            done = await self._pass(calls, item, reconcile_id, failure_step="reconcile", stop_on_failure=True)
        else:
            done, stored = await self._pass_reporting_progress(
                kind, item, stored, generation, calls, reconcile_id
            )
        result, verdict = _conclude(kind, done)

        async def finish(delay: float | None) -> None:
            # A routine recheck is no retry and no poll for convergence: the conditions do not mention it.
            routine = verdict.result == "succeeded" and verdict.retry_in is None
            final = verdict if routine else replace(verdict, retry_in=delay)
            seconds = time.monotonic() - started
            uid = record.metadata.uid
            summary = _quiet_summary(final)
            await self._recorder.record_pass(
                name, generation, reconcile_id, item.trigger, done, seconds, uid=uid, summary=summary
            )
            await self._report(kind, record, stored, final, item, reconcile_id, seconds)
            # A pass that found nothing to do is the resync's routine: not worth a line at INFO each.
            quiet = final.result == "succeeded" and final.ready and done.quiet
            log.log(
                logging.DEBUG if quiet else logging.INFO if final.result == "succeeded" else logging.WARNING,
                "%s %s generation %s: %s%s in %.2fs (trigger: %s, id %s)%s",
                kind.name,
                name,
                generation,
                final.result,
                " but not ready" if final.result == "succeeded" and not final.ready else "",
                seconds,
                item.trigger,
                reconcile_id,
                f": {final.message}" if final.message else "",
            )

        return _Done(result, finish)

    async def _pass_reporting_progress(
        self,
        kind: AnyKind,
        item: WorkItem,
        stored: Model | None,
        generation: int | None,
        calls: list[tuple[str, StepCall]],
        reconcile_id: str,
    ) -> tuple[Pass, Model | None]:
        """The pass of a new generation, and the status stored once it is done."""
        passing = asyncio.ensure_future(
            self._pass(calls, item, reconcile_id, failure_step="reconcile", stop_on_failure=True)
        )
        try:
            # A new generation is said to be in progress only if applying it takes a while: most passes end
            # sooner, and a status write of "applying" just before the final one would cost a durable
            # write per record and say nothing anyone could see.
            finished, _ = await asyncio.wait({passing}, timeout=self._options.progress_after)
            if not finished:
                applying = reconciling_status(
                    kind.status_model,
                    stored,
                    generation=generation,
                    message=f"applying generation {generation}",
                    now=_now(),
                )
                stored = await self._write_status(kind, item.request.name, stored, applying)
            return await passing, stored
        except asyncio.CancelledError:
            passing.cancel()
            raise

    async def _report(
        self,
        kind: AnyKind,
        record: Resource,
        stored: Model | None,
        verdict: Verdict,
        item: WorkItem,
        reconcile_id: str,
        seconds: float,
    ) -> None:
        """Write the status this reconcile comes to, unless watchers would learn nothing from it."""
        now = _now()
        described = kind.describe(record)
        heartbeat = self._options.status_heartbeat
        generation = record.metadata.generation
        if not item.urgent and settled(
            stored, verdict, generation=generation, described=described, now=now, heartbeat=heartbeat
        ):
            return
        # Whoever reads the new status finds the events of the reconcile that made it.
        await self._recorder.flush()
        last = LastReconcile(
            time=now,
            result=verdict.result,
            reconcile_id=reconcile_id,
            trigger=item.trigger,
            duration_seconds=round(seconds, 3),
            message=truncate(verdict.message),
        )
        status = status_after(
            kind.status_model,
            stored,
            verdict,
            generation=generation,
            described=described,
            last_reconcile=last,
            now=last.time,
        )
        if worth_writing(stored, status, now=last.time, heartbeat=heartbeat, force=item.urgent):
            await self._write_status(kind, record.name, stored, status)

    # -- deleting ----------------------------------------------------------------------------------

    @staticmethod
    def _finalize_calls(kind: AnyKind, name: str) -> list[tuple[str, StepCall]]:
        # Last first: routes go before the service they point to, the service before its files.
        return [(r.name, partial(r.finalize, name)) for r in reversed(kind.reconcilers)]

    async def _finalize_record(
        self, kind: AnyKind, item: WorkItem, record: Resource, reconcile_id: str
    ) -> _Done:
        name = record.name
        if FINALIZER not in record.metadata.finalizers:
            return _Done(Result())
        generation = record.metadata.generation
        started = time.monotonic()
        deleting = reconciling_status(
            kind.status_model, record.status, generation=generation, message="deleting", now=_now()
        )
        stored = await self._write_status(kind, name, record.status, deleting)
        # What one concern cannot remove must not keep the others: every finalizer runs.
        done = await self._pass(
            self._finalize_calls(kind, name),
            item,
            reconcile_id,
            failure_step="finalize",
            stop_on_failure=False,
        )
        failure = done.failure
        uid = record.metadata.uid

        async def record_events() -> None:
            await self._recorder.record_pass(
                name,
                generation,
                reconcile_id,
                item.trigger,
                done,
                time.monotonic() - started,
                uid=uid,
                summary="nothing left to remove",
            )

        if failure is None:
            # What was removed is in the event log before the record is gone, as it is before a status says.
            await record_events()
            await self._recorder.flush()
            with contextlib.suppress(NotFound):
                await asyncio.to_thread(kind.records.remove_finalizer, name, FINALIZER)

        async def finish(delay: float | None) -> None:
            seconds = time.monotonic() - started
            if failure is not None:
                await record_events()
            if failure is None:
                log.info(
                    "%s %s: deleted in %.2fs (trigger: %s, id %s)",
                    kind.name,
                    name,
                    seconds,
                    item.trigger,
                    reconcile_id,
                )
                return
            verdict = Verdict("failed", ready=False, message=failure.message, retry_in=delay)
            await self._report(kind, record, stored, verdict, item, reconcile_id, seconds)
            log.warning(
                "%s %s: deletion failed in %.2fs, retrying in %.1fs: %s",
                kind.name,
                name,
                seconds,
                delay or 0.0,
                failure.message,
            )

        if failure is not None:
            return _Done(
                Result(error=failure.message, reason=f"deletion: {failure.reconciler} failed"), finish
            )
        return _Done(Result(), finish)

    async def _finalize_orphan(self, kind: AnyKind, item: WorkItem, reconcile_id: str) -> _Done:
        """No record: whatever the reconcilers still hold for this name goes."""
        name = item.request.name
        started = time.monotonic()
        done = await self._pass(
            self._finalize_calls(kind, name),
            item,
            reconcile_id,
            failure_step="finalize",
            stop_on_failure=False,
        )
        failure = done.failure

        async def finish(delay: float | None) -> None:
            seconds = time.monotonic() - started
            await self._recorder.record_pass(
                name, None, reconcile_id, item.trigger, done, seconds, uid=None, summary=None
            )
            if failure is not None:
                log.warning(
                    "%s %s (no record): cleanup failed, retrying in %.1fs: %s",
                    kind.name,
                    name,
                    delay or 0.0,
                    failure.message,
                )
            elif not done.quiet:
                log.info(
                    "%s %s (no record): cleaned up in %.2fs (trigger: %s)",
                    kind.name,
                    name,
                    seconds,
                    item.trigger,
                )

        if failure is not None:
            return _Done(
                Result(error=failure.message, reason=f"cleanup: {failure.reconciler} failed"), finish
            )
        return _Done(Result(), finish)

    # -- status ------------------------------------------------------------------------------------

    async def _write_status(
        self, kind: AnyKind, name: str, previous: Model | None, status: Model
    ) -> Model | None:
        """Write the status unless it is what is stored; returns what is stored afterwards."""
        if previous is not None and previous == status:
            return previous
        try:
            await self._writes[kind.name].write_status(name, status)
        except NotFound:
            log.debug("%s %s: gone before its status could be written", kind.name, name)
            return previous
        except (OSError, StoreError) as error:
            log.error("%s %s: status not written: %s", kind.name, name, error)
            return previous
        return status


def _conclude(kind: AnyKind, done: Pass) -> tuple[Result, Verdict]:
    """What a pass of a kind's reconcilers comes to: for the queue, and for the record's conditions."""
    parts = {
        kind.status_field(name): outcome.status
        for name, outcome in zip(done.named, done.outcomes, strict=True)
        if outcome.status is not None
    }
    failure = done.failure
    if failure is not None and failure.permanent:
        return Result(permanent=True), Verdict("stalled", ready=False, message=failure.message, parts=parts)
    if failure is not None:
        result = Result(error=failure.message, reason=failure.reconciler)
        return result, Verdict("failed", ready=False, message=failure.message, parts=parts)
    ready = all(o.ready for o in done.outcomes)
    # What is said is what is not ready; when all is, what the reconcilers that gave a reason say of it.
    telling = [o for o in done.outcomes if o.reason] if ready else [o for o in done.outcomes if not o.ready]
    message = "; ".join(o.message for o in telling if o.message)
    reasons = [o.reason for o in telling if o.reason]
    waits = [o.requeue_after for o in done.outcomes if o.requeue_after is not None]
    poll = min(waits) if waits else None
    rechecks = [o.recheck_after for o in done.outcomes if o.recheck_after is not None]
    recheck = min(rechecks) if rechecks else None
    come_back = min((t for t in (poll, recheck) if t is not None), default=None)
    reason = (message or "converging") if poll is not None and poll == come_back else "routine recheck"
    return (
        Result(requeue_after=come_back, reason=reason),
        Verdict(
            "succeeded",
            ready=ready,
            message=message,
            retry_in=poll,
            parts=parts,
            reason=reasons[0] if reasons else None,
        ),
    )


def _quiet_summary(verdict: Verdict) -> str:
    if verdict.result != "succeeded":
        return verdict.message
    return "nothing to change" if verdict.ready else f"nothing to change; not ready: {verdict.message}"


# A random prefix per process and a counter: unique across restarts, and free, where a uuid4 per reconcile
# cost a getrandom() call each (about 0.15 ms on these machines).
_ID_PREFIX = secrets.token_hex(3)
_ids = itertools.count(1)


def _new_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):06x}"


def _now() -> datetime:
    return datetime.now(UTC)
