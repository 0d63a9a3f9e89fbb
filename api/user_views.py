"""HTTP for users, under /apis/auth.director.io/v1/users: what dirctl's `create`, `get`, `describe`,
`disable`, `enable` and `delete user` call. Administrators manage everyone; a user may read their own
(api/users.py decides).

A User document:
    apiVersion: auth.director.io/v1
    kind: User
    metadata: {name: alice, creationTimestamp: ...}
    spec: {admin: false, disabled: false}
    status: {hasPassword: true, lastLogin: ..., sites: [...], tokens: [...], sshKeys: [...]}
The sites, tokens and keys are in a single user's document only, not in the listing.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from api import content, users
from api.auth import Principal
from api.errors import ApiError, Cause, status_success
from api.models import ApiToken, SshKey
from api.runtime import site_service
from api.sshkeys import key_document
from api.views import AUTH_GROUP_VERSION, endpoint, token_document, write_options

_SPEC_FIELDS = ("admin", "disabled")


def _timestamp(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def user_document(info: users.UserInfo, sites: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": AUTH_GROUP_VERSION,
        "kind": "User",
        "metadata": {"name": info.username, "creationTimestamp": _timestamp(info.date_joined)},
        "spec": {"admin": info.is_admin, "disabled": not info.is_active},
        "status": {"hasPassword": info.has_password, "lastLogin": _timestamp(info.last_login)}
        | ({"sites": sites} if sites is not None else {}),
    }


def _detailed(principal: Principal, info: users.UserInfo) -> dict[str, Any]:
    document = user_document(info, users.sites_owned_by(principal, info.username))
    tokens = ApiToken.objects.select_related("user").filter(
        user__username=info.username, revoked__isnull=True, expires__gt=timezone.now()
    )
    keys = SshKey.objects.select_related("user").filter(user__username=info.username)
    document["status"]["tokens"] = [token_document(token) for token in tokens]
    document["status"]["sshKeys"] = [key_document(key) for key in keys]
    return document


def _spec_of(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a User object (a mapping)")
    spec = body.get("spec") or {}
    if not isinstance(spec, dict):
        raise ApiError(422, "spec must be a mapping", causes=[Cause("spec", "must be a mapping")])
    unknown = sorted(str(key) for key in spec if key not in _SPEC_FIELDS)
    if unknown:
        raise ApiError(
            422,
            f"unknown field(s) {', '.join('spec.' + key for key in unknown)}: "
            "a User's spec has admin and disabled",
            causes=[
                Cause(f"spec.{key}", "unknown field", reason="FieldValueNotSupported") for key in unknown
            ],
        )
    for key, value in spec.items():
        if not isinstance(value, bool):
            raise ApiError(
                422,
                f"spec.{key} must be true or false, got {value!r}",
                causes=[Cause(f"spec.{key}", "a boolean")],
            )
    return spec


@endpoint("GET", "POST")
def user_collection(request: HttpRequest, principal: Principal) -> HttpResponse:
    if request.method == "POST":
        body = content.parse_body(request)
        spec = _spec_of(body)
        metadata = body.get("metadata") if isinstance(body, dict) else None
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if not isinstance(name, str) or not name:
            raise ApiError(422, "metadata.name is required", causes=[Cause("metadata.name", "is required")])
        password = body.get("password")
        if password is not None and not isinstance(password, str):
            raise ApiError(422, "password must be a text", causes=[Cause("password", "a text")])
        info, chosen = users.create_user(principal, name, password or None, admin=bool(spec.get("admin")))
        if spec.get("disabled"):
            info = users.set_active(principal, name, False)
        created = user_document(info, [])
        if not password:
            # Made here: the one time anyone sees it.
            created["password"] = chosen
        return content.render(request, created, status=201)
    listed = users.list_users(principal)
    counts: dict[str, int] = {}
    for site in site_service(principal).list():
        for owner in site.spec.owners:
            counts[owner] = counts.get(owner, 0) + 1
    items = []
    for info in listed:
        document = user_document(info)
        document["status"]["siteCount"] = counts.get(info.username, 0)
        items.append(document)
    return content.render(
        request, {"apiVersion": AUTH_GROUP_VERSION, "kind": "UserList", "metadata": {}, "items": items}
    )


@endpoint("GET", "PATCH", "DELETE")
def user_item(request: HttpRequest, principal: Principal, username: str) -> HttpResponse:
    if request.method == "GET":
        return content.render(request, _detailed(principal, users.get_user(principal, username)))
    if request.method == "PATCH":
        spec = _spec_of(content.parse_body(request))
        info = users.get_user(principal, username)
        if "disabled" in spec:
            info = users.set_active(principal, username, not spec["disabled"])
        if "admin" in spec:
            info = users.set_admin(principal, username, spec["admin"])
        return content.render(request, user_document(info))
    reassign_to = request.GET.get("reassignTo") or None
    users.delete_user(
        principal, username, reassign_to=reassign_to, field_manager=write_options(request).field_manager
    )
    return content.render(request, status_success(f'user "{username}" deleted', name=username))
