"""The file manager of a site: a tree of public/, private/ and the top (run.sh), a text editor, uploads,
downloads, new files and folders, rename, delete and the executable bit.

Every operation is the API's (api.files.SiteFilesService) with the signed-in person's principal: the same
confinement to the site's directory, the same authorization, the same upload limit, the same words.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import render

from api.errors import ApiError
from api.files import MAX_EDIT_BYTES, SiteFilesService, Upload, mebibytes
from specs.config import Settings
from store.sitefiles import Entry
from ui.web import page, principal_of

TREE_DEPTH = 6
_LANGUAGES = {
    ".html": "html",
    ".htm": "html",
    ".css": "css",
    ".js": "javascript",
    ".mjs": "javascript",
    ".json": "json",
    ".py": "python",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".sh": "shell",
}
_CHUNK = 256 * 1024


def _service(request: HttpRequest) -> SiteFilesService:
    return SiteFilesService(principal_of(request))


def _folder_of(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _flatten(entries: list[Entry], depth: int = 0) -> list[tuple[Entry, int]]:
    rows: list[tuple[Entry, int]] = []
    for entry in entries:
        rows.append((entry, depth))
        if entry.children:
            rows.extend(_flatten(list(entry.children), depth + 1))
    return rows


def _files_page(
    request: HttpRequest, name: str, *, problem: str = "", status: int = 200, done: str = ""
) -> HttpResponse:
    service = _service(request)
    site = service.site(name)
    tree_problem = ""
    try:
        rows = _flatten(service.entries(name, "", TREE_DEPTH))
    except ApiError as error:
        rows, tree_problem = [], error.message
    folders = [""] + [entry.path for entry, _depth in rows if entry.kind == "directory"]
    context: dict[str, Any] = {
        "site": site,
        "rows": [
            {
                "entry": entry,
                "indent": depth,
                "folder": entry.kind == "directory",
                "layout": depth == 0 and entry.name in ("public", "private"),
            }
            for entry, depth in rows
        ],
        "folders": folders,
        "problem": problem or tree_problem,
        "done": done or request.GET.get("done", ""),
        "limit": mebibytes(site.spec.resources.upload_limit_bytes),
        "limit_bytes": site.spec.resources.upload_limit_bytes,
    }
    return render(request, "ui/files.html", context, status=status)


def _back(name: str, done: str) -> HttpResponse:
    return HttpResponseRedirect(f"/sites/{name}/files?" + urlencode({"done": done}))


@page
def files(request: HttpRequest, name: str) -> HttpResponse:
    return _files_page(request, name)


def _action(request: HttpRequest, name: str, run: Any) -> HttpResponse:
    """A POST from the file manager: done, back to the tree; refused, the tree with the refusal."""
    if request.method != "POST":
        return HttpResponseRedirect(f"/sites/{name}/files")
    try:
        done = run()
    except ApiError as error:
        return _files_page(request, name, problem=error.message, status=error.code)
    return _back(name, done)


@page
def upload(request: HttpRequest, name: str) -> HttpResponse:
    def run() -> str:
        folder = request.POST.get("folder", "public")
        uploads = [
            Upload(str(item.name), int(item.size or 0), item.chunks(_CHUNK))
            for item in request.FILES.getlist("files")
        ]
        written = _service(request).upload(name, folder, uploads)
        return f"uploaded {', '.join(written)}"

    return _action(request, name, run)


@page
def make_folder(request: HttpRequest, name: str) -> HttpResponse:
    def run() -> str:
        path = "/".join(
            part for part in (request.POST.get("folder", ""), request.POST.get("name", "")) if part
        )
        _service(request).make_directory(name, path)
        return f"made the folder {path}"

    return _action(request, name, run)


@page
def new_file(request: HttpRequest, name: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseRedirect(f"/sites/{name}/files")
    path = "/".join(part for part in (request.POST.get("folder", ""), request.POST.get("name", "")) if part)
    service = _service(request)
    try:
        service.stat(name, path)
    except ApiError as error:
        if error.code != 404:
            return _files_page(request, name, problem=error.message, status=error.code)
        try:
            service.write(name, path, iter([b""]), 0)
        except ApiError as refused:
            return _files_page(request, name, problem=refused.message, status=refused.code)
    else:
        return _files_page(request, name, problem=f"{path} exists already: choose another name", status=409)
    return HttpResponseRedirect(f"/sites/{name}/files/edit?" + urlencode({"path": path}))


@page
def rename(request: HttpRequest, name: str) -> HttpResponse:
    def run() -> str:
        path = request.POST.get("path", "")
        new_name = request.POST.get("new_name", "").strip()
        target = "/".join(part for part in (_folder_of(path), new_name) if part)
        _service(request).rename(name, path, target)
        return f"renamed {path} to {target}"

    return _action(request, name, run)


@page
def delete(request: HttpRequest, name: str) -> HttpResponse:
    def run() -> str:
        path = request.POST.get("path", "")
        _service(request).remove(name, path)
        return f"deleted {path}"

    return _action(request, name, run)


@page
def executable(request: HttpRequest, name: str) -> HttpResponse:
    def run() -> str:
        path = request.POST.get("path", "")
        wanted = request.POST.get("executable") == "on"
        mode = _service(request).set_executable(name, path, wanted)
        return f"{path} is {'now executable' if wanted else 'no longer executable'} (mode {mode:04o})"

    return _action(request, name, run)


@page
def download(request: HttpRequest, name: str) -> HttpResponseBase:
    path = request.GET.get("path", "")
    fd, size = _service(request).open(name, path)
    response = FileResponse(
        os.fdopen(fd, "rb"), as_attachment=True, filename=path.rsplit("/", 1)[-1] or "file"
    )
    response["Content-Length"] = str(size)
    return response


@page
def edit(request: HttpRequest, name: str) -> HttpResponse:
    service = _service(request)
    path = request.GET.get("path") or request.POST.get("path", "")
    site = service.site(name)
    problem, done, status = "", "", 200
    text: str | None = None
    if request.method == "POST":
        text = request.POST.get("content", "").replace("\r\n", "\n")
        data = text.encode()
        try:
            service.write(name, path, iter([data]), len(data))
        except ApiError as error:
            problem, status = error.message, error.code
        else:
            done = f"saved {path} ({mebibytes(len(data))})"
    if text is None:
        try:
            text = service.read_text(name, path)
        except ApiError as error:
            if (
                error.code == 404
                and "not found" in error.message
                and f'site "{name}" not found' in error.message
            ):
                raise
            return _files_page(request, name, problem=error.message, status=error.code)
    suffix = os.path.splitext(path)[1].lower()
    return render(
        request,
        "ui/file_edit.html",
        {
            "site": site,
            "path": path,
            "text": text,
            "language": _LANGUAGES.get(suffix, "shell" if path.endswith("run.sh") else "text"),
            "problem": problem,
            "done": done,
            "public_url": _public_url(site.name, path),
            "max_bytes": mebibytes(MAX_EDIT_BYTES),
        },
        status=status,
    )


def _public_url(site: str, path: str) -> str | None:
    if not path.startswith("public/"):
        return None
    director: Settings = settings.DIRECTOR
    return director.site_urls(site, [])[0] + path.removeprefix("public/")
