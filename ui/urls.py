"""The manager's URL space: the API (`/apis/...`), the shell server's endpoints, the web UI at the root."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from api import errors
from ui import accounts, adminpages, filepages, live, sitepages, terminal, web

SITE = "sites/<str:name>"

ui_patterns = [
    path("", sitepages.sites),
    path("login", accounts.login),
    path("logout", accounts.logout),
    path("account/password", accounts.password),
    path("create", sitepages.create),
    path("create/check", sitepages.create_check),
    path("create/yaml", sitepages.yaml_create),
    path("create/yaml/check", sitepages.yaml_check),
    path(SITE, sitepages.site_page),
    path(f"{SITE}/edit", sitepages.edit),
    path(f"{SITE}/check", sitepages.edit_check),
    path(f"{SITE}/yaml", sitepages.yaml_edit),
    path(f"{SITE}/yaml/check", sitepages.yaml_check),
    path(f"{SITE}/reconcile", sitepages.reconcile),
    path(f"{SITE}/restart", sitepages.restart),
    path(f"{SITE}/history", sitepages.history),
    path(f"{SITE}/rollback", sitepages.rollback),
    path(f"{SITE}/delete", sitepages.delete),
    path(f"{SITE}/files", filepages.files),
    path(f"{SITE}/files/edit", filepages.edit),
    path(f"{SITE}/files/download", filepages.download),
    path(f"{SITE}/files/upload", filepages.upload),
    path(f"{SITE}/files/folder", filepages.make_folder),
    path(f"{SITE}/files/new", filepages.new_file),
    path(f"{SITE}/files/rename", filepages.rename),
    path(f"{SITE}/files/delete", filepages.delete),
    path(f"{SITE}/files/executable", filepages.executable),
    path("live/sites", live.sites_stream),
    path(f"live/{SITE}/events", live.events_stream),
    path(f"live/{SITE}/logs", live.logs_stream),
    path("admin/users", adminpages.user_list),
    path("admin/tokens", adminpages.tokens),
    path("admin/availability", adminpages.availability),
    path("admin/platform", adminpages.platform),
    path(f"{SITE}/terminal", terminal.terminal_page),
    path("assets/terminal/<str:name>", terminal.terminal_asset),
    path("static/<path:path>", web.static_file),
]

urlpatterns = [
    path("", include("api.urls")),
    *ui_patterns,
]


# The first path segment of every URL space of the API, whose callers are programs: a webhook sender and the
# controller as much as dirctl.
API_ROOTS = frozenset({"apis", "shell-server", "controller", "hooks"})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """A Status object for API clients, a page for people."""
    if request.path.split("/", 2)[1] in API_ROOTS:
        return errors.not_found_view(request, exception)
    return HttpResponse(
        "<!doctype html><title>Not found</title><h1>Not found</h1><p>There is no page here. "
        '<a href="/">Back to your sites</a></p>',
        status=404,
    )


handler400 = errors.bad_request_view
handler403 = errors.forbidden_view
handler404 = not_found
handler500 = errors.server_error_view
