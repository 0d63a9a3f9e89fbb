"""HTTP for GitSources and secrets, authenticated like every other resource (api/views.py's endpoint)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from api import gitsources, secrets
from api.auth import Principal
from api.views import delete_options, endpoint, write_options


@endpoint("GET", "PATCH", "DELETE", dry_run=True)
def gitsource_item(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    if request.method == "DELETE":
        options, precondition = delete_options(request)
        return gitsources.item(request, principal, name, options, precondition)
    return gitsources.item(request, principal, name, write_options(request))


@endpoint("GET")
def gitsource_events(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    return gitsources.events(request, principal, name)


@endpoint("GET", "POST")
def secret_collection(request: HttpRequest, principal: Principal) -> HttpResponse:
    return secrets.collection(request, principal)


@endpoint("GET", "DELETE")
def secret_item(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    return secrets.item(request, principal, name)
