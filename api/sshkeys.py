"""SSH public keys people log in to the shell with: `/apis/auth.director.io/v1/sshkeys[/NAME]`.

Each user manages their own keys (`dirctl keys add/list/delete`). A key is stored as its OpenSSH line and
found at a login by its SHA-256 fingerprint; the shell server asks who a key belongs to through
`/shell-server/v1/publickey` (api/shell_server.py) and never sees the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncssh
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse

from api import content
from api.auth import Principal
from api.errors import ApiError, Cause, status_success
from api.models import SshKey
from api.views import AUTH_GROUP_VERSION, endpoint

KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
KEY_NAME_RULE = "1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
MAX_KEYS_PER_USER = 100
MIN_RSA_BITS = 2048
_ACCEPTED_ALGORITHMS = (
    "ssh-ed25519",
    "ssh-ed448",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
)
_REQUEST_FIELDS = ("name", "publicKey")


@dataclass(frozen=True)
class ParsedKey:
    line: str  # "ALGORITHM BASE64", no comment
    fingerprint: str  # "SHA256:..."
    algorithm: str
    comment: str


def parse_public_key(text: str) -> ParsedKey:
    """One OpenSSH public key line (as in ~/.ssh/id_ed25519.pub), or 422 saying what is wrong with it."""
    cause = "one line such as `ssh-ed25519 AAAA... laptop`, as in ~/.ssh/id_ed25519.pub"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise ApiError(
            422,
            f"publicKey must be exactly one key line, got {len(lines)}: {cause}",
            causes=[Cause("publicKey", cause)],
        )
    if "PRIVATE KEY" in text:
        raise ApiError(
            422,
            "publicKey holds a PRIVATE key: send the .pub file, and keep the private key to yourself",
            causes=[Cause("publicKey", cause)],
        )
    try:
        key = asyncssh.import_public_key(lines[0])
    except (asyncssh.KeyImportError, ValueError) as error:
        raise ApiError(
            422,
            f"publicKey is not an OpenSSH public key ({error}): {cause}",
            causes=[Cause("publicKey", cause)],
        ) from None
    algorithm = key.get_algorithm()
    if algorithm not in _ACCEPTED_ALGORITHMS:
        accepted = ", ".join(_ACCEPTED_ALGORITHMS)
        raise ApiError(
            422,
            f"publicKey: {algorithm} keys are not accepted; use one of {accepted} (ssh-keygen -t ed25519)",
            causes=[Cause("publicKey", f"one of {accepted}")],
        )
    if algorithm == "ssh-rsa":
        bits = int(getattr(key.pyca_key, "key_size", 0))
        if bits < MIN_RSA_BITS:
            raise ApiError(
                422,
                f"publicKey: an RSA key of {bits} bits is too weak; use {MIN_RSA_BITS} bits or more, or "
                "better an ed25519 key (ssh-keygen -t ed25519)",
                causes=[Cause("publicKey", f"RSA of at least {MIN_RSA_BITS} bits")],
            )
    exported = key.export_public_key("openssh").decode().split()
    comment = lines[0].split(None, 2)[2].strip() if len(lines[0].split(None, 2)) == 3 else ""
    return ParsedKey(
        line=" ".join(exported[:2]),
        fingerprint=key.get_fingerprint("sha256"),
        algorithm=algorithm,
        comment=comment,
    )


def key_document(key: SshKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "user": key.user.get_username(),
        "fingerprint": key.fingerprint,
        "publicKey": key.public_key,
        "created": key.created.isoformat(),
        "lastUsed": key.last_used.isoformat() if key.last_used else None,
    }


def _refuse_components(principal: Principal) -> None:
    if principal.is_component:
        raise ApiError(403, "a component credential has no SSH keys of its own")


def _default_name(parsed: ParsedKey, taken: set[str]) -> str:
    """The key file's comment when it makes a name (alice@laptop), else the algorithm and fingerprint."""
    if KEY_NAME.match(parsed.comment) and parsed.comment not in taken:
        return parsed.comment
    base = f"{parsed.algorithm.split('@')[0]}-{parsed.fingerprint.removeprefix('SHA256:')[:8]}"
    return re.sub(r"[^A-Za-z0-9._@-]", "-", base)


def _add_key(request: HttpRequest, principal: Principal) -> SshKey:
    body = content.parse_body(request)
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a mapping with publicKey and optionally name")
    unknown = sorted(str(key) for key in body if key not in _REQUEST_FIELDS)
    if unknown:
        raise ApiError(
            422,
            f"unknown field(s) {', '.join(unknown)}; an SSH key has {', '.join(_REQUEST_FIELDS)}",
            causes=[Cause(field, "unknown field") for field in unknown],
        )
    text = body.get("publicKey")
    if not isinstance(text, str):
        raise ApiError(
            422, "publicKey is required: the text of a .pub file", causes=[Cause("publicKey", "required")]
        )
    parsed = parse_public_key(text)
    owned = SshKey.objects.filter(user_id=principal.user_id)
    taken = set(owned.values_list("name", flat=True))
    name = body.get("name")
    if name is None:
        name = _default_name(parsed, taken)
    if not isinstance(name, str) or not KEY_NAME.match(name):
        raise ApiError(
            422, f"name must be {KEY_NAME_RULE}, got {name!r}", causes=[Cause("name", KEY_NAME_RULE)]
        )
    if len(taken) >= MAX_KEYS_PER_USER:
        raise ApiError(422, f"you have {len(taken)} SSH keys, the most one may have; delete one first")
    holder = SshKey.objects.select_related("user").filter(fingerprint=parsed.fingerprint).first()
    if holder is not None:
        whose = f'as "{holder.name}"' if holder.user_id == principal.user_id else "by another user"
        raise ApiError(
            409,
            f"the key {parsed.fingerprint} is added already ({whose}); each key belongs to one user",
            causes=[Cause("publicKey", "already added")],
        )
    if name in taken:
        raise ApiError(
            409,
            f'you have a key named "{name}" already; choose another name (--name) or delete that key first',
            causes=[Cause("name", "taken")],
        )
    try:
        with transaction.atomic():
            return SshKey.objects.create(
                user_id=principal.user_id, name=name, public_key=parsed.line, fingerprint=parsed.fingerprint
            )
    except IntegrityError:
        raise ApiError(
            409, f'the key or the name "{name}" was added at the same moment; list your keys'
        ) from None


@endpoint("GET", "POST")
def ssh_keys(request: HttpRequest, principal: Principal) -> HttpResponse:
    _refuse_components(principal)
    if request.method == "POST":
        key = _add_key(request, principal)
        return content.render(
            request, key_document(key) | {"kind": "SshKey", "apiVersion": AUTH_GROUP_VERSION}, 201
        )
    listed = SshKey.objects.select_related("user").filter(user_id=principal.user_id)
    return content.render(
        request,
        {"kind": "SshKeyList", "apiVersion": AUTH_GROUP_VERSION, "items": [key_document(k) for k in listed]},
    )


@endpoint("GET", "DELETE")
def ssh_key_item(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    _refuse_components(principal)
    key = SshKey.objects.select_related("user").filter(user_id=principal.user_id, name=name).first()
    if key is None:
        raise ApiError(404, f'you have no SSH key named "{name}" (dirctl keys list shows yours)', name=name)
    if request.method == "DELETE":
        key.delete()
        return content.render(request, status_success(f'SSH key "{name}" deleted'))
    return content.render(request, key_document(key) | {"kind": "SshKey", "apiVersion": AUTH_GROUP_VERSION})


def key_of(username: str, public_key: str) -> SshKey | None:
    """The user's key with this public key, if they added it."""
    try:
        parsed = parse_public_key(public_key)
    except ApiError:
        return None
    return (
        SshKey.objects.select_related("user")
        .filter(fingerprint=parsed.fingerprint, user__username=username, user__is_active=True)
        .first()
    )
