"""What one reconcile comes to for the work queue, and the one place that turns it into queue actions.

After controller-runtime's `ctrl.Result`: every path through the runtime (a record reconciled, finalized,
an orphan cleaned up, the runtime itself failing around a reconcile) ends in a Result, and `apply_result`
is the only code that forgets, backs off or schedules a key. A permanent failure needs no memory here: the
record's status says Stalled at its generation, and that is what keeps it from being retried.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.queue import WorkItem, WorkQueue


@dataclass(frozen=True)
class Result:
    # Come back after this many seconds, without it counting as a failure (a poll while converging).
    requeue_after: float | None = None
    # What failed; retried with the key's exponential backoff.
    error: str | None = None
    # Only a change of the spec can fix it: not retried until the generation changes.
    permanent: bool = False
    # Why it comes back, as the next reconcile's trigger says.
    reason: str = ""


def apply_result(queue: WorkQueue, item: WorkItem, result: Result) -> float | None:
    """Schedule what `result` asks for `item`'s key; the seconds until it comes back, or None."""
    request = item.request
    if result.permanent:
        queue.forget(request)
        return None
    if result.error is not None:
        return queue.add_rate_limited(request, f"retry after failure ({result.reason or result.error})")
    queue.forget(request)
    if result.requeue_after is not None:
        queue.add_after(request, result.requeue_after, f"poll: {result.reason or 'converging'}")
        return result.requeue_after
    return None
