"""What the API keeps in Django's database: hashed API tokens and the record of every write."""

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
