"""What the API keeps in Django's database: hashed API tokens, failed logins, and the record of every write.

Whatever decides who may call (tokens, users, failed logins) lives here rather than in a server process's
memory, so every API process sees a revocation, a disabled user or a failed login at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class ApiToken(models.Model):
    """A bearer credential of one user. Only the SHA-256 of the secret is stored: the secret is 256 random
    bits, so a slow password hash would add latency to every request and no safety."""

    user_id: int
    user: models.ForeignKey[User, User] = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name: models.CharField[str, str] = models.CharField(max_length=64)
    secret_hash: models.CharField[str, str] = models.CharField(max_length=64, unique=True)
    # Shown in listings so a person can tell tokens apart without the secret.
    prefix: models.CharField[str, str] = models.CharField(max_length=16)
    # A URL prefix this token is confined to ("/shell-server/" for the shell server); empty: the whole API.
    scope: models.CharField[str, str] = models.CharField(max_length=128, blank=True, default="")
    created: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now_add=True)
    # Every token ends: a stolen one is useful for a bounded time even if nobody notices the theft.
    expires: models.DateTimeField[datetime, datetime] = models.DateTimeField()
    # The token this one was made with (POST .../tokens with a bearer token), if any: revoking the parent
    # revokes this one, and this one never expires after it, so a stolen token cannot outlive its revocation
    # through tokens it made.
    parent_id: int | None
    parent: models.ForeignKey[ApiToken | None, ApiToken | None] = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    last_used: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    revoked: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"


class LoginThrottle(models.Model):
    """Failed password checks of one user name, or from one client address, that count towards a wait.

    The name need not be an existing user's: answering unknown names differently would tell which exist.
    """

    USER = "user"
    ADDRESS = "address"

    kind: models.CharField[str, str] = models.CharField(max_length=8)  # USER or ADDRESS
    subject: models.CharField[str, str] = models.CharField(max_length=150)
    # Password checks begun and not succeeded; one in progress counts, so concurrent guesses cannot all
    # slip in before the first of them is counted.
    failures: models.IntegerField[int, int] = models.IntegerField(default=0)
    locked_until: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    last_attempt: models.DateTimeField[datetime, datetime] = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "subject"], name="login_throttle_subject")]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}: {self.failures} failures"


class WriteRecord(models.Model):
    """One accepted write to a site: who, when, through which field manager, and what it produced."""

    time: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now_add=True, db_index=True)
    username: models.CharField[str, str] = models.CharField(max_length=150)
    site: models.CharField[str, str] = models.CharField(max_length=64, db_index=True)
    operation: models.CharField[str, str] = models.CharField(
        max_length=16
    )  # create, replace, patch, apply, delete
    field_manager: models.CharField[str, str] = models.CharField(max_length=128)
    generation: models.IntegerField[int | None, int | None] = models.IntegerField(null=True)
    resource_version: models.CharField[str, str] = models.CharField(max_length=20, blank=True, default="")

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%dT%H:%M:%SZ} {self.username} {self.operation} {self.site}"


class BlockedDomain(models.Model):
    """A domain no site may claim, kept by the admins (Director 4.0's blocked domains): the name itself and
    every name under it. Sites already serving it keep it; only new claims are refused."""

    domain: models.CharField[str, str] = models.CharField(max_length=253, unique=True)
    reason: models.CharField[str, str] = models.CharField(max_length=512, blank=True, default="")
    blocked_by: models.CharField[str, str] = models.CharField(max_length=150)
    created: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class SshKey(models.Model):
    """A public key its user logs in to the SSH shell with. Public keys are no secret; the fingerprint
    (SHA-256, as `ssh-keygen -l` prints it) finds the key at a login and tells keys apart in listings."""

    user_id: int
    user: models.ForeignKey[User, User] = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_keys"
    )
    name: models.CharField[str, str] = models.CharField(max_length=64)
    # The key as one OpenSSH line, "ssh-ed25519 AAAA...", without the comment.
    public_key: models.TextField[str, str] = models.TextField()
    # A key belongs to one user: two people sharing a key could not be told apart in a session's event.
    fingerprint: models.CharField[str, str] = models.CharField(max_length=80, unique=True)
    created: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now_add=True)
    last_used: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )

    class Meta:
        ordering = ["user_id", "name"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="ssh_key_name_per_user")]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"


class Secret(models.Model):
    """Credentials a GitSource names (`secretRef`): a repository's user name and password or token, an SSH
    identity, a webhook's HMAC key. Kept here, never in a record or a repository; the API never returns a
    value, and only the controller's credential reads them, for a source whose applyAs owns them."""

    owner_id: int
    owner: models.ForeignKey[User, User] = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="secrets"
    )
    # Each user names their own secrets; a source's secretRef is looked up among its applyAs user's.
    name: models.CharField[str, str] = models.CharField(max_length=63)
    # A JSON object of key -> value (text).
    data: models.TextField[str, str] = models.TextField()
    created: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["owner_id", "name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="secret_owner_name")]

    def __str__(self) -> str:
        return f"{self.name} of user {self.owner_id}"
