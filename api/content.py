"""Request bodies in JSON or YAML, responses in JSON or YAML as the client accepts."""

from __future__ import annotations

import json
from typing import Any

import yaml
from django.http import HttpRequest, HttpResponse

from api.errors import ApiError

JSON = "application/json"
YAML = "application/yaml"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH_YAML = "application/apply-patch+yaml"
APPLY_PATCH_JSON = "application/apply-patch+json"
_YAML_TYPES = {YAML, "application/x-yaml", "text/yaml", APPLY_PATCH_YAML}
_JSON_TYPES = {JSON, MERGE_PATCH, APPLY_PATCH_JSON}
_MAX_DEPTH = 64
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def media_type(request: HttpRequest) -> str:
    return request.headers.get("Content-Type", JSON).split(";")[0].strip().lower() or JSON


def parse_body(request: HttpRequest) -> Any:
    kind = media_type(request)
    raw = request.body
    if not raw.strip():
        raise ApiError(400, "the request has no body; send a Site as JSON or YAML")
    if kind in _JSON_TYPES:
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, f"the body is not valid JSON: {error}") from None
    if kind in _YAML_TYPES:
        try:
            _check_plain_yaml(raw)
            documents = list(yaml.load_all(raw, Loader=_Loader))
        except yaml.YAMLError as error:
            raise ApiError(400, f"the body is not valid YAML: {' '.join(str(error).split())}") from None
        if len(documents) != 1:
            raise ApiError(400, f"the body must hold exactly one YAML document, found {len(documents)}")
        return documents[0]
    raise ApiError(
        415, f"unsupported Content-Type {kind!r}: use {JSON}, {YAML}, {MERGE_PATCH} or {APPLY_PATCH_YAML}"
    )


def _check_plain_yaml(raw: bytes) -> None:
    """Refuse aliases and deep nesting before anything is constructed: a Site needs neither, and they are
    how a small body takes a server's memory or stack."""
    depth = 0
    for event in yaml.parse(raw, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            raise ApiError(400, "YAML aliases (*name) are not accepted in request bodies; write values out")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > _MAX_DEPTH:
                raise ApiError(400, f"the body nests deeper than {_MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def wants_yaml(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return any(kind in accept for kind in ("application/yaml", "application/x-yaml", "text/yaml"))


def render(request: HttpRequest, payload: Any, status: int = 200) -> HttpResponse:
    if wants_yaml(request):
        body = yaml.dump(payload, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
        return HttpResponse(body, status=status, content_type=YAML)
    return HttpResponse(json.dumps(payload, separators=(",", ":")), status=status, content_type=JSON)
