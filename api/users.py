"""Director's users, for administrators: create, disable and enable, delete, reset a password, make or
unmake admin.

Service functions the web UI's admin pages and the API (api/user_views.py, so dirctl) call: each takes the
caller's Principal and refuses anyone but an administrator (403), so no caller can skip the check. A user
name is what `spec.owners` names, so it follows the owners' pattern. Passwords pass Django's validators
(settings.AUTH_PASSWORD_VALIDATORS). A disabled user is refused by every API process and page at the next
request (api/auth.py checks `is_active` each time), and their sites keep running.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from api.auth import ADMIN_GROUP, Principal, ensure_admin_group
from api.errors import ApiError, Cause
from api.gitsources import service as gitsource_service
from api.runtime import site_service
from api.sites import WriteOptions
from specs.models import OWNER_PATTERN

_USERNAME = re.compile(OWNER_PATTERN)
USERNAME_RULE = (
    "lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters "
    "(the form spec.owners names users in)"
)


@dataclass(frozen=True)
class UserInfo:
    username: str
    is_active: bool
    is_admin: bool
    has_password: bool
    date_joined: datetime
    last_login: datetime | None


def _require_admin(principal: Principal, verb: str) -> None:
    if not principal.is_admin or principal.is_component:
        raise ApiError(403, f'user "{principal.username}" may not {verb}: only administrators manage users')


def _info(user: User, admins: set[int]) -> UserInfo:
    return UserInfo(
        username=user.get_username(),
        is_active=user.is_active,
        is_admin=user.is_superuser or user.pk in admins,
        has_password=user.has_usable_password(),
        date_joined=user.date_joined,
        last_login=user.last_login,
    )


def _admin_ids() -> set[int]:
    return set(User.objects.filter(groups__name=ADMIN_GROUP).values_list("pk", flat=True))


def list_users(principal: Principal) -> list[UserInfo]:
    _require_admin(principal, "list users")
    admins = _admin_ids()
    return [_info(user, admins) for user in User.objects.order_by("username")]


def _user(username: str) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        raise ApiError(404, f'no user is named "{username}"', causes=[Cause("username", "no such user")])
    return user


def get_user(principal: Principal, username: str) -> UserInfo:
    """A user, for an administrator or for that user themselves."""
    if username != principal.username or principal.is_component:
        _require_admin(principal, "read other users")
    return _info(_user(username), _admin_ids())


def _checked_password(password: str, user: User | None = None) -> None:
    try:
        validate_password(password, user)
    except ValidationError as invalid:
        problems = " ".join(str(message) for message in invalid.messages)
        raise ApiError(
            422, f"the password is not good enough: {problems}", causes=[Cause("password", problems)]
        ) from None


def new_password() -> str:
    """A password to hand to a person once: 16 characters, about 96 bits."""
    return secrets.token_urlsafe(12)


def create_user(
    principal: Principal, username: str, password: str | None = None, *, admin: bool = False
) -> tuple[UserInfo, str]:
    """A new user, and the password they log in with (the one given, or a new one to hand them)."""
    _require_admin(principal, "create users")
    if not _USERNAME.fullmatch(username):
        raise ApiError(
            422,
            f"{username!r} is not a user name: {USERNAME_RULE}",
            causes=[Cause("username", USERNAME_RULE)],
        )
    chosen = password or new_password()
    _checked_password(chosen, User(username=username))
    try:
        with transaction.atomic():
            user = User.objects.create_user(username, password=chosen)
            if admin:
                user.groups.add(ensure_admin_group())
    except IntegrityError:
        raise ApiError(
            409, f'a user named "{username}" exists already', causes=[Cause("username", "taken")]
        ) from None
    return _info(user, _admin_ids()), chosen


def set_active(principal: Principal, username: str, active: bool) -> UserInfo:
    """Disable a user (every token and session of theirs is refused from the next request) or enable them."""
    _require_admin(principal, "disable or enable users")
    if username == principal.username and not active:
        raise ApiError(
            409,
            "you cannot disable yourself: ask another administrator",
            causes=[Cause("username", "yourself")],
        )
    user = _user(username)
    if user.is_active != active:
        user.is_active = active
        user.save(update_fields=["is_active"])
    return _info(user, _admin_ids())


def reset_password(principal: Principal, username: str, password: str | None = None) -> str:
    """Give a user a new password (the one given, or a new one to hand them); their sessions end."""
    _require_admin(principal, "reset passwords")
    user = _user(username)
    chosen = password or new_password()
    _checked_password(chosen, user)
    user.set_password(chosen)
    user.save(update_fields=["password"])
    return chosen


def set_admin(principal: Principal, username: str, admin: bool) -> UserInfo:
    _require_admin(principal, "make or unmake administrators")
    if username == principal.username and not admin:
        raise ApiError(
            409,
            "you cannot take away your own administrator rights: ask another administrator",
            causes=[Cause("username", "yourself")],
        )
    user = _user(username)
    group = ensure_admin_group()
    if admin:
        user.groups.add(group)
    else:
        user.groups.remove(group)
        if user.is_superuser:
            user.is_superuser = False
            user.save(update_fields=["is_superuser"])
    return _info(user, _admin_ids())


def change_own_password(user: User, old_password: str, password: str) -> None:
    """A signed-in person changes their password: the old one must be right, the new one good enough."""
    if not user.check_password(old_password):
        raise ApiError(
            403,
            "the current password is wrong",
            causes=[Cause("old_password", "is not your current password")],
        )
    _checked_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])


def sites_owned_by(principal: Principal, username: str) -> list[str]:
    """The names of the sites `username` is among the owners of."""
    return sorted(site.name for site in site_service(principal).list() if username in site.spec.owners)


def _sources_applying_as(principal: Principal, username: str) -> list[str]:
    return sorted(
        source.name for source in gitsource_service(principal).list() if source.spec.apply_as == username
    )


def delete_user(principal: Principal, username: str, *, reassign_to: str | None, field_manager: str) -> None:
    """Delete a user with their tokens, SSH keys and secrets. Refused while they own sites (they would be
    nobody's to manage) unless `reassign_to` names the user who takes each of them over, and while a
    GitSource applies as them (it would apply as nobody)."""
    _require_admin(principal, "delete users")
    if username == principal.username:
        raise ApiError(
            409,
            "you cannot delete yourself: ask another administrator",
            causes=[Cause("username", "yourself")],
        )
    user = _user(username)
    sources = _sources_applying_as(principal, username)
    if sources:
        raise ApiError(
            409,
            f'user "{username}" is what gitsource(s) {", ".join(sources)} apply as: '
            "give them another spec.applyAs or delete them first",
            causes=[Cause("spec.applyAs", f"gitsource {name}") for name in sources],
        )
    owned = sites_owned_by(principal, username)
    if owned and reassign_to is None:
        raise ApiError(
            409,
            f'user "{username}" owns site(s) {", ".join(owned)}: give them to another user with '
            "--reassign-to USER (reassignTo), or change their owners first",
            causes=[Cause("reassignTo", f"site {name} is theirs") for name in owned],
        )
    if owned and reassign_to is not None:
        _reassign_sites(principal, username, reassign_to, owned, field_manager)
    user.delete()


def _reassign_sites(principal: Principal, username: str, heir: str, sites: list[str], manager: str) -> None:
    if heir == username:
        raise ApiError(422, "reassignTo must be another user", causes=[Cause("reassignTo", "the same user")])
    if not User.objects.filter(username=heir, is_active=True).exists():
        raise ApiError(
            422,
            f'reassignTo: no active user is named "{heir}"',
            causes=[Cause("reassignTo", "must be an active user")],
        )
    service = site_service(principal)
    for name in sites:
        owners = service.get(name).spec.owners
        # Each write is one site's: a failure part-way leaves the rest with the user, who is not yet deleted.
        given = list(dict.fromkeys(heir if owner == username else owner for owner in owners))
        service.merge_patch(name, {"spec": {"owners": given}}, WriteOptions(field_manager=manager))
