"""Calling reconcilers under a deadline, and recording what they did as reconcile events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from controller.types import Outcome, PermanentError, ReconcileContext, Step
from store.events import EventLog, EventResult, NewEvent

log = logging.getLogger(__name__)

# Step results that change nothing. A pass made only of these is recorded as one summary event, which the
# event log folds into a counter (it collapses a repeat of a site's newest event only), instead of one row
# per step at every resync; a failed pass leaves them out so identical failures collapse too.
QUIET_RESULTS: frozenset[EventResult] = frozenset({"unchanged", "skipped"})

# Events the log refused (a full disk) are held back and written again this often, at most this many.
RETRY_SECONDS = 2.0
MAX_PENDING_EVENTS = 50_000

StepCall = Callable[[ReconcileContext], Awaitable[Outcome]]


@dataclass(frozen=True)
class Failure:
    reconciler: str
    message: str
    permanent: bool


@dataclass(frozen=True)
class TimedStep:
    reconciler: str
    step: Step
    seconds: float

    @property
    def event_step(self) -> str:
        """The step as the event log names it: prefixed with its reconciler unless it already is."""
        name = self.step.step
        if name == self.reconciler or name.startswith(f"{self.reconciler}."):
            return name
        return f"{self.reconciler}.{name}"


@dataclass
class Pass:
    """What a row of reconciler calls said, in order."""

    outcomes: list[Outcome] = field(default_factory=list)
    # The reconciler of each outcome.
    named: list[str] = field(default_factory=list)
    steps: list[TimedStep] = field(default_factory=list)
    # The first failure; later calls ran only if the pass goes on after failures (finalizing).
    failure: Failure | None = None

    @property
    def quiet(self) -> bool:
        return self.failure is None and all(t.step.result in QUIET_RESULTS for t in self.steps)


async def call_with_deadline(
    name: str,
    call: StepCall,
    *,
    reconcile_id: str,
    trigger: str,
    timeout: float,
    given: Mapping[str, Mapping[str, object]] | None = None,
) -> Outcome | Failure:
    """One reconciler call under its deadline; every way it can fail comes back as a Failure."""
    ctx = ReconcileContext(
        reconcile_id=reconcile_id, trigger=trigger, deadline=time.monotonic() + timeout, given=given or {}
    )
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await call(ctx)
    except PermanentError as error:
        return Failure(name, f"{name}: {error}", permanent=True)
    except TimeoutError as error:
        if deadline.expired():
            return Failure(name, f"{name}: did not finish within {timeout:g}s", permanent=False)
        return Failure(name, f"{name}: {describe(error)}", permanent=False)
    except Exception as error:
        return Failure(name, f"{name}: {describe(error)}", permanent=False)


async def run_pass(
    calls: Sequence[tuple[str, StepCall]],
    *,
    reconcile_id: str,
    trigger: str,
    timeout: float,
    failure_step: str,
    stop_on_failure: bool,
) -> Pass:
    result = Pass()
    # What each reconciler provided, for those after it (a reconciler runs only after what it needs).
    given: dict[str, Mapping[str, object]] = {}
    for name, call in calls:
        started = time.monotonic()
        outcome = await call_with_deadline(
            name, call, reconcile_id=reconcile_id, trigger=trigger, timeout=timeout, given=dict(given)
        )
        seconds = time.monotonic() - started
        if isinstance(outcome, Failure):
            result.failure = result.failure or outcome
            result.steps.append(TimedStep(name, Step(failure_step, "failed", outcome.message), seconds))
            if stop_on_failure:
                break
            continue
        given[name] = outcome.provides
        result.outcomes.append(outcome)
        result.named.append(name)
        result.steps.extend(TimedStep(name, step, seconds) for step in outcome.steps)
    return result


class EventRecorder:
    """Writes what the reconcilers did to the event log, in batches of one transaction each, off the loop: a
    resync of thousands of converged records would otherwise cost a thread hop and a commit per record."""

    def __init__(
        self,
        events: EventLog,
        *,
        batch_seconds: float = 0.05,
        retry_seconds: float = RETRY_SECONDS,
        on_writable: Callable[[], object] | None = None,
    ) -> None:
        self._events = events
        self._batch_seconds = batch_seconds
        self._retry_seconds = retry_seconds
        # Told when the log takes writes again after refusing them: the state directory has room again, so
        # what failed for want of it may be retried now.
        self._on_writable = on_writable
        self._retry: asyncio.Task[None] | None = None
        # Writes are failing: said once in the log when it starts and once when it ends, not per batch.
        self._retrying = False
        self._pending: list[NewEvent] = []
        self._flushing: asyncio.Task[None] | None = None
        # The gathering batch's task is writing (no longer only waiting): it must be let finish.
        self._writing = False

    async def record_pass(
        self,
        name: str,
        generation: int | None,
        reconcile_id: str,
        trigger: str,
        done: Pass,
        seconds: float,
        *,
        uid: str | None,
        summary: str | None,
    ) -> None:
        """Every step of a pass that changed something (without its quiet steps if it failed), written at
        once; one summary event, if given, for a quiet pass, written with the next batch."""
        if done.quiet:
            if summary is not None:
                await self.record(
                    name,
                    generation,
                    reconcile_id,
                    trigger,
                    "reconcile",
                    "unchanged",
                    seconds,
                    summary,
                    uid=uid,
                )
            return
        for timed in done.steps:
            if done.failure is not None and timed.step.result in QUIET_RESULTS:
                continue
            await self.record(
                name,
                generation,
                reconcile_id,
                trigger,
                timed.event_step,
                timed.step.result,
                timed.seconds,
                timed.step.message,
                uid=uid,
            )
        # What changed the world is in the log by the time anyone can see the change.
        await self.flush()

    async def record(
        self,
        name: str,
        generation: int | None,
        reconcile_id: str,
        trigger: str,
        step: str,
        result: EventResult,
        seconds: float,
        message: str,
        *,
        uid: str | None,
    ) -> None:
        """One event of the record `name`; `uid` is its metadata.uid, so that its history is not that of an
        earlier record of the same name (None when there is no record to take it from). Written within
        moments, with the others of its batch."""
        self._pending.append(
            NewEvent(
                site=name,
                generation=generation,
                reconcile_id=reconcile_id,
                trigger=trigger,
                step=step,
                result=result,
                duration_seconds=round(seconds, 4),
                message=message,
                uid=uid,
            )
        )
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self._batch_seconds)
        self._writing = True
        try:
            await self._write_pending()
        finally:
            self._writing = False

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._events.append, batch)
            except Exception as error:
                # The event log is a record of the work, not a part of it: a failed write must not stop the
                # work. What failed (a full disk, the log locked) is kept, oldest first, and written again
                # later, so the log still tells what happened; only a backlog past MAX_PENDING_EVENTS is lost.
                self._pending = batch + self._pending
                dropped = len(self._pending) - MAX_PENDING_EVENTS
                if dropped > 0:
                    del self._pending[:dropped]
                    log.error("%d reconcile events dropped: the event log refused writes too long", dropped)
                if not self._retrying:
                    log.error(
                        "%d reconcile events not recorded yet (%s); retrying every %.0fs",
                        len(self._pending),
                        error,
                        self._retry_seconds,
                    )
                self._retrying = True
                if self._retry is None or self._retry.done():
                    self._retry = asyncio.create_task(self._retry_later())
                return
            if self._retrying:
                self._retrying = False
                log.info("the event log takes writes again: %d held-back events recorded", len(batch))
                if self._on_writable is not None:
                    self._on_writable()

    async def _retry_later(self) -> None:
        await asyncio.sleep(self._retry_seconds)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_soon())

    async def flush(self) -> None:
        """Write every event recorded so far, now: a batch still gathering is written at once, one being
        written is waited for (so that events keep their order)."""
        flushing = self._flushing
        if flushing is not None and not flushing.done():
            if self._writing:
                with contextlib.suppress(Exception):
                    await flushing
            else:
                flushing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flushing
        await self._write_pending()


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
