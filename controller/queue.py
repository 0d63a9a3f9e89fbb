"""The work queue: keys (kind, name) waiting for a reconcile, after client-go's workqueue.

- A key added many times before a worker takes it is processed once ("stingy").
- A key is never processed by two workers at once; added while in process, it runs again afterwards.
- A key that failed waits with per-key exponential backoff. Ordinary wake-ups (a Docker event, the
  resync) during that wait are folded into it, so a flapping container cannot turn a backoff into a
  busy loop. Urgent adds (a new generation, a deletion, a manual request) bypass the backoff and reset it.
- A key can ask to come back later without counting as a failure (`add_after`, for polling).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from controller.backoff import Backoff
from controller.types import Request


@dataclass(frozen=True)
class WorkItem:
    request: Request
    # Why the key was queued; when adds collapse, the first reason is kept unless an urgent one arrives.
    trigger: str
    # An add asked for it now (new generation, deletion, a person): the status answers even if unchanged.
    urgent: bool = False


@dataclass
class _Pending:
    trigger: str
    urgent: bool


@dataclass
class _Timer:
    handle: asyncio.TimerHandle
    due: float
    trigger: str
    # True for a failure's backoff (ordinary adds wait for it), False for a requested poll (they don't).
    backoff: bool


class WorkQueue:
    def __init__(self, backoff: Backoff | None = None, *, rng: random.Random | None = None) -> None:
        self._backoff = backoff if backoff is not None else Backoff()
        self._rng = rng if rng is not None else random.Random()
        self._ready: asyncio.Queue[Request | None] = asyncio.Queue()
        self._waiting: dict[Request, _Pending] = {}
        self._processing: set[Request] = set()
        self._dirty: dict[Request, _Pending] = {}
        self._timers: dict[Request, _Timer] = {}
        self._failures: dict[Request, int] = {}
        self._shut_down = False

    # -- adding -------------------------------------------------------------------------------------

    def add(self, request: Request, trigger: str, *, urgent: bool = False) -> None:
        if self._shut_down:
            return
        timer = self._timers.get(request)
        if urgent:
            self.forget(request)
            self._cancel_timer(request)
        elif timer is not None and timer.backoff:
            return
        elif timer is not None:
            self._cancel_timer(request)
        self._push(request, trigger, urgent=urgent)

    def add_after(self, request: Request, delay: float, trigger: str, *, backoff: bool = False) -> None:
        """Queue the key after `delay` seconds; of two timers for one key, the earlier one stands."""
        if self._shut_down:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + max(0.0, delay)
        existing = self._timers.get(request)
        if existing is not None:
            if existing.due <= due:
                return
            existing.handle.cancel()
        handle = loop.call_at(due, self._fire, request)
        self._timers[request] = _Timer(handle=handle, due=due, trigger=trigger, backoff=backoff)

    def add_rate_limited(self, request: Request, trigger: str) -> float:
        """Count one more failure for the key and queue it after its backoff; returns the delay."""
        failures = self._failures.get(request, 0) + 1
        self._failures[request] = failures
        delay = self._backoff.delay(failures, self._rng)
        self._cancel_timer(request)
        self.add_after(request, delay, trigger, backoff=True)
        return delay

    def retry_now(self, trigger: str) -> list[Request]:
        """Queue at once every key waiting out a failure's backoff, its failures forgotten: for when the cause
        those failures shared is known to be gone (dockerd is back), so that none waits minutes for nothing.
        Requested polls keep their time. Returns the keys queued."""
        backing_off = sorted(request for request, timer in self._timers.items() if timer.backoff)
        for request in backing_off:
            self.add(request, trigger, urgent=True)
        return backing_off

    def forget(self, request: Request) -> None:
        """The key succeeded (or its spec changed): its next failure starts the backoff afresh."""
        self._failures.pop(request, None)

    def failures(self, request: Request) -> int:
        return self._failures.get(request, 0)

    # -- taking ------------------------------------------------------------------------------------

    async def get(self) -> WorkItem | None:
        """The next key to process, or None once the queue is shut down."""
        while True:
            request = await self._ready.get()
            if request is None:
                # Leave the sentinel for the other workers waiting here.
                self._ready.put_nowait(None)
                return None
            pending = self._waiting.pop(request, None)
            if pending is None:
                continue
            self._processing.add(request)
            return WorkItem(request=request, trigger=pending.trigger, urgent=pending.urgent)

    def done(self, request: Request) -> None:
        """The worker finished the key; a key added meanwhile goes back in line (unless it is backing off)."""
        self._processing.discard(request)
        pending = self._dirty.pop(request, None)
        if pending is not None:
            self.add(request, pending.trigger, urgent=pending.urgent)

    def shut_down(self) -> None:
        """Take no more keys; workers waiting in get() receive None."""
        self._shut_down = True
        for request in list(self._timers):
            self._cancel_timer(request)
        self._waiting.clear()
        self._dirty.clear()
        self._ready.put_nowait(None)

    # -- introspection, for tests -------------------------------------------------------------------

    def is_processing(self, request: Request) -> bool:
        return request in self._processing

    def scheduled_in(self, request: Request) -> float | None:
        """Seconds until the key's timer fires, or None when it has none."""
        timer = self._timers.get(request)
        if timer is None:
            return None
        return max(0.0, timer.due - asyncio.get_running_loop().time())

    def __len__(self) -> int:
        return len(self._waiting)

    # -- internals ---------------------------------------------------------------------------------

    def _push(self, request: Request, trigger: str, *, urgent: bool) -> None:
        if request in self._processing:
            dirty = self._dirty.get(request)
            if dirty is None or (urgent and not dirty.urgent):
                self._dirty[request] = _Pending(trigger=trigger, urgent=urgent)
            return
        pending = self._waiting.get(request)
        if pending is not None:
            if urgent and not pending.urgent:
                self._waiting[request] = _Pending(trigger=trigger, urgent=True)
            return
        self._waiting[request] = _Pending(trigger=trigger, urgent=urgent)
        self._ready.put_nowait(request)

    def _fire(self, request: Request) -> None:
        timer = self._timers.pop(request, None)
        if timer is None or self._shut_down:
            return
        self._push(request, timer.trigger, urgent=False)

    def _cancel_timer(self, request: Request) -> None:
        timer = self._timers.pop(request, None)
        if timer is not None:
            timer.handle.cancel()
