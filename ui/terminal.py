"""The web terminal's page and its assets. The session itself is the websocket of api/terminal_socket.py,
which checks the session, the origin and whether the person may enter the site.

xterm.js comes from the npm registry at setup (`npm ci`, package-lock.json), into node_modules/; it is served
from there, never from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from api.runtime import site_service
from ui.web import page, principal_of

ROOT = Path(__file__).resolve().parent.parent
ASSETS_URL = "/assets/terminal/"
# The only files served, by name: nothing else of node_modules is reachable.
ASSETS = {
    "xterm.js": (ROOT / "node_modules/@xterm/xterm/lib/xterm.js", "text/javascript"),
    "xterm.css": (ROOT / "node_modules/@xterm/xterm/css/xterm.css", "text/css"),
    "addon-fit.js": (ROOT / "node_modules/@xterm/addon-fit/lib/addon-fit.js", "text/javascript"),
    "terminal.js": (Path(__file__).resolve().parent / "static/ui/terminal.js", "text/javascript"),
}


@page
def terminal_page(request: HttpRequest, name: str) -> HttpResponse:
    """The terminal of site `name` (404 for a site one may not see; the websocket decides who may enter)."""
    site = site_service(principal_of(request)).get(name)
    return render(request, "ui/terminal_page.html", {"site": site.name, "assets": ASSETS_URL})


def terminal_asset(request: HttpRequest, name: str) -> FileResponse:
    found = ASSETS.get(name)
    if found is None or not found[0].is_file():
        missing = "" if found is None else " (run `make setup`: npm ci installs xterm.js)"
        raise Http404(f"no terminal asset {name}{missing}")
    path, content_type = found
    response = FileResponse(path.open("rb"), content_type=content_type)
    response["Cache-Control"] = "max-age=3600"
    return response
