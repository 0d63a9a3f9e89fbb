"""What the controller needs to apply GitSources through the API: its URL, and a credential the composition
root issues in the API's database (the controller is the one process that holds it, in memory only).

The credential is confined to `/controller/` URLs and may act as a user on the sites URLs (api/auth.py). It
is issued when the first source needs it and issued again when the API refuses it (expired, revoked); each
issue revokes the ones before, so a token of a controller that died is useless at once.
"""

from __future__ import annotations

import asyncio
import os
import threading

from orchestrator.api_server import api_url, setup_django
from reconcilers.director_api import IssuedCredential

CONTROLLER_TOKEN_NAME = "controller"
_django_ready = threading.Lock()
_ready = False


def api_base_url() -> str:
    """DIRECTOR_API_URL, else the API on loopback at DIRECTOR_API_PORT (what `director run` starts)."""
    return os.environ.get("DIRECTOR_API_URL") or api_url()


def _django() -> None:
    global _ready
    with _django_ready:
        if not _ready:
            setup_django()
            _ready = True


def issue_controller_token() -> str:
    """A new credential for the controller; every earlier one is revoked."""
    _django()
    from django.contrib.auth.models import User
    from django.db import close_old_connections

    from api.auth import CONTROLLER_SCOPE, CONTROLLER_USER, issue_token, revoke_token
    from api.models import ApiToken

    close_old_connections()
    user, created = User.objects.get_or_create(username=CONTROLLER_USER)
    if created:
        # Nobody logs in as the controller: it has a token, never a password.
        user.set_unusable_password()
        user.save()
    for old in ApiToken.objects.filter(user=user, revoked__isnull=True):
        revoke_token(old)
    _token, secret = issue_token(user, CONTROLLER_TOKEN_NAME, scope=CONTROLLER_SCOPE)
    return secret


def controller_credential() -> IssuedCredential:
    async def issue() -> str:
        return await asyncio.to_thread(issue_controller_token)

    return IssuedCredential(issue)
