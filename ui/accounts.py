"""Signing in and out, and changing one's password. The login checks the password through the API's own
throttled check (api.auth.user_from_password), so failed logins wait alike at the API, the shell server and
here."""

from __future__ import annotations

from django.contrib.auth import login as start_session
from django.contrib.auth import logout as end_session
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from api.auth import client_address, user_from_password
from api.errors import ApiError
from api.users import change_own_password
from ui.web import page


def _next_url(request: HttpRequest) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or "/"
    # Only a path on this server: a login link must not send people elsewhere.
    if not url_has_allowed_host_and_scheme(wanted, allowed_hosts=None) or not wanted.startswith("/"):
        return "/"
    return wanted


@page(signed_in=False)
def login(request: HttpRequest) -> HttpResponse:
    if isinstance(request.user, User) and request.method != "POST":
        return HttpResponseRedirect(_next_url(request))
    problem = ""
    username = ""
    status = 200
    if request.method == "POST":
        username = request.POST.get("username", "").strip()
        password = request.POST.get("password", "")
        try:
            user = user_from_password(username, password, client_address(request))
        except ApiError as error:
            problem, status = error.message, error.code
        else:
            start_session(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return HttpResponseRedirect(_next_url(request))
    return render(
        request,
        "ui/login.html",
        {"problem": problem, "username": username, "next": _next_url(request)},
        status=status,
    )


@page(signed_in=False)
def logout(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        end_session(request)
    return HttpResponseRedirect("/login")


@page
def password(request: HttpRequest) -> HttpResponse:
    problem = ""
    done = False
    status = 200
    if request.method == "POST":
        user = request.user
        assert isinstance(user, User)
        new = request.POST.get("new_password", "")
        if new != request.POST.get("new_password_again", ""):
            problem, status = "The two new passwords differ: type the same one twice.", 422
        else:
            try:
                change_own_password(user, request.POST.get("old_password", ""), new)
            except ApiError as error:
                problem, status = error.message, error.code
            else:
                # This session stays signed in; every other session of this user ends.
                update_session_auth_hash(request, user)
                done = True
    return render(request, "ui/password.html", {"problem": problem, "done": done}, status=status)
