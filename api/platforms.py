"""The Platform record, read-only: `GET /apis/director.io/v1/platforms[/edge]`.

Director writes the platform's spec from its settings and the controller writes its status; nobody writes
it through the API. Every signed-in user may read it: whether the edge is up on every node is what a
student needs to know before wondering what is wrong with their own site, and it holds no secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from api import content
from api.auth import Principal
from api.errors import ApiError
from api.runtime import platform_store
from specs.models import API_VERSION
from specs.platform import Platform
from store.records import InvalidRecord, NotFound


def _readable(principal: Principal) -> None:
    if principal.is_component:
        raise ApiError(403, f'the component credential of "{principal.username}" may not read the platform')


def platform_document(platform: Platform) -> dict[str, Any]:
    return platform.to_document()


def platforms(request: HttpRequest, principal: Principal) -> HttpResponse:
    _readable(principal)
    records, _errors = platform_store().list()
    versions = [int(record.metadata.resource_version or 0) for record in records]
    return content.render(
        request,
        {
            "apiVersion": API_VERSION,
            "kind": "PlatformList",
            "metadata": {"resourceVersion": str(max(versions, default=0))},
            "items": [platform_document(record) for record in records],
        },
    )


def platform(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    _readable(principal)
    try:
        record = platform_store().get(name)
    except NotFound:
        raise ApiError(
            404, f'platform "{name}" not found: the controller creates "edge" when it starts'
        ) from None
    except InvalidRecord as error:
        raise ApiError(500, f'the record of platform "{name}" cannot be read: {error}') from None
    return content.render(request, platform_document(record))


# The controller writes who holds its leader lock, and its last resync, to this file in the state directory
# (controller/leader.py); the API only reads it, as a person would with `cat`.
CONTROLLER_REPORT = "controller.yaml"


@dataclass(frozen=True)
class ControllerReport:
    """Who holds the controller's leader lock, who waits, and the holder's last resync, as last reported."""

    holder: dict[str, Any] | None
    waiting: list[dict[str, Any]]
    updated: str | None
    last_resync: str | None
    queue_depth: int | None


def controller_report(principal: Principal) -> ControllerReport:
    _readable(principal)
    try:
        document = yaml.safe_load((settings.STATE_DIR / CONTROLLER_REPORT).read_text())
    except (FileNotFoundError, yaml.YAMLError):
        document = None
    if not isinstance(document, dict):
        return ControllerReport(None, [], None, None, None)
    holder = document.get("holder")
    waiting = document.get("waiting")
    progress = document.get("progress")
    progress = progress if isinstance(progress, dict) else {}
    depth = progress.get("queueDepth")
    return ControllerReport(
        holder=holder if isinstance(holder, dict) else None,
        waiting=[item for item in waiting if isinstance(item, dict)] if isinstance(waiting, list) else [],
        updated=str(document["updated"]) if document.get("updated") else None,
        last_resync=str(progress["lastResync"]) if progress.get("lastResync") else None,
        queue_depth=depth if isinstance(depth, int) else None,
    )


def edge_platform(principal: Principal) -> Platform | None:
    """The platform record, or None before the controller first made it."""
    _readable(principal)
    try:
        return platform_store().get("edge")
    except (NotFound, InvalidRecord):
        return None
