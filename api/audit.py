"""The record of accepted writes to sites (api/models.py's WriteRecord, written by api/sites.py with each
write), read back: `dirctl get writes [--site NAME] [--user NAME]` and `dirctl rollout history site NAME`.

An administrator reads every write; anyone else the writes to the sites they may read now, so a site's
owners see who changed it (a GitSource's writes included: its applyAs user, through `gitsource-NAME`).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from api import content
from api.auth import Principal
from api.errors import ApiError, Cause
from api.models import WriteRecord
from api.runtime import site_service
from api.views import endpoint
from specs.models import API_VERSION

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def write_document(record: WriteRecord) -> dict[str, Any]:
    return {
        "time": record.time.isoformat().replace("+00:00", "Z"),
        "user": record.username,
        "site": record.site,
        "operation": record.operation,
        "fieldManager": record.field_manager,
        "generation": record.generation,
        "resourceVersion": record.resource_version,
    }


def _limit(raw: str | None) -> int:
    if not raw:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(
            400,
            f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}",
            causes=[Cause("limit", f"1 to {MAX_LIMIT}")],
        )
    return int(raw)


def writes(principal: Principal, *, site: str | None, user: str | None, limit: int) -> list[WriteRecord]:
    """The latest `limit` writes the principal may see, newest first."""
    records = WriteRecord.objects.all()
    if site is not None:
        site_service(principal).get(site)  # 404 for a site this caller may not read, as for an absent one
        records = records.filter(site=site)
    elif not principal.is_admin:
        records = records.filter(site__in=[each.name for each in site_service(principal).list()])
    if user is not None:
        records = records.filter(username=user)
    return list(records.order_by("-id")[:limit])


@endpoint("GET")
def write_list(request: HttpRequest, principal: Principal) -> HttpResponse:
    found = writes(
        principal,
        site=request.GET.get("site") or None,
        user=request.GET.get("user") or None,
        limit=_limit(request.GET.get("limit")),
    )
    return content.render(
        request,
        {
            "apiVersion": API_VERSION,
            "kind": "WriteList",
            "metadata": {},
            "items": [write_document(record) for record in found],
        },
    )
