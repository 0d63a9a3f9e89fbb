"""The Platform record, read-only: `GET /apis/director.io/v1/platforms[/edge]`.

Director writes the platform's spec from its settings and the controller writes its status; nobody writes
it through the API. Every signed-in user may read it: whether the edge is up on every node is what a
student needs to know before wondering what is wrong with their own site, and it holds no secret.
"""

from __future__ import annotations

from typing import Any

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
