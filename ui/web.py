"""What every page of the web UI shares: a session, the signed-in user, CSRF protection, errors as pages.

Sessions and CSRF are the UI's alone, so they are applied per view here rather than as global middleware:
the API's bearer-token endpoints stay session-less and csrf-exempt, and pay nothing for the pages. Each page
runs whole (session, user, CSRF check, view, session save) on a worker thread, as the API's endpoints do, so
requests overlap instead of queuing on Django's one sync thread.

A page answers a signed-out visitor with the login page (a redirect), never with data; an ApiError raised
by the services (404 for a site one may not see, 403, 409...) becomes an error page with the same words.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Any, overload
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.utils.decorators import decorator_from_middleware

from api.auth import Principal, principal_for
from api.errors import ApiError
from api.views import in_worker_thread

PageView = Callable[..., HttpResponseBase]
AsyncPage = Callable[..., Coroutine[Any, Any, HttpResponseBase]]

_with_session = decorator_from_middleware(SessionMiddleware)
_with_user = decorator_from_middleware(AuthenticationMiddleware)
_csrf_protected = decorator_from_middleware(CsrfViewMiddleware)

# Scripts only from this server, no inline script at all: text a user controls can never run as one.
# Styles may be inline: the code editor sets its own.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


def secure_headers(response: HttpResponseBase) -> HttpResponseBase:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def principal_of(request: HttpRequest) -> Principal:
    user = request.user
    assert isinstance(user, User), "pages that call services are for signed-in users"
    return principal_for(user)


def error_page(request: HttpRequest, code: int, message: str, title: str = "") -> HttpResponse:
    titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Conflict", 413: "Too large"}
    return render(
        request,
        "ui/error.html",
        {"code": code, "title": title or titles.get(code, "Error"), "message": message},
        status=code,
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A POST without the page's CSRF token: refused, with what to do."""
    response = render(
        request,
        "ui/error.html",
        {
            "code": 403,
            "title": "Form expired",
            "message": "This form was refused because it did not carry this session's security token "
            "(CSRF). Go back, reload the page and submit it again.",
        },
        status=403,
    )
    return secure_headers(response)  # type: ignore[return-value]


def _login_redirect(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect("/login?" + urlencode({"next": request.get_full_path()}))


def _run(view: PageView, *, signed_in: bool, admin: bool) -> Callable[..., HttpResponseBase]:
    """The whole of one page's request, synchronously: session, user, CSRF, the view, errors as pages."""

    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if signed_in and not isinstance(user, User):
            return _login_redirect(request)
        if admin and not principal_of(request).is_admin:
            return error_page(request, 403, "This page is for administrators.")
        try:
            return view(request, *args, **kwargs)
        except ApiError as error:
            return error_page(request, error.code, error.message)
        except Http404 as missing:
            return error_page(request, 404, str(missing) or "There is nothing here.")

    protected = _with_session(_with_user(_csrf_protected(guarded)))

    def run(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return secure_headers(protected(request, *args, **kwargs))

    return run


@overload
def page(view: PageView) -> AsyncPage: ...


@overload
def page(*, signed_in: bool = True, admin: bool = False) -> Callable[[PageView], AsyncPage]: ...


def page(
    view: PageView | None = None, *, signed_in: bool = True, admin: bool = False
) -> AsyncPage | Callable[[PageView], AsyncPage]:
    """Make `view` (a synchronous Django view) a UI page: `@page`, `@page(admin=True)`,
    `@page(signed_in=False)` for the login page."""

    def decorate(function: PageView) -> AsyncPage:
        run = _run(function, signed_in=signed_in, admin=admin)

        @wraps(function)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return await in_worker_thread(run)(request, *args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


def _session_user(request: HttpRequest) -> User | None:
    """The signed-in user of a streaming request (no CSRF: streams only read)."""
    SessionMiddleware(lambda _request: HttpResponse()).process_request(request)
    AuthenticationMiddleware(lambda _request: HttpResponse()).process_request(request)
    user = request.user
    if isinstance(user, AnonymousUser) or not isinstance(user, User):
        return None
    # Resolve the lazy user here, on the worker thread, never on the event loop.
    return user if user.is_active else None


def stream(view: Callable[..., Awaitable[HttpResponseBase]]) -> AsyncPage:
    """An async view streaming to a signed-in user: `view(request, principal, ...)`."""

    @wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = await in_worker_thread(_session_user)(request)
        if user is None:
            return secure_headers(HttpResponse("sign in first", status=401, content_type="text/plain"))
        try:
            principal = await in_worker_thread(principal_for)(user)
            return secure_headers(await view(request, principal, *args, **kwargs))
        except ApiError as error:
            return secure_headers(HttpResponse(error.message, status=error.code, content_type="text/plain"))

    return wrapper


# ---- static files ---------------------------------------------------------------------------------------

_UI_STATIC = Path(__file__).resolve().parent / "static"


def _static_roots() -> dict[str, Path]:
    """URL prefix under /static/ -> directory. htmx ships inside the django-htmx package."""
    roots = {"ui": _UI_STATIC / "ui"}
    try:
        import django_htmx

        roots["htmx"] = Path(django_htmx.__file__).resolve().parent / "static" / "django_htmx"
    except ImportError:
        pass
    return roots


_ROOTS = _static_roots()


async def static_file(request: HttpRequest, path: str) -> HttpResponseBase:
    """The UI's own assets and the packaged ones: nothing is fetched from elsewhere."""
    prefix, _, rest = path.partition("/")
    root = _ROOTS.get(prefix)
    if root is None or not rest or any(part in ("", ".", "..") for part in rest.split("/")):
        return HttpResponse("not found", status=404, content_type="text/plain")
    target = root / rest
    if not target.is_file():
        return HttpResponse("not found", status=404, content_type="text/plain")
    kind, _ = mimetypes.guess_type(target.name)
    stat = os.stat(target)
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponse(status=304)
    else:
        # Small files, read whole: a streamed file would be iterated on a thread chunk by chunk.
        response = HttpResponse(target.read_bytes(), content_type=kind or "application/octet-stream")
    response["ETag"] = etag
    # Revalidated each time (cheap with the ETag), so a rebuilt bundle is seen at once.
    response["Cache-Control"] = "no-cache"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def navigation(request: HttpRequest) -> dict[str, Any]:
    """Template context of every page: who is signed in and whether they administer."""
    user = getattr(request, "user", None)
    domain = settings.DIRECTOR.sites_domain
    if not isinstance(user, User):
        return {"signed_in": None, "nav_admin": False, "sites_domain": domain}
    return {
        "signed_in": user.get_username(),
        "nav_admin": principal_for(user).is_admin,
        "sites_domain": domain,
    }
