"""What kubectl asks of a server besides Director's own resources: the core discovery (`/api`), the version,
OpenAPI v3, who the caller is (`kubectl auth whoami`) and the core events `kubectl describe` lists.

kubectl is a client of the Kubernetes API; Director speaks enough of it that the kubectl people know works
as it is. Nothing here changes anything: the writes go through the sites' and the gitsources' own endpoints.
"""

from __future__ import annotations

import functools
from datetime import datetime
from importlib import metadata
from typing import Any

from django.http import HttpRequest, HttpResponse

from api import content, openapi
from api.auth import ADMIN_GROUP, Principal
from api.errors import ApiError, Cause
from api.gitsources import service as gitsource_service
from api.runtime import event_log, site_service
from api.streams import query_events
from api.views import AUTHENTICATION_GROUP
from store.events import ReconcileEvent

# The Kubernetes API level whose kubectl Director is tested with; /version reports it, with Director's own
# version after `+director`, so kubectl sees no version skew.
KUBERNETES_LEVEL = ("1", "32")
_EVENTS_LIMIT = 500


def _timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@functools.cache
def _director_version() -> str:
    try:
        return metadata.version("director")
    except metadata.PackageNotFoundError:
        return "unknown"


def version(request: HttpRequest, principal: Principal) -> HttpResponse:
    major, minor = KUBERNETES_LEVEL
    return content.render(
        request,
        {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{major}.{minor}.0+director.{_director_version()}",
            "gitCommit": "",
            "gitTreeState": "",
            "buildDate": "",
            "goVersion": "",
            "compiler": "",
            "platform": "linux/amd64",
        },
    )


def core_versions(request: HttpRequest, principal: Principal) -> HttpResponse:
    """`/api`: the core group's versions. kubectl asks before anything else."""
    host = request.get_host()
    return content.render(
        request,
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        },
    )


def core_resources(request: HttpRequest, principal: Principal) -> HttpResponse:
    """`/api/v1`: of the core resources, only the events `kubectl describe` reads (below), as Events of the
    sites and sources. kubectl takes a group version listing no resources for a failed discovery."""
    return content.render(
        request,
        {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "v1",
            "resources": [
                {
                    "name": "events",
                    "singularName": "event",
                    "namespaced": True,
                    "kind": "Event",
                    "verbs": ["list"],
                    "shortNames": ["ev"],
                }
            ],
        },
    )


def authentication_resources(request: HttpRequest, principal: Principal) -> HttpResponse:
    return content.render(
        request,
        {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{AUTHENTICATION_GROUP}/v1",
            "resources": [
                {
                    "name": "selfsubjectreviews",
                    "singularName": "selfsubjectreview",
                    "namespaced": False,
                    "kind": "SelfSubjectReview",
                    "verbs": ["create"],
                }
            ],
        },
    )


def self_subject_review(request: HttpRequest, principal: Principal) -> HttpResponse:
    """Who the token is, as `kubectl auth whoami` shows it: the user name and the groups."""
    groups = [ADMIN_GROUP] if principal.is_admin else []
    extra: dict[str, list[str]] = {}
    if principal.scope:
        extra["director.io/scope"] = [principal.scope]
    if principal.impersonated_by:
        extra["director.io/impersonated-by"] = [principal.impersonated_by]
    return content.render(
        request,
        {
            "kind": "SelfSubjectReview",
            "apiVersion": f"{AUTHENTICATION_GROUP}/v1",
            "metadata": {"creationTimestamp": None},
            "status": {
                "userInfo": {
                    "username": principal.username,
                    "uid": str(principal.user_id),
                    "groups": [*groups, "system:authenticated"],
                    "extra": extra,
                }
            },
        },
        status=201,
    )


def openapi_root(request: HttpRequest, principal: Principal) -> HttpResponse:
    return content.render(request, openapi.root_document())


def openapi_group(request: HttpRequest, principal: Principal) -> HttpResponse:
    response = HttpResponse(openapi.group_document(), content_type=content.JSON)
    # The URL carries the document's hash: a client may keep it as long as it likes.
    if request.GET.get("hash"):
        response["Cache-Control"] = "public, immutable"
    return response


# ---- core events, for kubectl describe ---------------------------------------------------------------


def _field_selector(raw: str) -> dict[str, str]:
    """`involvedObject.name=hello,involvedObject.kind=Site`: the equalities kubectl describe sends."""
    selected: dict[str, str] = {}
    for term in filter(None, raw.split(",")):
        key, separator, value = term.partition("=")
        if not separator or key.endswith("!"):
            raise ApiError(
                400,
                f"fieldSelector {raw!r}: only equalities such as involvedObject.name=NAME are served",
                causes=[Cause("fieldSelector", "KEY=VALUE terms, comma-separated")],
            )
        selected[key.strip()] = value.strip().lstrip("=")
    return selected


def _involved(kind: str, name: str, uid: str | None) -> dict[str, str]:
    return {"apiVersion": openapi.GROUP_VERSION, "kind": kind, "name": name} | ({"uid": uid} if uid else {})


def _core_event(event: ReconcileEvent, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{event.site}.{event.id}",
            "namespace": "default",
            "uid": f"event-{event.id}",
            "creationTimestamp": _timestamp(event.time),
        },
        "involvedObject": _involved(kind, event.site, event.uid),
        # kubectl describe shows the reason and the message beside the event's type and age.
        "reason": f"{event.step}{event.result.capitalize()}" if event.step else event.result.capitalize(),
        "message": " ".join(event.message.split()),
        "type": "Warning" if event.result in ("failed", "stalled") else "Normal",
        "count": event.count,
        "firstTimestamp": _timestamp(event.time),
        "lastTimestamp": _timestamp(event.last_time),
        "source": {"component": "director-controller"},
        "reportingComponent": "director-controller",
    }


def _events_of(
    principal: Principal, selected: dict[str, str], limit: int
) -> tuple[str, list[ReconcileEvent]]:
    name = selected.get("involvedObject.name")
    kind = selected.get("involvedObject.kind") or "Site"
    if name is None:
        return "Site", query_events(principal, None, limit, None)
    if kind == "GitSource":
        uid = gitsource_service(principal).get(name).metadata.uid
    elif kind == "Site":
        uid = site_service(principal).get(name).metadata.uid
    else:
        return kind, []
    wanted = selected.get("involvedObject.uid")
    if uid is None or (wanted and wanted != uid):
        return kind, []
    return kind, event_log().query(name, uid=uid, limit=limit)


def core_events(request: HttpRequest, principal: Principal, namespace: str | None = None) -> HttpResponse:
    """`/api/v1/events`: the reconcile events of a site or a source as core Events, for `kubectl describe`."""
    try:
        limit = min(int(request.GET.get("limit") or _EVENTS_LIMIT), _EVENTS_LIMIT)
    except ValueError:
        raise ApiError(
            400, "limit must be a whole number", causes=[Cause("limit", "a whole number")]
        ) from None
    selected = _field_selector(request.GET.get("fieldSelector", ""))
    kind, events = _events_of(principal, selected, max(1, limit))
    return content.render(
        request,
        {
            "kind": "EventList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": ""},
            "items": [_core_event(event, kind) for event in reversed(events)],
        },
    )
