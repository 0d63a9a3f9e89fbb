"""The web terminal's page and its assets: a minimal page a site's UI page can stand in for by including
templates/ui/terminal_partial.html. The session itself is the websocket of api/terminal_socket.py.

xterm.js comes from the npm registry at setup (`npm ci`, package-lock.json), into node_modules/; it is served
from there, never from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.template import Context, Engine

from api.terminal_socket import session_user

ROOT = Path(__file__).resolve().parent.parent
ASSETS_URL = "/ui/assets/terminal/"
# The only files served, by name: nothing else of node_modules is reachable.
ASSETS = {
    "xterm.js": (ROOT / "node_modules/@xterm/xterm/lib/xterm.js", "text/javascript"),
    "xterm.css": (ROOT / "node_modules/@xterm/xterm/css/xterm.css", "text/css"),
    "addon-fit.js": (ROOT / "node_modules/@xterm/addon-fit/lib/addon-fit.js", "text/javascript"),
    "terminal.js": (Path(__file__).resolve().parent / "static/ui/terminal.js", "text/javascript"),
}
_templates = Engine(dirs=[str(Path(__file__).resolve().parent / "templates")], autoescape=True)


def terminal_page(request: HttpRequest, name: str) -> HttpResponse:
    """The terminal of site `name` for the person logged in (the websocket decides whether they may enter)."""
    if session_user(request.headers.get("Cookie", "")) is None:
        return HttpResponse("log in to Director first\n", status=401, content_type="text/plain")
    page = _templates.get_template("ui/terminal_page.html").render(
        Context({"site": name, "assets": ASSETS_URL})
    )
    return HttpResponse(page)


def terminal_asset(request: HttpRequest, name: str) -> FileResponse:
    found = ASSETS.get(name)
    if found is None or not found[0].is_file():
        missing = "" if found is None else " (run `make setup`: npm ci installs xterm.js)"
        raise Http404(f"no terminal asset {name}{missing}")
    path, content_type = found
    response = FileResponse(path.open("rb"), content_type=content_type)
    response["Cache-Control"] = "max-age=3600"
    return response
