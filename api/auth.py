"""Who is calling: bearer API tokens (stored hashed), HTTP Basic only where a password is exchanged for one.

A token may be confined to a URL prefix. The shell server's credential is confined to `/shell-server/`,
and Director enforces that here, not a load balancer in front of it (the seed's caution).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from django.contrib.auth import authenticate as check_password
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, User
from django.http import HttpRequest
from django.utils import timezone

from api.errors import ApiError
from api.models import ApiToken

TOKEN_PREFIX = "dir_"
ADMIN_GROUP = "admins"
SHELL_SERVER_SCOPE = "/shell-server/"
# A revocation reaches other server processes within this many seconds; the revoking process drops it at once.
_CACHE_SECONDS = 10.0
# last_used is a hint for people listing their tokens, so it is written at most this often per token.
_LAST_USED_RESOLUTION_SECONDS = 60.0


@dataclass(frozen=True)
class Principal:
    username: str
    user_id: int
    is_admin: bool
    scope: str = ""
    token_id: int | None = None

    @property
    def is_component(self) -> bool:
        return bool(self.scope)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_admin(user: User) -> bool:
    return user.is_superuser or user.groups.filter(name=ADMIN_GROUP).exists()


def principal_for(user: User, *, scope: str = "", token_id: int | None = None) -> Principal:
    return Principal(user.get_username(), user.pk, is_admin(user), scope, token_id)


def issue_token(user: User, name: str, *, scope: str = "") -> tuple[ApiToken, str]:
    """A new token; the secret is returned once and never stored."""
    if scope and not (scope.startswith("/") and scope.endswith("/")):
        raise ApiError(422, f"a token scope must be a URL prefix such as /shell-server/, got {scope!r}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, secret_hash=hash_secret(secret), prefix=secret[:12], scope=scope
    )
    return token, secret


class _TokenCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._last_used: dict[int, float] = {}

    def get(self, secret_hash: str) -> Principal | None:
        with self._lock:
            entry = self._entries.get(secret_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, secret_hash: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[secret_hash] = (time.monotonic() + _CACHE_SECONDS, principal)

    def forget_token(self, token_id: int) -> None:
        with self._lock:
            for key in [k for k, (_, p) in self._entries.items() if p.token_id == token_id]:
                del self._entries[key]

    def forget_user(self, user_id: int) -> None:
        with self._lock:
            for key in [k for k, (_, p) in self._entries.items() if p.user_id == user_id]:
                del self._entries[key]

    def should_touch(self, token_id: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last_used.get(token_id, -1e9) < _LAST_USED_RESOLUTION_SECONDS:
                return False
            self._last_used[token_id] = now
            return True


token_cache = _TokenCache()


def revoke_token(token: ApiToken) -> None:
    token.revoked = timezone.now()
    token.save(update_fields=["revoked"])
    token_cache.forget_token(token.pk)


def _principal_from_token(secret: str) -> Principal:
    secret_hash = hash_secret(secret)
    cached = token_cache.get(secret_hash)
    if cached is not None:
        return cached
    token = (
        ApiToken.objects.select_related("user")
        .filter(secret_hash=secret_hash, revoked__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        raise ApiError(401, "the API token is unknown, revoked, or its user is disabled; run `dirctl login`")
    principal = principal_for(token.user, scope=token.scope, token_id=token.pk)
    token_cache.put(secret_hash, principal)
    return principal


def _touch(principal: Principal) -> None:
    if principal.token_id is not None and token_cache.should_touch(principal.token_id):
        ApiToken.objects.filter(pk=principal.token_id).update(last_used=timezone.now())


def authenticate_request(request: HttpRequest) -> Principal:
    """The caller, or 401; a component token outside its URL prefix is 403."""
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise ApiError(
            401, "this endpoint needs an API token: send `Authorization: Bearer TOKEN` (dirctl login)"
        )
    principal = _principal_from_token(credential.strip())
    if principal.scope and not request.path.startswith(principal.scope):
        raise ApiError(
            403,
            f'the credential of "{principal.username}" may only call URLs under {principal.scope}, '
            f"not {request.path}",
        )
    _touch(principal)
    return principal


def user_from_password(username: str, password: str) -> User:
    user: AbstractBaseUser | AnonymousUser | None = check_password(username=username, password=password)
    if not isinstance(user, User) or not user.is_active:
        raise ApiError(401, "the user name or password is wrong")
    return user


def user_from_basic_auth(request: HttpRequest) -> User:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise ApiError(401, "log in with HTTP Basic authentication (user name and password)")
    try:
        username, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, "the Basic credentials are not valid base64 of user:password") from None
    return user_from_password(username, password)


def ensure_admin_group() -> Group:
    group, _ = Group.objects.get_or_create(name=ADMIN_GROUP)
    return group
