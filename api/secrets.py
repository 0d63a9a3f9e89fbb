"""Secrets: credentials GitSources name, kept in the database, never returned.

`/apis/director.io/v1/secrets[/NAME]` creates, lists (names, owners and keys) and deletes one's own secrets;
an admin names another owner with `?owner=USER`. No endpoint a person can call answers a value. The
controller's credential reads the credentials of one source at `/controller/v1/gitsources/NAME/credentials`:
the secret its `secretRef` names, among the secrets of its `applyAs` user, so a source can never read a
secret of someone whose permissions it does not have.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from api import content
from api.auth import CONTROLLER_SCOPE, Principal, authenticate_request
from api.errors import ApiError, Cause, method_not_allowed, status_success
from api.gitsources import gitsource_store
from api.models import Secret
from specs.gitsource import SECRET_KEYS, SECRET_NAME_PATTERN
from specs.models import API_VERSION
from store.records import InvalidRecord, NotFound

MAX_VALUE_BYTES = 64 * 1024
_NAME = re.compile(SECRET_NAME_PATTERN)


def _owner(request: HttpRequest, principal: Principal) -> User:
    """Whose secrets the request is about: the caller's own, or (admins) `?owner=`."""
    if principal.is_component or principal.impersonated_by is not None:
        raise ApiError(403, f'the credential of "{principal.username}" may not manage secrets')
    wanted = request.GET.get("owner") or principal.username
    if wanted != principal.username and not principal.is_admin:
        raise ApiError(
            403, "only an admin may manage another user's secrets", causes=[Cause("owner", "yours")]
        )
    user = User.objects.filter(username=wanted).first()
    if user is None:
        raise ApiError(404, f'user "{wanted}" not found')
    return user


def secret_document(secret: Secret, owner: str) -> dict[str, Any]:
    """A secret as anyone sees it: its name, owner and keys; never a value."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Secret",
        "metadata": {"name": secret.name, "owner": owner, "creationTimestamp": secret.created.isoformat()},
        "keys": sorted(json.loads(secret.data)),
    }


def _string_data(body: Any) -> tuple[str, dict[str, str]]:
    if not isinstance(body, dict):
        raise ApiError(422, "send a Secret: {metadata: {name: NAME}, stringData: {KEY: VALUE}}")
    unknown = sorted(set(body) - {"apiVersion", "kind", "metadata", "stringData"})
    if unknown:
        raise ApiError(
            422,
            f"unknown field(s) {', '.join(unknown)}: a Secret has metadata.name and stringData",
            causes=[Cause(field, "unknown field") for field in unknown],
        )
    name = (body.get("metadata") or {}).get("name") if isinstance(body.get("metadata"), dict) else None
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ApiError(
            422,
            "metadata.name must be a secret name: lower-case letters, digits, '.' and '-', "
            "such as robotics-git",
            causes=[Cause("metadata.name", "a secret name such as robotics-git")],
        )
    data = body.get("stringData")
    if not isinstance(data, dict) or not data:
        raise ApiError(
            422, "stringData must hold at least one KEY: VALUE", causes=[Cause("stringData", "required")]
        )
    causes = []
    for key, value in data.items():
        if key not in SECRET_KEYS:
            causes.append(Cause(f"stringData.{key}", f"unknown key: a secret holds {', '.join(SECRET_KEYS)}"))
        elif not isinstance(value, str) or not value:
            causes.append(Cause(f"stringData.{key}", "must be non-empty text"))
        elif len(value.encode()) > MAX_VALUE_BYTES or "\x00" in value:
            causes.append(Cause(f"stringData.{key}", f"must be at most {MAX_VALUE_BYTES} bytes, without NUL"))
    if causes:
        raise ApiError(422, "; ".join(f"{c.field}: {c.message}" for c in causes), causes=causes, name=name)
    return name, {str(key): str(value) for key, value in data.items()}


def collection(request: HttpRequest, principal: Principal) -> HttpResponse:
    if request.method == "POST":
        owner = _owner(request, principal)
        name, data = _string_data(content.parse_body(request))
        try:
            secret = Secret.objects.create(owner=owner, name=name, data=json.dumps(data))
        except IntegrityError:
            raise ApiError(
                409,
                f'{owner.get_username()} already has a secret "{name}": delete it first '
                f"(`dirctl delete secret {name}`) to replace it",
                reason="AlreadyExists",
            ) from None
        return content.render(request, secret_document(secret, owner.get_username()), status=201)
    if principal.is_component or principal.impersonated_by is not None:
        raise ApiError(403, f'the credential of "{principal.username}" may not list secrets')
    secrets = Secret.objects.select_related("owner")
    if not principal.is_admin or request.GET.get("owner"):
        secrets = secrets.filter(owner=_owner(request, principal))
    return content.render(
        request,
        {
            "apiVersion": API_VERSION,
            "kind": "SecretList",
            "items": [secret_document(secret, secret.owner.get_username()) for secret in secrets],
        },
    )


def item(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    owner = _owner(request, principal)
    secret = Secret.objects.filter(owner=owner, name=name).first()
    if secret is None:
        raise ApiError(404, f'secret "{name}" of {owner.get_username()} not found')
    if request.method == "DELETE":
        secret.delete()
        return content.render(request, status_success(f'secret "{name}" deleted'))
    return content.render(request, secret_document(secret, owner.get_username()))


def values_of(owner: str, name: str) -> dict[str, str] | None:
    secret = Secret.objects.filter(owner__username=owner, name=name).first()
    if secret is None:
        return None
    data: dict[str, str] = json.loads(secret.data)
    return data


@csrf_exempt
def source_credentials(request: HttpRequest, name: str) -> HttpResponse:
    """The values of the secret a source's secretRef names, for the controller alone."""
    principal = authenticate_request(request)
    if principal.scope != CONTROLLER_SCOPE or principal.impersonated_by is not None:
        raise ApiError(403, f"only the controller's credential may call {CONTROLLER_SCOPE} URLs")
    if request.method != "GET":
        return method_not_allowed(request, ["GET"])
    try:
        source = gitsource_store().get(name)
    except (NotFound, ValueError):
        raise ApiError(404, f'gitsource "{name}" not found') from None
    except InvalidRecord as error:
        raise ApiError(500, f'the record of gitsource "{name}" cannot be read: {error}') from None
    ref = source.spec.secret_ref
    if ref is None:
        raise ApiError(404, f'gitsource "{name}" names no secret (spec.secretRef)')
    owner = source.spec.apply_as or ""
    values = values_of(owner, ref.name)
    if values is None:
        raise ApiError(
            404,
            f'secret "{ref.name}" not found among the secrets of {owner} (the source\'s applyAs): create '
            f"it with `dirctl create secret {ref.name} --from-literal ...`",
        )
    return content.render(request, {"kind": "SecretValues", "name": ref.name, "stringData": values})
