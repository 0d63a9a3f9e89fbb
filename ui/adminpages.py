"""Administrators' pages: users, tokens, sites by availability, and the platform (the edge on each node, the
controller holding the leader lock, its last resync and queue depth). Non-admins get 403."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone

from api import users
from api.auth import revoke_token
from api.errors import ApiError
from api.models import ApiToken
from api.platforms import controller_report, edge_platform
from api.runtime import site_service
from ui.live import site_state
from ui.web import page, principal_of


@page(admin=True)
def user_list(request: HttpRequest) -> HttpResponse:
    principal = principal_of(request)
    problem, shown_password, status = "", None, 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        username = request.POST.get("username", "").strip()
        try:
            shown_password = _user_action(principal, action, username, request.POST)
        except ApiError as error:
            problem, status = error.message, error.code
        else:
            if shown_password is None:
                return HttpResponseRedirect("/admin/users")
    return render(
        request,
        "ui/admin_users.html",
        {
            "users": users.list_users(principal),
            "problem": problem,
            "shown_password": shown_password,
            "me": principal.username,
        },
        status=status,
    )


def _user_action(principal: Any, action: str, username: str, form: Any) -> tuple[str, str] | None:
    """Do one action; a (user, password) to show once when a password was made."""
    if action == "create":
        _info, password = users.create_user(
            principal, username, form.get("password") or None, admin=form.get("admin") == "on"
        )
        return (username, password) if not form.get("password") else None
    if action == "disable":
        users.set_active(principal, username, False)
    elif action == "enable":
        users.set_active(principal, username, True)
    elif action == "reset":
        password = users.reset_password(principal, username, form.get("password") or None)
        return (username, password) if not form.get("password") else None
    elif action == "make-admin":
        users.set_admin(principal, username, True)
    elif action == "unmake-admin":
        users.set_admin(principal, username, False)
    else:
        raise ApiError(400, f"unknown action {action!r}")
    return None


@page(admin=True)
def tokens(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        token = ApiToken.objects.filter(pk=request.POST.get("token", "0") or 0, revoked__isnull=True).first()
        if token is not None:
            revoke_token(token)
        return HttpResponseRedirect("/admin/tokens")
    listed = (
        ApiToken.objects.select_related("user")
        .filter(revoked__isnull=True, expires__gt=timezone.now())
        .order_by("user__username", "id")
    )
    return render(request, "ui/admin_tokens.html", {"tokens": listed})


@page(admin=True)
def availability(request: HttpRequest) -> HttpResponse:
    principal = principal_of(request)
    sites = [site for site in site_service(principal).list() if site.spec.availability != "enabled"]
    return render(
        request,
        "ui/admin_availability.html",
        {"rows": [(site, site_state(site)) for site in sites[:1000]], "total": len(sites)},
    )


@page(admin=True)
def platform(request: HttpRequest) -> HttpResponse:
    principal = principal_of(request)
    record = edge_platform(principal)
    status = record.status if record is not None else None
    edge = status.platform if status is not None else None
    return render(
        request,
        "ui/admin_platform.html",
        {
            "record": record,
            "conditions": list(status.conditions) if status is not None else [],
            "edge": edge,
            "controller": controller_report(principal),
        },
    )
