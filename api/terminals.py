"""Terminal sessions: a shell, a command or an sftp server in a container of one site, for one person.

The SSH shell server and the web terminal both ask for them (api/terminal_socket.py relays the bytes).
This module decides who may enter which site and records every session as a reconcile event of the site;
the container itself comes from the backend the composition root registers (api/terminal_backend.py).
"""

from __future__ import annotations

import secrets
import shlex
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import User

from api.auth import principal_for
from api.policy import can_read
from api.runtime import event_log, site_store
from api.terminal_backend import Refused, SessionKind
from specs.models import Site
from store.records import InvalidRecord, NotFound

EVENT_STEP = "terminal"


@dataclass
class SessionRecord:
    """Who opened a session, from where and how: what its reconcile events say."""

    session_id: str
    username: str
    kind: SessionKind
    via: str  # "ssh" or "web"
    site: Site | None = None  # known once the person is admitted
    client_address: str | None = None
    key_name: str | None = None
    command: str | None = None
    started: float = field(default_factory=time.monotonic)

    def describe(self) -> str:
        what = {"shell": "a shell", "exec": "a command", "sftp": "sftp"}[self.kind]
        if self.kind == "exec" and self.command is not None:
            shown = self.command if len(self.command) <= 200 else self.command[:200] + "..."
            what = f"the command {shlex.quote(shown)}"
        source = f" from {self.client_address}" if self.client_address else ""
        how = (
            f" with the SSH key {self.key_name}"
            if self.key_name
            else (" with a password" if self.via == "ssh" else "")
        )
        channel = "over SSH" if self.via == "ssh" else "in the web terminal"
        return f"{self.username} opened {what} {channel}{source}{how} (session {self.session_id})"


def new_session_id() -> str:
    return secrets.token_hex(6)


def site_for(username: str, site_name: str) -> Site:
    """The site this person may enter now, or Refused saying plainly why not.

    A site that does not exist and one the person does not own are refused in the same words, as the API
    answers both with 404. Admins may enter any site, a disabled one too (to repair it).
    """
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise Refused(f'the user "{username}" does not exist or is disabled')
    principal = principal_for(user)
    unknown = Refused(f'you have no site named "{site_name}" (ssh {username}@HOST lists yours)')
    try:
        site = site_store().get(site_name)
    except (NotFound, ValueError):
        raise unknown from None
    except InvalidRecord:
        raise Refused(f'the record of site "{site_name}" cannot be read; ask an administrator') from None
    if not can_read(principal, site):
        raise unknown
    if site.metadata.deletion_timestamp is not None:
        raise Refused(f'site "{site_name}" is being deleted; nothing can be started in it')
    if site.spec.availability == "disabled" and not principal.is_admin:
        raise Refused(f'site "{site_name}" is disabled by an administrator; ask them to enable it')
    return site


def session_limit() -> int:
    return int(settings.DIRECTOR.shell_sessions_per_user)


def record_start(record: SessionRecord) -> None:
    assert record.site is not None
    event_log().record(
        site=record.site.name,
        generation=record.site.metadata.generation,
        reconcile_id=record.session_id,
        trigger=record.via,
        step=EVENT_STEP,
        result="created",
        duration_seconds=0.0,
        message=record.describe(),
        uid=record.site.metadata.uid,
    )


def record_end(record: SessionRecord, exit_status: int | None, reason: str) -> None:
    assert record.site is not None
    lasted = time.monotonic() - record.started
    status = f", exit status {exit_status}" if exit_status is not None else ""
    source = f" from {record.client_address}" if record.client_address else ""
    event_log().record(
        site=record.site.name,
        generation=record.site.metadata.generation,
        reconcile_id=record.session_id,
        trigger=record.via,
        step=EVENT_STEP,
        result="deleted",
        duration_seconds=lasted,
        message=(
            f"{record.username}'s session {record.session_id}{source} "
            f"ended after {_duration_text(lasted)}: {reason}{status}"
        ),
        uid=record.site.metadata.uid,
    )


def record_refusal(site: str, username: str, via: str, reason: str, client_address: str | None) -> None:
    """A refused session of an existing site is worth knowing about; of no site there is nothing to record."""
    try:
        record = site_store().get(site)
    except (NotFound, InvalidRecord, ValueError):
        return
    source = f" from {client_address}" if client_address else ""
    event_log().record(
        site=record.name,
        generation=record.metadata.generation,
        reconcile_id=new_session_id(),
        trigger=via,
        step=EVENT_STEP,
        result="skipped",
        duration_seconds=0.0,
        message=f"{username}{source} was refused a session: {reason}",
        uid=record.metadata.uid,
    )


def _duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
