"""Endpoints for the SSH shell server, callable only with its `/shell-server/`-scoped credential."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from api import content, throttle
from api.auth import SHELL_SERVER_SCOPE, Principal, authenticate_request, principal_for, user_from_password
from api.errors import ApiError, Cause, method_not_allowed
from api.runtime import site_service
from api.sshkeys import key_of


def _require_shell_server(request: HttpRequest) -> Principal:
    principal = authenticate_request(request)
    if principal.scope != SHELL_SERVER_SCOPE:
        raise ApiError(403, f"only the shell server's credential may call {SHELL_SERVER_SCOPE} URLs")
    return principal


def _sites_of(user: User) -> list[dict[str, object]]:
    principal = principal_for(user)
    sites = site_service(principal).list()
    return [
        {
            "name": site.name,
            "type": site.spec.type,
            "availability": site.spec.availability,
            "deleting": site.metadata.deletion_timestamp is not None,
        }
        for site in sites
    ]


def _client_address(body: dict[str, object]) -> str | None:
    address = body.get("clientAddress")
    if address is None:
        return None
    message = "the SSH client's IP address, such as 192.0.2.7 or 2001:db8::7, or left out if unknown"
    if not isinstance(address, str):
        raise ApiError(422, f"clientAddress must be {message}", causes=[Cause("clientAddress", message)])
    try:
        throttle.address_subject(address)
    except ValueError:
        raise ApiError(
            422, f"clientAddress must be {message}, got {address!r}", causes=[Cause("clientAddress", message)]
        ) from None
    return address


def _texts_sent(request: HttpRequest, *names: str) -> dict[str, Any]:
    """The request's body, a mapping holding a text under each of `names`; 422 naming them otherwise."""
    body = content.parse_body(request)
    if not isinstance(body, dict) or not all(isinstance(body.get(name), str) for name in names):
        raise ApiError(422, f"send {' and '.join(names)}", causes=[Cause(name, "required") for name in names])
    return body


@csrf_exempt
def authenticate_user(request: HttpRequest) -> HttpResponse:
    """The shell server passes on a person's user name and password, and the address they connect from
    (`clientAddress`); it hears who they are and which sites they may enter.

    Failed checks count towards the same waits as failed API logins (api/throttle.py), per user name and
    per `clientAddress`. Without `clientAddress` only the user name is counted: the shell server's own
    address would make every SSH user wait for one person's mistakes.
    """
    _require_shell_server(request)
    if request.method != "POST":
        return method_not_allowed(request, ["POST"])
    body = _texts_sent(request, "username", "password")
    user = user_from_password(body["username"], body["password"], _client_address(body))
    principal = principal_for(user)
    return content.render(
        request,
        {
            "kind": "ShellUser",
            "username": principal.username,
            "admin": principal.is_admin,
            "sites": _sites_of(user),
        },
    )


@csrf_exempt
def user_sites(request: HttpRequest, username: str) -> HttpResponse:
    """The sites a (key-authenticated) user may enter now: asked again at every login."""
    _require_shell_server(request)
    if request.method != "GET":
        return method_not_allowed(request, ["GET"])
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ApiError(404, f'user "{username}" not found or disabled')
    return content.render(request, {"kind": "ShellUser", "username": username, "sites": _sites_of(user)})


@csrf_exempt
def public_key_user(request: HttpRequest) -> HttpResponse:
    """Whether `username` added this public key (`publicKey`, one OpenSSH line): the user, the key's name
    and their sites, or 404. The shell server has checked the client holds the private key.

    Not throttled: a key cannot be guessed, and an SSH client offers each key it has in turn.
    """
    _require_shell_server(request)
    if request.method != "POST":
        return method_not_allowed(request, ["POST"])
    body = _texts_sent(request, "username", "publicKey")
    username = body["username"]
    key = key_of(username, body["publicKey"])
    if key is None:
        raise ApiError(404, f'the user "{username}" has added no such key')
    principal = principal_for(key.user)
    return content.render(
        request,
        {
            "kind": "ShellUser",
            "username": principal.username,
            "admin": principal.is_admin,
            "key": key.name,
            "sites": _sites_of(key.user),
        },
    )
