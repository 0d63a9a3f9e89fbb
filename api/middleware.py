"""Every failure leaves as a Status object: API errors with their code, anything else as a logged 500.

Written without MiddlewareMixin: under ASGI that mixin runs each hook on Django's one sync thread, a
thread hop per hook and per request; this middleware only acts on exceptions, which Django hands to
`process_exception` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase

from api.errors import ApiError, out_of_space

log = logging.getLogger("api")

GetResponse = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]


class StatusErrorMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponseBase:
        if isinstance(exception, ApiError):
            return exception.response()
        if isinstance(exception, RequestDataTooBig):
            return ApiError(413, "the request body is too large").response()
        if isinstance(exception, SuspiciousOperation):
            return ApiError(400, f"bad request: {exception}").response()
        if isinstance(exception, MultiPartParserError):
            # Django's parser refuses a multipart body it cannot read (no boundary, say): the client's error.
            return ApiError(400, f"the multipart/form-data body cannot be read: {exception}").response()
        full = out_of_space(exception, Path(settings.STATE_DIR))
        if full is not None:
            log.error("%s %s refused: %s", request.method, request.path, full.message)
            return full.response()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return ApiError(500, "internal error; the server log has the details").response()
