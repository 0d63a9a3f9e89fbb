"""Custom domains at admission: which a site may claim, and the blocked list the admins keep.

Three rules, checked for every domain a write adds to a site (a domain it already has is kept, so an admin's
choice survives its owner's later edits):
- no one may claim a name that is not a site's to serve (specs/hosts.py: IP literals, localhost, the sites
  domain and every name under it);
- no one may claim a domain on the admins' blocked list (the name and every name under it);
- only an admin may claim a domain under an admin-only pattern (the DIRECTOR_ADMIN_ONLY_DOMAINS setting).
That a domain is held by another site is the record store's rule (specs/store.py HostTaken), decided under
its write lock so that two writers racing for one domain cannot both win.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse

from api import content
from api.auth import Principal
from api.errors import ApiError, Cause, status_success
from api.models import BlockedDomain
from specs.hosts import custom_domain_problem, matching_pattern
from specs.models import API_VERSION, HOSTNAME_PATTERN, Site
from store.records import HostTaken

BLOCKED_KIND = "BlockedDomain"


def admit_domains(principal: Principal, old: Site | None, new: Site) -> None:
    """422 for a domain nobody may claim, 403 for one only an admin may."""
    director = settings.DIRECTOR
    kept = set(old.spec.domains) if old is not None else set()
    added = [(index, host) for index, host in enumerate(new.spec.domains) if host not in kept]
    if not added:
        return
    blocked = list(BlockedDomain.objects.values_list("domain", "reason"))
    refused: list[Cause] = []
    reserved: list[Cause] = []
    for index, host in added:
        field = f"spec.domains[{index}]"
        problem = custom_domain_problem(host, director.sites_domain)
        if problem is not None:
            refused.append(Cause(field, problem))
            continue
        pattern = matching_pattern(host, [domain for domain, _ in blocked])
        if pattern is not None:
            reason = dict(blocked)[pattern]
            refused.append(
                Cause(
                    field,
                    f"{host} is blocked by the administrators ({pattern}){': ' + reason if reason else ''}",
                )
            )
            continue
        pattern = matching_pattern(host, director.admin_only_domains)
        if pattern is not None and not principal.is_admin:
            reserved.append(Cause(field, f"{host} is under {pattern}, which only an admin may give a site"))
    if refused:
        listing = "; ".join(f"{cause.field}: {cause.message}" for cause in refused)
        raise ApiError(422, f'site "{new.name}" may not claim {listing}', causes=refused, name=new.name)
    if reserved:
        listing = "; ".join(f"{cause.field}: {cause.message}" for cause in reserved)
        raise ApiError(
            403, f'user "{principal.username}" may not claim {listing}', causes=reserved, name=new.name
        )


def host_taken(taken: HostTaken, name: str) -> ApiError:
    """The 409 of a write naming a domain another site holds: the field, the host and the holder."""
    field = f"spec.domains[{taken.index}]"
    message = (
        f"{taken.host} is already served by site {taken.holder!r}, which claimed it first; a domain is "
        "freed only when its holder lets go of it"
    )
    return ApiError(
        409,
        f'site "{name}" may not claim {field}: {message}',
        reason="Conflict",
        causes=[Cause(field, message, reason="FieldValueDuplicate")],
        name=name,
    )


# ---- the blocked list -----------------------------------------------------------------------------------


def blocked_document(entry: BlockedDomain) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": BLOCKED_KIND,
        "metadata": {"name": entry.domain, "creationTimestamp": entry.created.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "spec": {"reason": entry.reason, "blockedBy": entry.blocked_by},
    }


def _require_admin(principal: Principal, verb: str) -> None:
    if not principal.is_admin or principal.is_component:
        raise ApiError(403, f'user "{principal.username}" may not {verb} blocked domains: admins only')


def _parse_blocked(body: Any) -> tuple[str, str]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a BlockedDomain object (a mapping)")
    metadata = body.get("metadata")
    domain = metadata.get("name") if isinstance(metadata, dict) else None
    spec = body.get("spec") or {}
    reason = spec.get("reason", "") if isinstance(spec, dict) else None
    causes = []
    if not isinstance(domain, str) or not re.fullmatch(HOSTNAME_PATTERN, domain):
        causes.append(Cause("metadata.name", "must be a lower-case domain such as example.org"))
    if not isinstance(reason, str) or len(reason) > 512:
        causes.append(Cause("spec.reason", "must be a text of at most 512 characters"))
    if causes:
        raise ApiError(
            422,
            "not a valid BlockedDomain: " + "; ".join(c.field + " " + c.message for c in causes),
            causes=causes,
        )
    assert isinstance(domain, str) and isinstance(reason, str)
    return domain, reason


def blocked_collection(request: HttpRequest, principal: Principal) -> HttpResponse:
    if request.method == "POST":
        _require_admin(principal, "add")
        domain, reason = _parse_blocked(content.parse_body(request))
        try:
            entry = BlockedDomain.objects.create(domain=domain, reason=reason, blocked_by=principal.username)
        except IntegrityError:
            raise ApiError(409, f"{domain} is blocked already", reason="AlreadyExists") from None
        return content.render(request, blocked_document(entry), status=201)
    _require_admin(principal, "list")
    return content.render(
        request,
        {
            "apiVersion": API_VERSION,
            "kind": f"{BLOCKED_KIND}List",
            "metadata": {},
            "items": [blocked_document(entry) for entry in BlockedDomain.objects.all()],
        },
    )


def blocked_item(request: HttpRequest, principal: Principal, domain: str) -> HttpResponse:
    entry = BlockedDomain.objects.filter(domain=domain).first()
    if request.method == "DELETE":
        _require_admin(principal, "remove")
        if entry is None:
            raise ApiError(404, f"{domain} is not blocked")
        entry.delete()
        return content.render(request, status_success(f"{domain} is no longer blocked"))
    _require_admin(principal, "read")
    if entry is None:
        raise ApiError(404, f"{domain} is not blocked")
    return content.render(request, blocked_document(entry))
