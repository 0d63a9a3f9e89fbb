"""Conditions and status computed from a reconcile's verdict, and which record changes wake the controller."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.status import (
    Verdict,
    conditions_for,
    reconciling_status,
    set_condition,
    status_after,
    worth_writing,
)
from controller.watch import Fingerprint, classify
from specs.models import (
    RECONCILE_REQUEST_ANNOTATION,
    LastReconcile,
    ObjectMeta,
    ServiceStatus,
    Site,
    SiteStatus,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)


def by_type(conditions):
    return {c.type: c for c in conditions}


def test_transition_time_moves_only_when_the_status_flips():
    first = set_condition([], "Ready", "False", "Progressing", "starting", now=T0, observed_generation=1)
    same = set_condition(first, "Ready", "False", "NotReady", "still starting", now=T1, observed_generation=2)
    assert same[0].last_transition_time == T0
    assert (same[0].reason, same[0].message, same[0].observed_generation) == ("NotReady", "still starting", 2)
    flipped = set_condition(same, "Ready", "True", "Ready", "", now=T2, observed_generation=2)
    assert flipped[0].last_transition_time == T2


def test_success_sets_all_three_conditions():
    conditions = by_type(
        conditions_for([], Verdict("succeeded", ready=True, message=""), generation=3, now=T0)
    )
    assert [conditions[t].status for t in ("Ready", "Reconciling", "Stalled")] == ["True", "False", "False"]
    assert all(c.observed_generation == 3 for c in conditions.values())
    assert list(conditions) == ["Ready", "Reconciling", "Stalled"]


def test_polling_for_convergence_is_reconciling_and_not_ready():
    verdict = Verdict("succeeded", ready=False, message="0/1 tasks running", retry_in=2.0)
    conditions = by_type(conditions_for([], verdict, generation=1, now=T0))
    assert (conditions["Ready"].status, conditions["Ready"].reason) == ("False", "Progressing")
    assert conditions["Reconciling"].status == "True"
    assert conditions["Stalled"].status == "False"


def test_not_ready_without_a_poll_is_not_left_reconciling_forever():
    verdict = Verdict("succeeded", ready=False, message="task exited with code 1")
    conditions = by_type(conditions_for([], verdict, generation=1, now=T0))
    assert (conditions["Ready"].status, conditions["Ready"].reason) == ("False", "NotReady")
    assert conditions["Reconciling"].status == "False"


def test_a_failure_is_not_ready_says_when_it_retries_and_is_not_stalled():
    verdict = Verdict("failed", ready=False, message="service: docker said no", retry_in=4.2)
    conditions = by_type(conditions_for([], verdict, generation=1, now=T0))
    assert (conditions["Ready"].status, conditions["Ready"].reason) == ("False", "ReconcileFailed")
    assert "docker said no" in conditions["Ready"].message and "retrying in 4s" in conditions["Ready"].message
    assert conditions["Reconciling"].status == "False"
    assert conditions["Stalled"].status == "False"


def test_a_permanent_error_is_stalled():
    verdict = Verdict("stalled", ready=False, message="service: image does not exist")
    conditions = by_type(conditions_for([], verdict, generation=4, now=T0))
    assert (conditions["Stalled"].status, conditions["Stalled"].reason) == ("True", "PermanentError")
    assert conditions["Stalled"].message == "service: image does not exist"
    assert (conditions["Ready"].status, conditions["Reconciling"].status) == ("False", "False")


def test_a_long_message_is_cut_to_what_a_condition_holds():
    verdict = Verdict("failed", ready=False, message="x" * 10_000, retry_in=1)
    conditions = conditions_for([], verdict, generation=1, now=T0)
    assert all(len(c.message) <= 4096 for c in conditions)


def last(at: datetime, reconcile_id: str = "r1") -> LastReconcile:
    return LastReconcile(
        time=at, result="succeeded", reconcile_id=reconcile_id, trigger="resync", duration_seconds=0.1
    )


def test_status_keeps_the_last_observed_service_when_a_reconcile_stopped_before_it():
    previous = status_after(
        SiteStatus,
        None,
        Verdict(
            "succeeded",
            ready=True,
            message="",
            parts={"service": ServiceStatus(running_tasks=2, desired_tasks=2)},
        ),
        generation=1,
        described={"urls": ["http://a.sites.localhost:8080/"]},
        last_reconcile=last(T0),
        now=T0,
    )
    failed = status_after(
        SiteStatus,
        previous,
        Verdict("failed", ready=False, message="files: disk full", retry_in=1.0),
        generation=1,
        described={"urls": previous.urls},
        last_reconcile=last(T1),
        now=T1,
    )
    assert failed.service == ServiceStatus(running_tasks=2, desired_tasks=2)
    assert failed.observed_generation == 1
    ready = by_type(failed.conditions)["Ready"]
    assert (ready.status, ready.last_transition_time) == ("False", T1)


def test_a_status_that_only_differs_in_last_reconcile_bookkeeping_is_not_rewritten():
    verdict = Verdict("succeeded", ready=True, message="")
    old = status_after(
        SiteStatus, None, verdict, generation=1, described={"urls": []}, last_reconcile=last(T0), now=T0
    )
    new = status_after(
        SiteStatus, old, verdict, generation=1, described={"urls": []}, last_reconcile=last(T1, "r2"), now=T1
    )
    heartbeat = timedelta(minutes=10)
    assert not worth_writing(old, new, now=T1, heartbeat=heartbeat)
    assert worth_writing(old, new, now=T1, heartbeat=heartbeat, force=True)
    assert worth_writing(old, new, now=T0 + heartbeat, heartbeat=heartbeat)
    changed = status_after(
        SiteStatus, old, verdict, generation=2, described={"urls": []}, last_reconcile=last(T1), now=T1
    )
    assert worth_writing(old, changed, now=T1, heartbeat=heartbeat)
    assert worth_writing(None, new, now=T1, heartbeat=heartbeat)


def test_reconciling_status_flags_only_reconciling():
    ready = status_after(
        SiteStatus,
        None,
        Verdict("succeeded", ready=True, message=""),
        generation=1,
        described={"urls": []},
        last_reconcile=last(T0),
        now=T0,
    )
    applying = reconciling_status(SiteStatus, ready, generation=2, message="applying generation 2", now=T1)
    conditions = by_type(applying.conditions)
    assert (conditions["Reconciling"].status, conditions["Reconciling"].last_transition_time) == ("True", T1)
    assert conditions["Ready"] == by_type(ready.conditions)["Ready"]
    assert applying.observed_generation == 1
    first = by_type(reconciling_status(SiteStatus, None, generation=1, message="new", now=T0).conditions)
    assert [(c.type, c.status) for c in first.values()] == [
        ("Ready", "Unknown"),
        ("Reconciling", "True"),
        ("Stalled", "False"),
    ]


# -- which record changes wake the controller --------------------------------------------------------


def site(**meta) -> Site:
    values = {"name": "alpha", "uid": "a1", "generation": 1, "resource_version": "5"} | meta
    return Site(metadata=ObjectMeta(**values))


def test_a_status_only_change_wakes_nothing():
    before = Fingerprint.of(site())
    after = site(resource_version="9")
    after.status = SiteStatus(observed_generation=1)
    assert classify(before, Fingerprint.of(after)) is None


def test_a_new_generation_a_deletion_a_recreation_and_a_manual_request_are_urgent():
    before = Fingerprint.of(site())
    assert classify(before, Fingerprint.of(site(generation=2))).urgent
    assert classify(before, Fingerprint.of(site(deletion_timestamp=T0))).urgent
    assert classify(before, Fingerprint.of(site(uid="b2"))).urgent
    manual = classify(
        before, Fingerprint.of(site(annotations={RECONCILE_REQUEST_ANNOTATION: "2026-11-27T12:00"}))
    )
    assert manual is not None and manual.urgent and "manual" in manual.trigger


def test_other_metadata_changes_wake_without_urgency():
    before = Fingerprint.of(site())
    labelled = classify(before, Fingerprint.of(site(labels={"team": "web"})))
    assert labelled is not None and not labelled.urgent
    added = classify(None, Fingerprint.of(site()))
    assert added is not None and not added.urgent


def test_a_settled_status_is_one_a_write_would_not_change():
    """The resync's shortcut never skips a write that worth_writing would make."""
    from controller.status import settled

    heartbeat = timedelta(minutes=10)
    parts = {"service": ServiceStatus(running_tasks=1, desired_tasks=1)}
    steady = Verdict("succeeded", ready=True, message="", parts=parts)
    described = {"urls": ["http://a.sites.localhost:8080/"]}
    old = status_after(
        SiteStatus, None, steady, generation=2, described=described, last_reconcile=last(T0), now=T0
    )
    verdicts = [
        steady,
        Verdict("succeeded", ready=True, message="", parts={"service": ServiceStatus(running_tasks=0)}),
        Verdict("succeeded", ready=False, message="0/1 tasks running", retry_in=2.0),
        Verdict("failed", ready=False, message="docker said no", retry_in=1.0),
        Verdict("stalled", ready=False, message="no such image"),
    ]
    for verdict in verdicts:
        for generation, urls, at in (
            (2, described, T1),
            (3, described, T1),
            (2, {"urls": []}, T1),
            (2, described, T0 + heartbeat),
        ):
            new = status_after(
                SiteStatus,
                old,
                verdict,
                generation=generation,
                described=urls,
                last_reconcile=last(at),
                now=at,
            )
            if settled(old, verdict, generation=generation, described=urls, now=at, heartbeat=heartbeat):
                assert not worth_writing(old, new, now=at, heartbeat=heartbeat)
    assert settled(old, steady, generation=2, described=described, now=T1, heartbeat=heartbeat)
