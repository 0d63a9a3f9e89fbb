"""One error shape for every failure: a Kubernetes `Status` object, never an HTML page or a traceback."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from pydantic import ValidationError

from specs.errors import field_path, problems_from_validation
from store.records import InsufficientStorage, StoreError, is_out_of_space

log = logging.getLogger("api")

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    507: "InsufficientStorage",
}


@dataclass(frozen=True)
class Cause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


@dataclass
class ApiError(Exception):
    code: int
    message: str
    reason: str = ""
    causes: list[Cause] = field(default_factory=list)
    name: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # When to ask again (429): sent as Retry-After and, as Kubernetes does, details.retryAfterSeconds.
    retry_after_seconds: int | None = None
    # What details.kind names, as Kubernetes does: the resource ("sites") for most failures, the kind ("Site")
    # for an invalid object, which kubectl prints as `The Site "NAME" is invalid`.
    kind: str = "sites"

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if not self.reason:
            self.reason = _REASONS.get(self.code, "Unknown")

    def to_json(self) -> dict[str, Any]:
        details: dict[str, Any] = {"kind": self.kind, "group": "director.io"}
        if self.name is not None:
            details["name"] = self.name
        if self.causes:
            details["causes"] = [cause.to_json() for cause in self.causes]
        if self.retry_after_seconds is not None:
            details["retryAfterSeconds"] = self.retry_after_seconds
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
            "details": details,
        }

    def response(self) -> HttpResponse:
        response = HttpResponse(json.dumps(self.to_json()), status=self.code, content_type="application/json")
        if self.code == 401:
            response["WWW-Authenticate"] = 'Bearer realm="director"'
        if self.retry_after_seconds is not None:
            response["Retry-After"] = str(self.retry_after_seconds)
        for header, value in self.headers.items():
            response[header] = value
        return response


def invalid(
    error: ValidationError, *, name: str | None, prefix: tuple[str | int, ...] = (), kind: str = "Site"
) -> ApiError:
    """422 with one cause per field a person must fix, in the words specs/ uses for the CLI."""
    causes = [
        Cause(field=field_path(prefix + tuple(problem.loc)), message=problem.message)
        for problem in problems_from_validation(error)
    ]
    summary = "; ".join(
        f"{cause.field}: {cause.message}" if cause.field else cause.message for cause in causes
    )
    subject = f'{kind} "{name}"' if name else kind
    return ApiError(422, f"{subject} is invalid: {summary}", causes=causes, name=name, kind=kind)


def status_success(message: str, *, name: str | None = None) -> dict[str, Any]:
    details = {"kind": "sites", "group": "director.io"} | ({"name": name} if name else {})
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "message": message,
        "code": 200,
        "details": details,
    }


def write_refused(error: StoreError, subject: str, *, name: str | None = None) -> ApiError:
    """The answer to a write the store refused for a reason of its own: 507 when the state directory is full
    (the client may retry once there is room; nothing was written), otherwise a 500 that says why."""
    if isinstance(error, InsufficientStorage):
        return ApiError(507, f"{subject} could not be written: {error}", name=name)
    return ApiError(500, f"{subject} could not be written: {error}", name=name)


def out_of_space(error: BaseException, state_dir: Path) -> ApiError | None:
    """507 for a failure that comes from a full disk under the state directory, found however it was raised:
    the record store's own error, the errno of a file write, or SQLite's word for the database."""
    if isinstance(error, InsufficientStorage):
        return ApiError(507, str(error))
    full_database = isinstance(error, DatabaseError) and "database or disk is full" in str(error)
    if is_out_of_space(error) or full_database:
        return ApiError(
            507,
            f"the state directory {state_dir} is full: nothing was written; free space on its filesystem, "
            "then retry",
        )
    return None


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return ApiError(400, f"bad request: {exception}" if exception else "bad request").response()


def forbidden_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return ApiError(403, "forbidden").response()


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return ApiError(404, f"the server could not find the requested resource {request.path}").response()


def server_error_view(request: HttpRequest) -> HttpResponse:
    return ApiError(500, "internal error; the server log has the details").response()


def method_not_allowed(request: HttpRequest, allowed: list[str]) -> HttpResponse:
    error = ApiError(
        405,
        f"{request.method} is not supported on {request.path}; allowed: {', '.join(allowed)}",
        headers={"Allow": ", ".join(allowed)},
    )
    return error.response()


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
