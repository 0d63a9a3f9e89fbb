"""The manager's URL space: the API and the shell server's endpoints now, the web UI later."""

from __future__ import annotations

from django.urls import include, path

from api import errors
from ui import terminal

urlpatterns = [
    path("", include("api.urls")),
    path("ui/sites/<str:name>/terminal", terminal.terminal_page),
    path("ui/assets/terminal/<str:name>", terminal.terminal_asset),
]

handler400 = errors.bad_request_view
handler403 = errors.forbidden_view
handler404 = errors.not_found_view
handler500 = errors.server_error_view
