"""Who is calling: bearer API tokens (stored hashed), HTTP Basic only where a password is exchanged for one.

A token may be confined to a URL prefix. The shell server's credential is confined to `/shell-server/`,
and Director enforces that here, not a load balancer in front of it (the seed's caution). The controller's
credential is confined to `/controller/`, and it alone may act as a user on the sites URLs by naming them in
an `Impersonate-User` header, as Kubernetes' impersonation does: a GitSource applies its documents with the
permissions of its `applyAs`, and every such write is that user's, through the source's field manager.

Every token expires (`token_ttl_days`, 30 by default, or sooner if asked); one made with another token
(POST .../tokens) never outlives it and is revoked with it. Whoever issues a component's credential
reissues it when the component starts, as `director run` does for the demo admin's token.

Each request is checked against the database, not a per-process cache: a revoked token, an expired one or a
disabled user (however disabled: the API, the ORM, `manage.py`) is refused by every API process at once.
That costs one indexed query per request, about 0.05 ms on SQLite.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import authenticate as check_password
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, User
from django.db import DatabaseError, connections, transaction
from django.http import HttpRequest
from django.utils import timezone

from api import throttle
from api.errors import ApiError, Cause
from api.models import ApiToken

log = logging.getLogger(__name__)

TOKEN_PREFIX = "dir_"
ADMIN_GROUP = "admins"
SHELL_SERVER_SCOPE = "/shell-server/"
CONTROLLER_SCOPE = "/controller/"
CONTROLLER_USER = "director-controller"
IMPERSONATE_HEADER = "Impersonate-User"
# The only URLs the controller's credential may call as another user.
IMPERSONABLE_PREFIX = "/apis/director.io/v1/sites"
EXPIRES_IN_FIELD = "expiresInSeconds"
# last_used is a hint for people listing their tokens, so it is written at most this often per token.
_LAST_USED_RESOLUTION_SECONDS = 60.0


@dataclass(frozen=True)
class Principal:
    username: str
    user_id: int
    is_admin: bool
    scope: str = ""
    token_id: int | None = None
    # The component acting as this user (the controller, for a GitSource's applyAs), if any.
    impersonated_by: str | None = None

    @property
    def is_component(self) -> bool:
        return bool(self.scope)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_admin(user: User) -> bool:
    return user.is_superuser or user.groups.filter(name=ADMIN_GROUP).exists()


def principal_for(user: User, *, scope: str = "", token_id: int | None = None) -> Principal:
    return Principal(user.get_username(), user.pk, is_admin(user), scope, token_id)


def token_lifetime() -> timedelta:
    return timedelta(days=int(settings.DIRECTOR.token_ttl_days))


def token_expiry(expires_in_seconds: object, parent: ApiToken | None) -> datetime:
    """When a new token ends: as asked (a whole number of seconds, at most the configured lifetime), else
    after the configured lifetime; never after the token it is made with."""
    now = timezone.now()
    longest = token_lifetime()
    latest = min(now + longest, parent.expires) if parent is not None else now + longest
    if expires_in_seconds is None:
        return latest
    most = int(longest.total_seconds())
    if (
        not isinstance(expires_in_seconds, int)
        or isinstance(expires_in_seconds, bool)
        or not 1 <= expires_in_seconds <= most
    ):
        message = f"a whole number of seconds from 1 to {most} (the longest lifetime)"
        raise ApiError(
            422,
            f"{EXPIRES_IN_FIELD} must be {message}, got {expires_in_seconds!r}",
            causes=[Cause(EXPIRES_IN_FIELD, message)],
        )
    expires = now + timedelta(seconds=expires_in_seconds)
    if expires > latest:
        left = max(int((latest - now).total_seconds()), 0)
        message = (
            f"a token made with another token ends no later than it, at {latest:%Y-%m-%dT%H:%M:%S}Z: "
            f"ask for at most {left} seconds, or log in with a password (dirctl login) and use that token"
        )
        raise ApiError(422, f"{EXPIRES_IN_FIELD}: {message}", causes=[Cause(EXPIRES_IN_FIELD, message)])
    return expires


def issue_token(
    user: User,
    name: str,
    *,
    scope: str = "",
    expires: datetime | None = None,
    parent: ApiToken | None = None,
) -> tuple[ApiToken, str]:
    """A new token; the secret is returned once and never stored."""
    if scope and not (scope.startswith("/") and scope.endswith("/")):
        raise ApiError(422, f"a token scope must be a URL prefix such as /shell-server/, got {scope!r}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        secret_hash=hash_secret(secret),
        prefix=secret[:12],
        scope=scope,
        expires=expires or token_expiry(None, parent),
        parent=parent,
    )
    return token, secret


class _LastUsedClock:
    """Which tokens this process wrote last_used for lately: a busy token is not written at every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written: dict[int, float] = {}

    def should_touch(self, token_id: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._written.get(token_id, -1e9) < _LAST_USED_RESOLUTION_SECONDS:
                return False
            if len(self._written) > 10_000:
                self._written.clear()
            self._written[token_id] = now
            return True


_last_used = _LastUsedClock()


def revoke_token(token: ApiToken) -> None:
    """Revoke the token and every token made with it, and with those, at once."""
    now = timezone.now()
    with transaction.atomic():
        generation = [token.pk]
        while generation:
            ApiToken.objects.filter(pk__in=generation, revoked__isnull=True).update(revoked=now)
            generation = list(ApiToken.objects.filter(parent_id__in=generation).values_list("pk", flat=True))
    token.revoked = now


@functools.cache
def _admitting_query() -> str:
    """One statement that finds a usable token with its user and admin membership. Written as SQL: Django
    compiles an ORM query anew each time, about 1 ms, which at every request cost more than the query."""
    tokens, users = ApiToken._meta.db_table, User._meta.db_table
    memberships, groups = User.groups.through._meta.db_table, Group._meta.db_table
    return (
        "SELECT token.id, token.scope, person.id, person.username, person.is_superuser, EXISTS ("
        f"  SELECT 1 FROM {memberships} membership JOIN {groups} grp ON grp.id = membership.group_id"
        "   WHERE membership.user_id = person.id AND grp.name = %s)"
        f" FROM {tokens} token JOIN {users} person ON person.id = token.user_id"
        " WHERE token.secret_hash = %s AND token.revoked IS NULL AND token.expires > %s AND person.is_active"
    )


def _principal_from_token(secret: str) -> Principal:
    secret_hash = hash_secret(secret)
    connection = connections[ApiToken.objects.db]
    with connection.cursor() as cursor:
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        cursor.execute(_admitting_query(), [ADMIN_GROUP, secret_hash, now])
        row = cursor.fetchone()
    if row is None:
        raise _refusal(secret_hash)
    token_id, scope, user_id, username, is_superuser, in_admin_group = row
    return Principal(username, user_id, bool(is_superuser or in_admin_group), scope, token_id)


def _refusal(secret_hash: str) -> ApiError:
    """Why a token was not admitted, in words that say what to do."""
    token = ApiToken.objects.select_related("user").filter(secret_hash=secret_hash).first()
    if token is None:
        return ApiError(401, "the API token is unknown; run `dirctl login` for a new one")
    if token.revoked is not None:
        return ApiError(
            401, f"the API token was revoked at {token.revoked:%Y-%m-%dT%H:%M:%S}Z; run `dirctl login`"
        )
    if token.expires <= timezone.now():
        return ApiError(
            401,
            f"the API token expired at {token.expires:%Y-%m-%dT%H:%M:%S}Z; run `dirctl login` for a new one",
        )
    return ApiError(401, f'the user "{token.user.get_username()}" is disabled; ask an administrator')


def _touch(principal: Principal) -> None:
    if principal.token_id is not None and _last_used.should_touch(principal.token_id):
        try:
            ApiToken.objects.filter(pk=principal.token_id).update(last_used=timezone.now())
        except DatabaseError as error:
            # A hint must never fail the request it rides on (a full disk refuses this write, not the read).
            log.warning("last use of token %s not recorded: %s", principal.token_id, error)


def authenticate_request(request: HttpRequest) -> Principal:
    """The caller, or 401; a component token outside its URL prefix is 403."""
    return authenticate_header(
        request.headers.get("Authorization", ""), request.path, request.headers.get(IMPERSONATE_HEADER)
    )


def authenticate_header(header: str, path: str, impersonated: str | None = None) -> Principal:
    """The caller of `path` by its Authorization header (HTTP requests and websockets alike); `impersonated`:
    the user an Impersonate-User header names."""
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise ApiError(
            401, "this endpoint needs an API token: send `Authorization: Bearer TOKEN` (dirctl login)"
        )
    principal = _principal_from_token(credential.strip())
    if impersonated is not None:
        _touch(principal)
        return _impersonating(principal, impersonated, path)
    if principal.scope and not path.startswith(principal.scope):
        raise ApiError(
            403,
            f'the credential of "{principal.username}" may only call URLs under {principal.scope}, '
            f"not {path}",
        )
    _touch(principal)
    return principal


def _impersonating(principal: Principal, username: str, path: str) -> Principal:
    """The user the controller's credential acts as; 403 for any other credential or URL."""
    if principal.scope != CONTROLLER_SCOPE:
        raise ApiError(
            403,
            f'the credential of "{principal.username}" may not act as another user ({IMPERSONATE_HEADER})',
        )
    if not (path == IMPERSONABLE_PREFIX or path.startswith(f"{IMPERSONABLE_PREFIX}/")):
        raise ApiError(403, f"the controller acts as a user only on {IMPERSONABLE_PREFIX} URLs, not {path}")
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ApiError(
            403,
            f'cannot act as "{username}": no active user has that name (was the applyAs user removed or '
            "disabled?)",
        )
    return Principal(user.get_username(), user.pk, is_admin(user), impersonated_by=principal.username)


def user_from_password(username: str, password: str, address: str | None) -> User:
    """The user, if the password is right and no wait for failed logins of this user name or address runs
    (api/throttle.py); `address` is the client's, or None when it is unknown."""
    subjects = throttle.subjects_of(username, address)
    throttle.begin(subjects)
    user: AbstractBaseUser | AnonymousUser | None = check_password(username=username, password=password)
    if not isinstance(user, User) or not user.is_active:
        next_wait = throttle.failed(subjects)
        message = "the user name or password is wrong"
        if next_wait is not None:
            message += f"; too many failed logins: the next try must wait {next_wait.total_seconds():g} s"
        raise ApiError(401, message)
    throttle.succeeded(subjects)
    return user


def client_address(request: HttpRequest) -> str | None:
    """The peer's address as the ASGI server reports it (uvicorn: X-Forwarded-For only from a proxy it
    trusts, loopback by default)."""
    address = request.META.get("REMOTE_ADDR")
    return address if isinstance(address, str) and address else None


def user_from_basic_auth(request: HttpRequest) -> User:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise ApiError(
            401,
            "log in with HTTP Basic authentication (user name and password)",
            headers={"WWW-Authenticate": 'Basic realm="director"'},
        )
    try:
        username, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, "the Basic credentials are not valid base64 of user:password") from None
    return user_from_password(username, password, client_address(request))


def ensure_admin_group() -> Group:
    group, _ = Group.objects.get_or_create(name=ADMIN_GROUP)
    return group
