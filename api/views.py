"""HTTP for the Kubernetes-shaped Site resource, discovery, and tokens.

Streaming endpoints (watch, events with watch, logs) are in api/streams.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from api import content, domains, fields, listing, platforms
from api.auth import (
    EXPIRES_IN_FIELD,
    Principal,
    authenticate_request,
    issue_token,
    revoke_token,
    token_expiry,
    user_from_basic_auth,
)
from api.errors import ApiError, Cause, method_not_allowed, status_success
from api.models import ApiToken
from api.runtime import site_service
from api.selectors import name_selector, parse_label_selector
from api.sites import WriteOptions, document_of
from specs.models import API_VERSION, Site

GROUP = "director.io"
VERSION = "v1"
AUTH_GROUP_VERSION = "auth.director.io/v1"
# Kubernetes' own group kubectl asks who it is in (`kubectl auth whoami`): api/kube.py.
AUTHENTICATION_GROUP = "authentication.k8s.io"
OUTCOME_HEADER = "Director-Outcome"

T = TypeVar("T")
View = Callable[..., Coroutine[Any, Any, HttpResponse]]


def endpoint(*methods: str, dry_run: bool = False) -> Callable[[Callable[..., HttpResponse]], View]:
    """Authenticate the caller, then dispatch; every path answers 405 for a method it does not serve, and a
    write that cannot be tried without being done (`dry_run` False) refuses `dryRun` rather than do it."""

    def decorate(view: Callable[..., HttpResponse]) -> View:
        def handle(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            principal = authenticate_request(request)
            if request.method not in methods:
                return method_not_allowed(request, list(methods))
            if not dry_run:
                refuse_dry_run(request)
            return view(request, principal, *args, **kwargs)

        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return await in_worker_thread(handle)(request, *args, **kwargs)

        return wrapper

    return decorate


def refuse_dry_run(request: HttpRequest) -> None:
    """400 for a dry run of a write that cannot be tried without being done: never do it for real. A DELETE
    may ask for one in its body too (DeleteOptions, as `kubectl delete --dry-run=server` sends them)."""
    if request.method != "GET" and ("dryRun" in request.GET or _dry_run_in_body(request)):
        raise ApiError(
            400,
            f"{request.method} {request.path} cannot be tried without being done: leave out dryRun",
            causes=[Cause("dryRun", "not supported here")],
        )


def _dry_run_in_body(request: HttpRequest) -> bool:
    if request.method != "DELETE" or not request.body.strip():
        return False
    body = content.parse_body(request)
    return isinstance(body, dict) and "dryRun" in body


def in_worker_thread(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Run blocking work (records, database) on the thread pool rather than Django's one sync thread, so
    requests overlap; each thread keeps its own database connection, health-checked per call.

    Handed to the loop's executor directly, in a copy of the caller's context, rather than through asgiref's
    sync_to_async: its bookkeeping (context carried back, a shielded future, the tasks of async code called
    back from the thread) serves sync code that calls async code, which none here does, and costs about as
    much as the hop itself on every request. Cancelled (the client went away), a call not started yet never
    runs, and one running finishes unobserved, as with sync_to_async.
    """

    async def call(*args: Any, **kwargs: Any) -> T:
        run = functools.partial(contextvars.copy_context().run, _with_checked_connections, function, *args)
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(run, **kwargs))

    return call


def _with_checked_connections(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    close_old_connections()
    return function(*args, **kwargs)


def query_flag(request: HttpRequest, name: str) -> bool:
    value = request.GET.get(name, "").lower()
    if value in ("", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise ApiError(400, f"{name} must be true or false, got {value!r}", causes=[Cause(name, "true or false")])


# kubectl sends fieldValidation=Strict (or Warn, Ignore). Director's models refuse unknown and duplicate
# fields whatever is asked: a field silently dropped could be a limit a person thinks is set.
FIELD_VALIDATION_CHOICES = ("Strict", "Warn", "Ignore")


def write_options(request: HttpRequest) -> WriteOptions:
    validation = request.GET.get("fieldValidation")
    if validation is not None and validation not in FIELD_VALIDATION_CHOICES:
        raise ApiError(
            400,
            f"fieldValidation must be Strict, Warn or Ignore, got {validation!r}",
            causes=[Cause("fieldValidation", "Strict, Warn or Ignore")],
        )
    dry_run = request.GET.getlist("dryRun")
    if any(value != "All" for value in dry_run):
        raise ApiError(400, "dryRun must be All", causes=[Cause("dryRun", "the only value is All")])
    return WriteOptions(
        field_manager=request.GET.get("fieldManager") or fields.DEFAULT_UPDATE_MANAGER,
        dry_run=bool(dry_run),
        force=query_flag(request, "force"),
    )


def site_list_document(sites: list[Site]) -> dict[str, Any]:
    versions = [int(site.metadata.resource_version or 0) for site in sites]
    return {
        "apiVersion": API_VERSION,
        "kind": "SiteList",
        "metadata": {"resourceVersion": str(max(versions, default=0))},
        "items": [document_of(site) for site in sites],
    }


# ---- discovery --------------------------------------------------------------------------------------


@endpoint("GET")
def discovery_root(request: HttpRequest, principal: Principal) -> HttpResponse:
    groups = []
    for group in (GROUP, AUTHENTICATION_GROUP):
        version = {"groupVersion": f"{group}/{VERSION}", "version": VERSION}
        groups.append({"name": group, "versions": [version], "preferredVersion": version})
    return content.render(request, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})


@endpoint("GET")
def discovery_group(request: HttpRequest, principal: Principal) -> HttpResponse:
    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    return content.render(
        request,
        {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{GROUP}/{VERSION}",
            "resources": [
                {
                    "name": "sites",
                    "singularName": "site",
                    "namespaced": False,
                    "kind": "Site",
                    "verbs": verbs,
                    # `kubectl get director` lists Director's own kinds.
                    "categories": ["director"],
                },
                {
                    "name": "sites/status",
                    "singularName": "",
                    "namespaced": False,
                    "kind": "Site",
                    "verbs": ["get"],
                },
                {
                    "name": "sites/events",
                    "singularName": "",
                    "namespaced": False,
                    "kind": "EventList",
                    "verbs": ["get", "watch"],
                },
                {
                    "name": "sites/logs",
                    "singularName": "",
                    "namespaced": False,
                    "kind": "Logs",
                    "verbs": ["get"],
                },
                {
                    "name": "sites/history",
                    "singularName": "",
                    "namespaced": False,
                    "kind": "SiteList",
                    "verbs": ["get"],
                },
                {
                    "name": "platforms",
                    "singularName": "platform",
                    "namespaced": False,
                    "kind": "Platform",
                    "verbs": ["get", "list"],
                },
                {
                    "name": "blockeddomains",
                    "singularName": "blockeddomain",
                    "namespaced": False,
                    "kind": domains.BLOCKED_KIND,
                    "verbs": ["create", "delete", "get", "list"],
                },
                {
                    "name": "events",
                    "singularName": "",
                    "namespaced": False,
                    "kind": "EventList",
                    "verbs": ["list", "watch"],
                },
                {
                    "name": "gitsources",
                    "singularName": "gitsource",
                    "namespaced": False,
                    "kind": "GitSource",
                    "verbs": ["create", "delete", "get", "list", "patch"],
                    "categories": ["director"],
                },
                {
                    "name": "secrets",
                    "singularName": "secret",
                    "namespaced": False,
                    "kind": "Secret",
                    "verbs": ["create", "delete", "get", "list"],
                },
            ],
        },
    )


# ---- sites ------------------------------------------------------------------------------------------


def list_sites(request: HttpRequest, principal: Principal) -> HttpResponse:
    selector = request.GET.get("labelSelector")
    label_filter = parse_label_selector(selector) if selector else None
    sites = site_service(principal).list(label_filter)
    only_name = name_selector(request.GET.get("fieldSelector"))
    if only_name is not None:
        sites = [site for site in sites if site.name == only_name]
    if listing.wants_table(request.headers.get("Accept", "")):
        include = listing.include_object(request.GET.get("includeObject"))
        if content.wants_yaml(request):
            return content.render(request, listing.site_table(sites, include=include))
        return HttpResponse(listing.site_table_json(sites, include), content_type=content.JSON)
    if content.wants_yaml(request):
        return content.render(request, site_list_document(sites))
    return HttpResponse(listing.site_list_json(sites), content_type=content.JSON)


def create_site(request: HttpRequest, principal: Principal) -> HttpResponse:
    site = site_service(principal).create(content.parse_body(request), write_options(request))
    return content.render(request, document_of(site), status=201)


@endpoint("GET", "PUT", "PATCH", "DELETE", dry_run=True)
def site_item(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    service = site_service(principal)
    if request.method == "GET":
        site = service.get(name)
        if listing.wants_table(request.headers.get("Accept", "")):
            # `kubectl get site NAME` asks for one row, with the listing's columns.
            include = listing.include_object(request.GET.get("includeObject"))
            return content.render(request, listing.site_table([site], include=include))
        return content.render(request, document_of(site))
    if request.method == "PUT":
        site = service.replace(name, content.parse_body(request), write_options(request))
        return content.render(request, document_of(site))
    if request.method == "PATCH":
        kind = content.media_type(request)
        if kind in (content.APPLY_PATCH_YAML, content.APPLY_PATCH_JSON):
            site, outcome = service.apply(name, content.parse_body(request), write_options(request))
            response = content.render(request, document_of(site), status=201 if outcome == "created" else 200)
            # What happened, for clients that print "created", "configured" or "unchanged" as kubectl does.
            response[OUTCOME_HEADER] = outcome
            return response
        if kind in (content.MERGE_PATCH, content.JSON):
            site = service.merge_patch(name, content.parse_body(request), write_options(request))
            return content.render(request, document_of(site))
        raise ApiError(
            415,
            f"PATCH takes {content.MERGE_PATCH} or {content.APPLY_PATCH_YAML} (server-side apply), "
            f"not {kind!r}",
        )
    remaining = service.delete(name, *delete_options(request))
    if remaining is not None:
        return content.render(request, document_of(remaining), status=202)
    return content.render(request, status_success(f'site "{name}" deleted', name=name))


def delete_options(request: HttpRequest) -> tuple[WriteOptions, str | None]:
    """A DELETE's options and the resourceVersion it is conditional on, from the query and from a body of
    DeleteOptions (what Kubernetes clients send: `preconditions`, `dryRun: [All]`). Options of another shape
    are refused, never taken for none: a dry run taken for none would delete."""
    options = write_options(request)
    precondition = request.GET.get("resourceVersion") or None
    if not request.body.strip():
        return options, precondition
    body = content.parse_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "the body of a DELETE must be DeleteOptions (a mapping), such as {}")
    dry_run = body.get("dryRun")
    if dry_run is not None and (not isinstance(dry_run, list) or any(value != "All" for value in dry_run)):
        raise ApiError(
            400, "DeleteOptions dryRun must be [All]", causes=[Cause("dryRun", "the only value is All")]
        )
    if dry_run:
        options = replace(options, dry_run=True)
    preconditions = body.get("preconditions")
    if preconditions is None:
        return options, precondition
    given = preconditions.get("resourceVersion") if isinstance(preconditions, dict) else None
    if not isinstance(preconditions, dict) or not isinstance(given, str | None):
        rule = 'a mapping such as {resourceVersion: "42"}, the version a string'
        raise ApiError(
            400, f"DeleteOptions preconditions must be {rule}", causes=[Cause("preconditions", rule)]
        )
    return options, given or precondition


@endpoint("GET")
def site_status(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    site = site_service(principal).get(name)
    return content.render(request, document_of(site))


@endpoint("GET")
def site_history(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    history = site_service(principal).history(name)
    return content.render(
        request,
        {
            "apiVersion": API_VERSION,
            "kind": "SiteList",
            "metadata": {},
            "items": [document_of(site, include_status=False) for site in history],
        },
    )


@endpoint("GET")
def platform_list(request: HttpRequest, principal: Principal) -> HttpResponse:
    return platforms.platforms(request, principal)


@endpoint("GET")
def platform_item(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    return platforms.platform(request, principal, name)


@endpoint("GET", "POST")
def blocked_domains(request: HttpRequest, principal: Principal) -> HttpResponse:
    return domains.blocked_collection(request, principal)


@endpoint("GET", "DELETE")
def blocked_domain(request: HttpRequest, principal: Principal, domain: str) -> HttpResponse:
    return domains.blocked_item(request, principal, domain)


# ---- tokens -----------------------------------------------------------------------------------------


def token_document(token: ApiToken, secret: str | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "scope": token.scope,
        "user": token.user.get_username(),
        "created": token.created.isoformat(),
        "expires": token.expires.isoformat(),
        # The token this one was made with: it ends, or is revoked, no later than that one.
        "parent": token.parent_id,
        "lastUsed": token.last_used.isoformat() if token.last_used else None,
    }
    if secret is not None:
        document["token"] = secret
    return document


@csrf_exempt
def login(request: HttpRequest) -> HttpResponse:
    """Exchange a user name and password (HTTP Basic) for a new API token: what `dirctl login` calls.

    Passwords only: a token that could make an unrelated token here would outlive its own revocation. A token
    makes another, bound to it, with POST .../tokens.
    """
    if request.method != "POST":
        return method_not_allowed(request, ["POST"])
    refuse_dry_run(request)
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        raise ApiError(
            401,
            "log in with a user name and password (HTTP Basic), not a token; to make another token with this "
            "one, POST /apis/auth.director.io/v1/tokens",
            headers={"WWW-Authenticate": 'Basic realm="director"'},
        )
    user = user_from_basic_auth(request)
    name = request.GET.get("tokenName") or "dirctl"
    token, secret = issue_token(user, name[:64])
    return content.render(request, token_document(token, secret) | {"kind": "Token"}, status=201)


_TOKEN_REQUEST_FIELDS = ("name", EXPIRES_IN_FIELD)


def _token_request(request: HttpRequest) -> tuple[str, object]:
    """The name and the asked lifetime (None: the longest) of POST .../tokens."""
    body = content.parse_body(request) if request.body.strip() else {}
    if not isinstance(body, dict):
        raise ApiError(422, f"the body must be a mapping with {' and/or '.join(_TOKEN_REQUEST_FIELDS)}")
    unknown = sorted(str(key) for key in body if key not in _TOKEN_REQUEST_FIELDS)
    if unknown:
        raise ApiError(
            422,
            f"unknown field(s) {', '.join(unknown)}; a token request has {', '.join(_TOKEN_REQUEST_FIELDS)}",
            causes=[Cause(field, "unknown field") for field in unknown],
        )
    name = body.get("name", "api")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise ApiError(422, "name must be a text of 1 to 64 characters", causes=[Cause("name", "1-64 chars")])
    return name, body.get(EXPIRES_IN_FIELD)


def _token_owner(request: HttpRequest, principal: Principal) -> User | None:
    """Whose tokens `?user=NAME` asks for: another user's only for an admin. None: the caller's own."""
    username = request.GET.get("user")
    if not username or username == principal.username:
        return None
    if not principal.is_admin:
        raise ApiError(
            403,
            f'user "{principal.username}" may not manage the tokens of "{username}": admins only',
            causes=[Cause("user", "only admins name another user")],
        )
    owner = User.objects.filter(username=username).first()
    if owner is None:
        raise ApiError(404, f'no user is named "{username}"', causes=[Cause("user", "no such user")])
    return owner


@endpoint("GET", "POST")
def tokens(request: HttpRequest, principal: Principal) -> HttpResponse:
    if principal.is_component:
        raise ApiError(403, "a component credential may not manage tokens")
    owner = _token_owner(request, principal)
    if request.method == "POST":
        name, expires_in = _token_request(request)
        if owner is not None:
            # An admin's token for another user: it is theirs, not made with one of theirs, so it has no
            # parent and ends when asked (at most the configured lifetime).
            token, secret = issue_token(owner, name, expires=token_expiry(expires_in, None))
        else:
            parent = ApiToken.objects.select_related("user").get(pk=principal.token_id)
            expires = token_expiry(expires_in, parent)
            token, secret = issue_token(parent.user, name, expires=expires, parent=parent)
        return content.render(request, token_document(token, secret) | {"kind": "Token"}, status=201)
    listed = ApiToken.objects.select_related("user").filter(
        user_id=owner.pk if owner is not None else principal.user_id,
        revoked__isnull=True,
        expires__gt=timezone.now(),
    )
    return content.render(
        request,
        {
            "kind": "TokenList",
            "apiVersion": AUTH_GROUP_VERSION,
            "items": [token_document(t) for t in listed],
        },
    )


@endpoint("DELETE")
def token_item(request: HttpRequest, principal: Principal, token_id: int) -> HttpResponse:
    if principal.is_component:
        raise ApiError(403, "a component credential may not manage tokens")
    token = ApiToken.objects.filter(pk=token_id, revoked__isnull=True).first()
    if token is None or (token.user_id != principal.user_id and not principal.is_admin):
        raise ApiError(404, f"token {token_id} not found")
    revoke_token(token)
    return content.render(request, status_success(f"token {token_id} revoked"))
