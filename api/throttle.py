"""Failed logins wait longer and longer, per user name and per client address, in every API process at once.

Every password check (POST /login, the shell server's /authenticate) is bracketed by `begin` and then
`failed` or `succeeded`. After `login_free_failures` failed checks of one user name, or
`login_free_failures_per_address` from one address, each further try waits `login_delay_seconds`, doubled
with every further failure up to `login_max_delay_seconds`. A try during the wait is answered 429 with
Retry-After before the password is looked at, so a right password is refused as a wrong one is: otherwise
the wait would not slow guessing at all. A right password starts the user name's count over. The counts
live in the database, not in a process, and are forgotten a day after the last try.

An IPv6 client is counted by its /64, which one host usually has whole.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from api.errors import ApiError
from api.models import LoginThrottle

FORGET_AFTER = timedelta(days=1)
_SUBJECT_LENGTH = 150


@dataclass(frozen=True)
class Subject:
    """Whose failures count: a user name, or a client address."""

    kind: str
    name: str

    @property
    def free_failures(self) -> int:
        if self.kind == LoginThrottle.USER:
            return int(settings.DIRECTOR.login_free_failures)
        return int(settings.DIRECTOR.login_free_failures_per_address)

    def describe(self) -> str:
        return f'for the user name "{self.name}"' if self.kind == LoginThrottle.USER else f"from {self.name}"


def address_subject(address: str) -> str:
    """The address as counted, or ValueError if it is not an IP address."""
    ip = ipaddress.ip_address(address.strip())
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def subjects_of(username: str, address: str | None) -> list[Subject]:
    subjects = [Subject(LoginThrottle.USER, username[:_SUBJECT_LENGTH])]
    if address:
        subjects.append(Subject(LoginThrottle.ADDRESS, address_subject(address)))
    return subjects


def delay_after(failures: int, free_failures: int) -> timedelta | None:
    """How long the next try waits after this many failures; None: it need not wait."""
    if failures < free_failures:
        return None
    base = float(settings.DIRECTOR.login_delay_seconds)
    ceiling = float(settings.DIRECTOR.login_max_delay_seconds)
    # The exponent is bounded so that a long run of failures cannot overflow the float.
    return timedelta(seconds=min(base * 2.0 ** min(failures - free_failures, 64), ceiling))


def _row_for_update(subject: Subject, now: datetime) -> LoginThrottle:
    rows = LoginThrottle.objects.select_for_update()
    row = rows.filter(kind=subject.kind, subject=subject.name).first()
    if row is not None:
        return row
    try:
        # A savepoint: on PostgreSQL a concurrent first failure of the same subject makes this insert fail,
        # and the transaction must go on with the row that one made.
        with transaction.atomic():
            return LoginThrottle.objects.create(kind=subject.kind, subject=subject.name, last_attempt=now)
    except IntegrityError:
        return rows.get(kind=subject.kind, subject=subject.name)


def _wait_text(wait: timedelta) -> str:
    seconds = wait.total_seconds()
    return f"{seconds:.1f} s" if seconds < 10 else f"{math.ceil(seconds)} s"


def throttled(blocked: list[tuple[Subject, datetime]], now: datetime) -> ApiError:
    until = max(locked_until for _, locked_until in blocked)
    wait = until - now
    who = " and ".join(subject.describe() for subject, _ in blocked)
    return ApiError(
        429,
        f"too many failed logins {who}: try again in {_wait_text(wait)} "
        f"(at {until:%Y-%m-%dT%H:%M:%S}Z); each failure makes the wait longer",
        retry_after_seconds=max(1, math.ceil(wait.total_seconds())),
    )


def begin(subjects: list[Subject]) -> None:
    """Count a password check about to be made as failed, or refuse it (429) while a wait is running.

    The wait this count calls for starts now, so that checks begun meanwhile wait too; `failed` restarts it
    when the check is over.
    """
    now = timezone.now()
    LoginThrottle.objects.filter(last_attempt__lt=now - FORGET_AFTER).delete()
    with transaction.atomic():
        rows = [(subject, _row_for_update(subject, now)) for subject in subjects]
        blocked = [
            (subject, row.locked_until)
            for subject, row in rows
            if row.locked_until is not None and row.locked_until > now
        ]
        if blocked:
            raise throttled(blocked, now)
        for subject, row in rows:
            if row.last_attempt < now - FORGET_AFTER:
                row.failures = 0
            row.failures += 1
            delay = delay_after(row.failures, subject.free_failures)
            row.locked_until = now + delay if delay else None
            row.last_attempt = now
            row.save()


def _rows_for_update(subjects: list[Subject]) -> list[tuple[Subject, LoginThrottle]]:
    found = []
    for subject in subjects:
        row = (
            LoginThrottle.objects.select_for_update().filter(kind=subject.kind, subject=subject.name).first()
        )
        if row is not None:
            found.append((subject, row))
    return found


def failed(subjects: list[Subject]) -> timedelta | None:
    """The password was wrong: the wait runs from now, when the caller hears so, not from when the (slow)
    check began. Returns the wait, if any."""
    now = timezone.now()
    waits = []
    with transaction.atomic():
        for subject, row in _rows_for_update(subjects):
            delay = delay_after(row.failures, subject.free_failures)
            if delay is not None:
                # A concurrent failure may have set a later end already.
                row.locked_until = max(row.locked_until or now, now + delay)
                row.save(update_fields=["locked_until"])
                waits.append(delay)
    return max(waits, default=None)


def succeeded(subjects: list[Subject]) -> None:
    """The password was right: the user name starts over; the address only takes back this try."""
    with transaction.atomic():
        for subject, row in _rows_for_update(subjects):
            row.failures = 0 if subject.kind == LoginThrottle.USER else max(row.failures - 1, 0)
            if delay_after(row.failures, subject.free_failures) is None:
                row.locked_until = None
            row.save(update_fields=["failures", "locked_until"])
