"""A site's files through the API: list, read, write, upload, download, new folder, rename, delete, chmod +x.

    GET    /apis/director.io/v1/sites/NAME/files[?path=DIR&depth=N]   a FileList (a tree `depth` levels deep)
    GET    .../sites/NAME/files/PATH                                 the file's content (a download)
    PUT    .../sites/NAME/files/PATH                                 write the body as the file
    PUT    .../sites/NAME/files/PATH?type=directory                  make a folder
    POST   .../sites/NAME/files/DIR                                  upload multipart `files` into the folder
    PATCH  .../sites/NAME/files/PATH  {"name": "NEW/PATH"} renames,  {"executable": true|false} sets +x
    DELETE .../sites/NAME/files/PATH                                 remove a file, a link or a whole folder

Files are authorized exactly like their site: a site the caller may not see is 404 here too, and only those
who may change the site may change its files (an administrator's disabled site: administrators alone).
Every path stays inside the site's directory and nothing follows a link (store/sitefiles.py); what is written
belongs to the site's own uid. An upload or a save is refused past the site's upload limit
(spec.resources.uploadLimit), as the edge refuses a larger request to the site.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse

from api import content, views
from api.auth import Principal
from api.errors import ApiError, Cause, method_not_allowed
from api.runtime import site_service
from specs.models import API_VERSION, Site
from store.sitefiles import Entry, FileProblem, SiteDirectory, split_path

# What the editor opens: text files beyond this are downloaded, not edited in a browser.
MAX_EDIT_BYTES = 2 * 1024 * 1024
MAX_TREE_DEPTH = 8
_CHUNK = 256 * 1024
_STATUS_OF_PROBLEM = {
    "not-found": 404,
    "exists": 409,
    "refused": 403,
    "invalid": 400,
    "not-ready": 409,
    "too-large": 413,
}


def mebibytes(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size} bytes"


def problem_error(problem: FileProblem, name: str) -> ApiError:
    code = _STATUS_OF_PROBLEM.get(problem.kind, 400)
    reason = {"not-ready": "NotReady", "exists": "AlreadyExists", "too-large": "RequestEntityTooLarge"}.get(
        problem.kind, ""
    )
    return ApiError(code, f'site "{name}": {problem.message}', reason=reason, name=name)


@dataclass(frozen=True)
class Upload:
    """One file of an upload: its name, its size, and its content in chunks."""

    name: str
    size: int
    chunks: Iterable[bytes]


class SiteFilesService:
    """File operations on the sites `principal` may see, with the same answers as the site itself."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self._sites = site_service(principal)

    def site(self, name: str) -> Site:
        return self._sites.get(name)

    def _writable_site(self, name: str) -> Site:
        site = self.site(name)
        if self.principal.is_component and not self.principal.is_admin:
            raise ApiError(
                403, f'the component credential of "{self.principal.username}" may not change files'
            )
        if site.spec.availability == "disabled" and not self.principal.is_admin:
            raise ApiError(
                403,
                f'site "{name}" was disabled by an administrator: its files can be read, not changed',
                name=name,
            )
        if site.metadata.deletion_timestamp is not None:
            raise ApiError(409, f'site "{name}" is being deleted: its files can no longer change', name=name)
        return site

    def _directory(self, name: str) -> SiteDirectory:
        return SiteDirectory(settings.DIRECTOR.sites_dir, name)

    def _names(self, name: str, path: str) -> list[str]:
        try:
            return split_path(path)
        except FileProblem as problem:
            raise problem_error(problem, name) from None

    def _limit_check(self, site: Site, shown: str, size: int) -> None:
        limit = site.spec.resources.upload_limit_bytes
        if size > limit:
            raise ApiError(
                413,
                f'{shown} is {mebibytes(size)}: site "{site.name}" takes uploads of at most '
                f"{mebibytes(limit)} "
                f"(spec.resources.uploadLimit {site.spec.resources.upload_limit}); upload a smaller file, "
                "or ask an administrator for a larger limit",
                reason="RequestEntityTooLarge",
                causes=[Cause("spec.resources.uploadLimit", f"at most {mebibytes(limit)} per upload")],
                name=site.name,
            )

    # ---- reading -------------------------------------------------------------------------------------

    def entries(self, name: str, path: str = "", depth: int = 1) -> list[Entry]:
        self.site(name)
        names = self._names(name, path)
        try:
            with self._directory(name) as directory:
                return directory.entries(names, depth=max(1, min(depth, MAX_TREE_DEPTH)))
        except FileProblem as problem:
            raise problem_error(problem, name) from None

    def stat(self, name: str, path: str) -> Entry:
        self.site(name)
        names = self._names(name, path)
        try:
            with self._directory(name) as directory:
                return directory.stat(names)
        except FileProblem as problem:
            raise problem_error(problem, name) from None

    def read_text(self, name: str, path: str) -> str:
        """A text file's content for the editor: 413 past MAX_EDIT_BYTES, 415 when it is not UTF-8 text."""
        self.site(name)
        names = self._names(name, path)
        try:
            with self._directory(name) as directory:
                data = directory.read(names, MAX_EDIT_BYTES)
        except FileProblem as problem:
            raise problem_error(problem, name) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(
                415, f'{path} of site "{name}" is not UTF-8 text: download it instead', name=name
            ) from None

    def open(self, name: str, path: str) -> tuple[int, int]:
        """A read descriptor of the file and its size (the caller closes it)."""
        self.site(name)
        names = self._names(name, path)
        try:
            with self._directory(name) as directory:
                fd = directory.open_file(names)
        except FileProblem as problem:
            raise problem_error(problem, name) from None
        return fd, os.fstat(fd).st_size

    # ---- writing -------------------------------------------------------------------------------------

    def write(self, name: str, path: str, chunks: Iterable[bytes], size: int | None) -> bool:
        """Write a file; returns whether it is new. `size`, when known, is checked before anything is read."""
        site = self._writable_site(name)
        names = self._names(name, path)
        if size is not None:
            self._limit_check(site, path, size)
        bounded = self._bounded(site, path, chunks)
        try:
            with self._directory(name) as directory:
                return directory.write(names, bounded)
        except FileProblem as problem:
            raise problem_error(problem, name) from None

    def _bounded(self, site: Site, shown: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
        written = 0
        for chunk in chunks:
            written += len(chunk)
            self._limit_check(site, shown, written)
            yield chunk

    def upload(self, name: str, directory_path: str, uploads: list[Upload]) -> list[str]:
        """Write every file of an upload into a folder; the whole upload is within the limit or refused."""
        site = self._writable_site(name)
        names = self._names(name, directory_path)
        if not uploads:
            raise ApiError(400, "the upload has no files: send them as multipart form field `files`")
        total = sum(upload.size for upload in uploads)
        shown = uploads[0].name if len(uploads) == 1 else f"the upload of {len(uploads)} files"
        self._limit_check(site, shown, total)
        # Every name is checked before the first file is written: a refused upload writes nothing.
        targets = []
        for upload in uploads:
            target = [*names, *self._names(name, upload.name)[-1:]]
            if not target or len(target) == len(names):
                raise ApiError(400, f"{upload.name!r} is not a file name", name=name)
            targets.append(target)
        written = []
        try:
            with self._directory(name) as directory:
                for upload, target in zip(uploads, targets, strict=True):
                    directory.write(target, iter(upload.chunks))
                    written.append("/".join(target))
        except FileProblem as problem:
            raise problem_error(problem, name) from None
        return written

    def make_directory(self, name: str, path: str) -> None:
        self._writable_site(name)
        names = self._names(name, path)
        try:
            with self._directory(name) as directory:
                directory.make_directory(names)
        except FileProblem as problem:
            raise problem_error(problem, name) from None

    def rename(self, name: str, path: str, new_path: str) -> None:
        self._writable_site(name)
        names, new_names = self._names(name, path), self._names(name, new_path)
        try:
            with self._directory(name) as directory:
                directory.rename(names, new_names)
        except FileProblem as problem:
            raise problem_error(problem, name) from None

    def remove(self, name: str, path: str) -> None:
        self._writable_site(name)
        names = self._names(name, path)
        try:
            with self._directory(name) as directory:
                directory.remove(names)
        except FileProblem as problem:
            raise problem_error(problem, name) from None

    def set_executable(self, name: str, path: str, executable: bool) -> int:
        self._writable_site(name)
        names = self._names(name, path)
        try:
            with self._directory(name) as directory:
                return directory.set_executable(names, executable)
        except FileProblem as problem:
            raise problem_error(problem, name) from None


# ---- HTTP -------------------------------------------------------------------------------------------


def entry_document(entry: Entry) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": entry.name,
        "path": entry.path,
        "type": entry.kind,
        "size": entry.size,
        "mode": f"{entry.mode:04o}",
        "executable": entry.executable,
        "modified": entry.modified,
    }
    if entry.children is not None:
        document["children"] = [entry_document(child) for child in entry.children]
    return document


def request_chunks(request: HttpRequest) -> Iterator[bytes]:
    while True:
        chunk = request.read(_CHUNK)
        if not chunk:
            return
        yield chunk


def declared_length(request: HttpRequest) -> int | None:
    raw = request.headers.get("Content-Length")
    return int(raw) if raw and raw.isdigit() else None


def uploads_of(request: HttpRequest) -> list[Upload]:
    return [
        Upload(str(upload.name), int(upload.size or 0), upload.chunks(_CHUNK))
        for upload in request.FILES.getlist("files")
    ]


def _depth(request: HttpRequest) -> int:
    raw = request.GET.get("depth") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TREE_DEPTH:
        raise ApiError(
            400, f"depth must be a whole number from 1 to {MAX_TREE_DEPTH}", causes=[Cause("depth", "1-8")]
        )
    return int(raw)


def _file_patch(body: Any) -> tuple[str | None, bool | None]:
    """The new path and the executable bit a file PATCH asks for, both checked before either is applied."""
    if not isinstance(body, dict) or not ({"name", "executable"} & body.keys()):
        raise ApiError(
            400,
            'a file PATCH takes {"name": "NEW/PATH"} to rename or {"executable": true|false}',
            causes=[Cause("name", "the new path"), Cause("executable", "true or false")],
        )
    new_path, executable = body.get("name"), body.get("executable")
    if "name" in body and not isinstance(new_path, str):
        raise ApiError(
            400, "name must be the new path, such as public/new.html", causes=[Cause("name", "a path")]
        )
    if "executable" in body and not isinstance(executable, bool):
        raise ApiError(400, "executable must be true or false", causes=[Cause("executable", "true or false")])
    return new_path, executable


def file_document(entry: Entry) -> dict[str, Any]:
    """One file or folder as an answer of its own: an entry with its kind, as every resource has."""
    return {"apiVersion": API_VERSION, "kind": "File"} | entry_document(entry)


@views.endpoint("GET")
def file_tree(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    path = request.GET.get("path", "")
    entries = SiteFilesService(principal).entries(name, path, _depth(request))
    return content.render(
        request,
        {
            "apiVersion": API_VERSION,
            "kind": "FileList",
            "metadata": {"site": name, "path": path},
            "items": [entry_document(entry) for entry in entries],
        },
    )


@views.endpoint("GET", "PUT", "POST", "PATCH", "DELETE")
def file_item(request: HttpRequest, principal: Principal, name: str, path: str) -> HttpResponse:
    service = SiteFilesService(principal)
    if request.method == "GET":
        fd, size = service.open(name, path)
        response = FileResponse(
            os.fdopen(fd, "rb"), as_attachment=True, filename=path.rsplit("/", 1)[-1] or "file"
        )
        response["Content-Length"] = str(size)
        response["X-Content-Type-Options"] = "nosniff"
        # A streamed response; `endpoint` passes any response through as it is.
        return cast(HttpResponse, response)
    if request.method == "PUT":
        if request.GET.get("type") == "directory":
            service.make_directory(name, path)
            return content.render(request, file_document(service.stat(name, path)), status=201)
        created = service.write(name, path, request_chunks(request), declared_length(request))
        return content.render(
            request, file_document(service.stat(name, path)), status=201 if created else 200
        )
    if request.method == "POST":
        written = service.upload(name, path, uploads_of(request))
        return content.render(
            request,
            {
                "apiVersion": API_VERSION,
                "kind": "FileList",
                "metadata": {"site": name, "path": path},
                "items": [entry_document(service.stat(name, item)) for item in written],
            },
            status=201,
        )
    if request.method == "PATCH":
        new_path, executable = _file_patch(content.parse_body(request))
        if executable is not None and service.stat(name, path).kind != "file":
            # Checked before the rename: a PATCH that is refused must not have renamed anything.
            raise ApiError(403, f'site "{name}": {path} is not a regular file: only a file is executable')
        if new_path is not None:
            service.rename(name, path, new_path)
            path = new_path
        if executable is not None:
            service.set_executable(name, path, executable)
        return content.render(request, file_document(service.stat(name, path)))
    if request.method == "DELETE":
        service.remove(name, path)
        return content.render(
            request,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Success",
                "message": f"{path} deleted",
                "code": 200,
            },
        )
    return method_not_allowed(request, ["GET", "PUT", "POST", "PATCH", "DELETE"])
