"""Request bodies in JSON or YAML, responses in JSON or YAML as the client accepts."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import yaml
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from api.errors import ApiError
from specs import jsonio, yamlio
from specs.errors import InvalidSpec

JSON = "application/json"
YAML = "application/yaml"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH_YAML = "application/apply-patch+yaml"
APPLY_PATCH_JSON = "application/apply-patch+json"
_YAML_TYPES = {YAML, "application/x-yaml", "text/yaml", APPLY_PATCH_YAML}
_JSON_TYPES = {JSON, MERGE_PATCH, APPLY_PATCH_JSON}
_BODY = "the request body"
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def media_type(request: HttpRequest) -> str:
    return request.headers.get("Content-Type", JSON).split(";")[0].strip().lower() or JSON


def parse_body(request: HttpRequest) -> Any:
    """The body as plain data, read under the bounds Site files have (specs/): nesting depth, keys given
    twice, and for YAML tags and size; aliases are refused outright, a Site needs none."""
    kind = media_type(request)
    raw = request.body
    if not raw.strip():
        raise ApiError(400, "the request has no body; send a Site as JSON or YAML")
    try:
        if kind in _JSON_TYPES:
            return jsonio.load_json(raw, _BODY)
        if kind in _YAML_TYPES:
            return yamlio.load_data(raw, _BODY, allow_aliases=False)
    except InvalidSpec as refused:
        raise ApiError(400, str(refused)) from None
    raise ApiError(
        415, f"unsupported Content-Type {kind!r}: use {JSON}, {YAML}, {MERGE_PATCH} or {APPLY_PATCH_YAML}"
    )


def wants_yaml(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return any(kind in accept for kind in ("application/yaml", "application/x-yaml", "text/yaml"))


def render(request: HttpRequest, payload: Any, status: int = 200) -> HttpResponse:
    if wants_yaml(request):
        body = yaml.dump(payload, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
        return HttpResponse(body, status=status, content_type=YAML)
    return HttpResponse(json.dumps(payload, separators=(",", ":")), status=status, content_type=JSON)


class AsyncStream(StreamingHttpResponse):
    """A response streamed from an async generator of bytes, which is closed (its `finally` runs and lets go
    of what it holds: a followed log, a subscription) as soon as the sending stops, the client gone. Django
    iterates a stream through a wrapper of its own and closes only the wrapper: a generator waiting at a
    `yield` then stayed open until the garbage collector found it, and a followed log kept its thread."""

    def __init__(self, source: AsyncGenerator[bytes, None], **kwargs: Any) -> None:
        super().__init__(source, **kwargs)
        self._source = source

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._source
