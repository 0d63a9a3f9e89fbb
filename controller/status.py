"""A record's status, computed from what one reconcile found: conditions Ready, Reconciling and Stalled,
then each reconciler's own part under its name, for any kind.

Conditions follow Kubernetes' conventions (kstatus): all three are set on every visit, `reason` is one
CamelCase word, and `lastTransitionTime` moves only when a condition's status flips, so "Ready since"
means what it says. Stalled is kept in the record, with the generation it is about: a stalled record is
not retried until its generation changes, across restarts of the controller too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from specs.models import Condition, ConditionType, LastReconcile, Model

S = TypeVar("S", bound=Model)

MAX_MESSAGE = 4096

ReconcileResult = Literal["succeeded", "failed", "stalled"]
ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Verdict:
    """What one reconcile of a record came to, in the runtime's terms."""

    result: ReconcileResult
    # Every reconciler ran and reported ready.
    ready: bool
    message: str
    # Seconds until the next try: a poll for convergence (succeeded) or a backoff (failed).
    retry_in: float | None = None
    # Each reconciler's part of the status, by status field; a part not reported keeps its last value.
    parts: Mapping[str, Model] = field(default_factory=dict)
    # The Ready condition's reason, when a reconciler gave one.
    reason: str | None = None


def conditions_of(status: Model | None) -> list[Condition]:
    return list(getattr(status, "conditions", None) or [])


def condition_of(status: Model | None, type_: ConditionType) -> Condition | None:
    return next((c for c in conditions_of(status) if c.type == type_), None)


def is_stalled(status: Model | None, generation: int | None) -> bool:
    """The record is Stalled at this very generation: only a spec change (or a person asking) retries it."""
    stalled = condition_of(status, "Stalled")
    return (
        stalled is not None
        and stalled.status == "True"
        and getattr(status, "observed_generation", None) == generation
    )


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


def wanted_conditions(verdict: Verdict) -> tuple[tuple[ConditionType, _Setting], ...]:
    """Status, reason and message of Ready, Reconciling and Stalled after `verdict`."""
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
        ready = ("True", verdict.reason or "Ready", verdict.message or "served as the spec asks")
        if verdict.retry_in is not None:
            reconciling = ("True", "Progressing", "polling until it converges")
        else:
            reconciling = ("False", "Reconciled", "")
    elif verdict.retry_in is not None:
        ready = ("False", "Progressing", verdict.message or "not ready yet")
        reconciling = ("True", "Progressing", verdict.message or "waiting for it to converge")
    else:
        ready = ("False", verdict.reason or "NotReady", verdict.message or "not ready yet")
        reconciling = ("False", "Reconciled", "applied; waiting for the world to change")
    return (("Ready", ready), ("Reconciling", reconciling), ("Stalled", stalled))


def conditions_for(
    previous: list[Condition], verdict: Verdict, *, generation: int | None, now: datetime
) -> list[Condition]:
    wanted = wanted_conditions(verdict)
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
    model: type[S], previous: S | None, *, generation: int | None, message: str, now: datetime
) -> S:
    """The status shown while a reconcile of a new generation (or a deletion) is in flight.

    A record seen for the first time gets all three conditions at once, Ready as Unknown: a condition
    that is absent says nothing, and readers should not have to guess.
    """
    base = previous if previous is not None else model()
    conditions = conditions_of(base)
    if condition_of(base, "Ready") is None:
        conditions = set_condition(
            conditions,
            "Ready",
            "Unknown",
            "Reconciling",
            "not reconciled yet",
            now=now,
            observed_generation=generation,
        )
    if condition_of(base, "Stalled") is None:
        conditions = set_condition(
            conditions, "Stalled", "False", "AsExpected", "", now=now, observed_generation=generation
        )
    conditions = set_condition(
        conditions, "Reconciling", "True", "Progressing", message, now=now, observed_generation=generation
    )
    return base.model_copy(update={"conditions": conditions})


def status_after(
    model: type[S],
    previous: S | None,
    verdict: Verdict,
    *,
    generation: int | None,
    described: Mapping[str, object],
    last_reconcile: LastReconcile,
    now: datetime,
) -> S:
    """The status one reconcile comes to: conditions, the kind's own fields (`described`), and the parts
    the reconcilers reported, over the parts of the previous status they did not report this time."""
    document: dict[str, Any] = previous.model_dump() if previous is not None else {}
    document.update(described)
    document.update({name: part.model_dump() for name, part in verdict.parts.items()})
    document["observed_generation"] = generation
    document["conditions"] = [
        c.model_dump()
        for c in conditions_for(conditions_of(previous), verdict, generation=generation, now=now)
    ]
    document["last_reconcile"] = last_reconcile.model_dump()
    return model.model_validate(document)


def settled(
    previous: Model | None,
    verdict: Verdict,
    *,
    generation: int | None,
    described: Mapping[str, object],
    now: datetime,
    heartbeat: timedelta,
) -> bool:
    """Whether `verdict` leaves `previous` as it is but for lastReconcile's bookkeeping, and that is fresh:
    the status need not even be computed (a resync's thousands of converged records)."""
    if previous is None or verdict.result == "failed":
        return False
    last: LastReconcile | None = getattr(previous, "last_reconcile", None)
    if last is None or now - last.time >= heartbeat or last.result != verdict.result:
        return False
    if (
        last.message != truncate(verdict.message)
        or getattr(previous, "observed_generation", None) != generation
    ):
        return False
    current = {c.type: c for c in conditions_of(previous)}
    for type_, (status, reason, message) in wanted_conditions(verdict):
        found = current.get(type_)
        if found is None or (found.status, found.reason, found.message, found.observed_generation) != (
            status,
            reason,
            truncate(message),
            generation,
        ):
            return False
    return all(getattr(previous, name, None) == value for name, value in described.items()) and all(
        getattr(previous, name, None) == part for name, part in verdict.parts.items()
    )


def worth_writing(
    previous: Model | None, new: Model, *, now: datetime, heartbeat: timedelta, force: bool = False
) -> bool:
    """Whether a status write tells watchers anything: a change besides lastReconcile's bookkeeping, a
    forced write (a manual request wants its answer), or a lastReconcile older than the heartbeat."""
    if previous is None or force:
        return True
    if _comparable(previous) != _comparable(new):
        return True
    last: LastReconcile | None = getattr(previous, "last_reconcile", None)
    return last is None or now - last.time >= heartbeat


def _comparable(status: Model) -> dict[str, object]:
    document = status.model_dump(mode="json")
    last = document.get("last_reconcile")
    if isinstance(last, dict):
        for volatile in ("time", "reconcile_id", "trigger", "duration_seconds"):
            last.pop(volatile, None)
    return document
