"""A site's status, computed from what one reconcile found: conditions Ready, Reconciling and Stalled.

Conditions follow Kubernetes' conventions (kstatus): all three are set on every visit, `reason` is one
CamelCase word, and `lastTransitionTime` moves only when a condition's status flips, so "Ready since"
means what it says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from specs.models import Condition, ConditionType, LastReconcile, ServiceStatus, SiteStatus

MAX_MESSAGE = 4096

ReconcileResult = Literal["succeeded", "failed", "stalled"]
ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Verdict:
    """What one reconcile of a site came to, in the runtime's terms."""

    result: ReconcileResult
    # Every reconciler ran and reported ready.
    ready: bool
    message: str
    # Seconds until the next try: a poll for convergence (succeeded) or a backoff (failed).
    retry_in: float | None = None
    service: ServiceStatus | None = None


def truncate(message: str, limit: int = MAX_MESSAGE) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def set_condition(
    conditions: list[Condition],
    type_: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    observed_generation: int | None,
) -> list[Condition]:
    """The conditions with one of them set; its transition time is kept unless its status changed."""
    previous = next((c for c in conditions if c.type == type_), None)
    transition = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=truncate(message),
        last_transition_time=transition,
        observed_generation=observed_generation,
    )
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, updated], key=lambda c: _CONDITION_ORDER[c.type])


_CONDITION_ORDER: dict[ConditionType, int] = {"Ready": 0, "Reconciling": 1, "Stalled": 2}


_Setting = tuple[ConditionStatus, str, str]


def conditions_for(
    previous: list[Condition], verdict: Verdict, *, generation: int | None, now: datetime
) -> list[Condition]:
    ready: _Setting
    reconciling: _Setting
    stalled: _Setting = ("False", "AsExpected", "")
    if verdict.result == "stalled":
        ready = ("False", "Stalled", verdict.message)
        reconciling = ("False", "Stalled", "not retried until the spec changes")
        stalled = ("True", "PermanentError", verdict.message)
    elif verdict.result == "failed":
        retry = f"; retrying in {verdict.retry_in:.0f}s" if verdict.retry_in is not None else ""
        ready = ("False", "ReconcileFailed", verdict.message + retry)
        reconciling = ("False", "RetryScheduled", verdict.message + retry)
    elif verdict.ready:
        ready = ("True", "Ready", verdict.message or "served as the spec asks")
        if verdict.retry_in is not None:
            reconciling = ("True", "Progressing", "polling until it converges")
        else:
            reconciling = ("False", "Reconciled", "")
    elif verdict.retry_in is not None:
        ready = ("False", "Progressing", verdict.message or "not ready yet")
        reconciling = ("True", "Progressing", verdict.message or "waiting for the site to converge")
    else:
        ready = ("False", "NotReady", verdict.message or "not ready yet")
        reconciling = ("False", "Reconciled", "applied; waiting for the world to change")
    wanted: tuple[tuple[ConditionType, _Setting], ...] = (
        ("Ready", ready),
        ("Reconciling", reconciling),
        ("Stalled", stalled),
    )
    conditions = previous
    for type_, (status, reason, message) in wanted:
        conditions = set_condition(
            conditions,
            type_,
            status,
            reason,
            message,
            now=now,
            observed_generation=generation,
        )
    return conditions


def reconciling_status(
    previous: SiteStatus | None, *, generation: int | None, message: str, now: datetime
) -> SiteStatus:
    """The status shown while a reconcile of a new generation (or a deletion) is in flight.

    A site seen for the first time gets all three conditions at once, Ready as Unknown: a condition
    that is absent says nothing, and readers should not have to guess.
    """
    base = previous if previous is not None else SiteStatus()
    conditions = base.conditions
    if base.condition("Ready") is None:
        conditions = set_condition(
            conditions,
            "Ready",
            "Unknown",
            "Reconciling",
            "not reconciled yet",
            now=now,
            observed_generation=generation,
        )
    if base.condition("Stalled") is None:
        conditions = set_condition(
            conditions, "Stalled", "False", "AsExpected", "", now=now, observed_generation=generation
        )
    conditions = set_condition(
        conditions, "Reconciling", "True", "Progressing", message, now=now, observed_generation=generation
    )
    return base.model_copy(update={"conditions": conditions})


def status_after(
    previous: SiteStatus | None,
    verdict: Verdict,
    *,
    generation: int | None,
    urls: list[str],
    last_reconcile: LastReconcile,
    now: datetime,
) -> SiteStatus:
    base = previous if previous is not None else SiteStatus()
    return SiteStatus(
        observed_generation=generation,
        conditions=conditions_for(base.conditions, verdict, generation=generation, now=now),
        urls=urls,
        # A reconcile that stopped before the service reconciler ran keeps the last observation.
        service=verdict.service if verdict.service is not None else base.service,
        last_reconcile=last_reconcile,
    )


def worth_writing(
    previous: SiteStatus | None, new: SiteStatus, *, now: datetime, heartbeat: timedelta, force: bool = False
) -> bool:
    """Whether a status write tells watchers anything: a change besides lastReconcile's bookkeeping, a
    forced write (a manual request wants its answer), or a lastReconcile older than the heartbeat."""
    if previous is None or force:
        return True
    if _comparable(previous) != _comparable(new):
        return True
    last = previous.last_reconcile
    return last is None or now - last.time >= heartbeat


def _comparable(status: SiteStatus) -> dict[str, object]:
    document = status.model_dump(mode="json")
    last = document.get("last_reconcile")
    if isinstance(last, dict):
        for volatile in ("time", "reconcile_id", "trigger", "duration_seconds"):
            last.pop(volatile, None)
    return document
