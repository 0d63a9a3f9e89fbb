"""OpenAPI v3 documents of Director's kinds, made from the pydantic models, as kubectl reads them.

`kubectl explain site.spec.resources` reads the schema whose `x-kubernetes-group-version-kind` names Site, and
follows `$ref`s into `components.schemas`; `kubectl apply` and `edit` send `fieldValidation=Strict` (and skip
validating on the client) when the kind's PATCH operation lists that parameter. So the document is written in
the OpenAPI 3.0 dialect Kubernetes serves: nested objects as `allOf: [{$ref}]` beside their description,
no JSON Schema 2020 forms (`const`, numeric `exclusiveMinimum`, `anyOf` with null), no pydantic titles.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from pydantic import BaseModel

from specs.gitsource import GitSource
from specs.models import Site

GROUP = "director.io"
VERSION = "v1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
_PREFIX = "io.director.v1."
# kind -> (the model, its plural resource name)
KINDS: dict[str, tuple[type[BaseModel], str]] = {
    "Site": (Site, "sites"),
    "GitSource": (GitSource, "gitsources"),
}
Schema = dict[str, Any]

_NOT_IN_OPENAPI_3_0 = ("title", "propertyNames")


def _convert(node: Any) -> Any:
    """A pydantic JSON Schema node in Kubernetes' OpenAPI 3.0 dialect."""
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _convert(value) for key, value in node.items() if key not in _NOT_IN_OPENAPI_3_0}
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        others = [branch for branch in branches if branch != {"type": "null"}]
        if len(others) < len(branches):
            # An optional field: absent is how it is left out; Kubernetes' schemas say no more.
            del schema["anyOf"]
            if schema.get("default", 0) is None:
                del schema["default"]
            schema = (others[0] | schema) if len(others) == 1 else schema | {"anyOf": others}
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), int | float) and not isinstance(schema.get(bound), bool):
            schema[inclusive] = schema[bound]
            schema[bound] = True
    if "$ref" in schema and len(schema) > 1:
        # A reference with its own description or default: OpenAPI 3.0 ignores siblings of $ref.
        schema["allOf"] = [{"$ref": schema.pop("$ref")}]
    return schema


@functools.cache
def schemas() -> dict[str, Schema]:
    """components.schemas: every kind, its list, and each model they use, by Kubernetes-style names."""
    found: dict[str, Schema] = {}
    for kind, (model, _plural) in KINDS.items():
        raw = model.model_json_schema(by_alias=True, ref_template=_PREFIX + "{model}")
        for name, definition in raw.pop("$defs", {}).items():
            found[_PREFIX + name] = _convert(_fix_refs(definition))
        root = _convert(_fix_refs(raw))
        root["x-kubernetes-group-version-kind"] = [{"group": GROUP, "kind": kind, "version": VERSION}]
        found[_PREFIX + kind] = root
        found[f"{_PREFIX}{kind}List"] = {
            "type": "object",
            "description": f"A list of {kind} objects.",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "items": {"type": "array", "items": {"$ref": _ref(kind)}},
            },
            "x-kubernetes-group-version-kind": [{"group": GROUP, "kind": f"{kind}List", "version": VERSION}],
        }
    return found


def _ref(name: str) -> str:
    return f"#/components/schemas/{_PREFIX}{name}"


def _fix_refs(node: Any) -> Any:
    """pydantic's refs (by the template, without the components path) as OpenAPI 3 refs."""
    if isinstance(node, list):
        return [_fix_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    fixed = {key: _fix_refs(value) for key, value in node.items()}
    ref = fixed.get("$ref")
    if isinstance(ref, str) and ref.startswith(_PREFIX):
        fixed["$ref"] = "#/components/schemas/" + ref
    return fixed


def _query(name: str, description: str) -> Schema:
    return {"name": name, "in": "query", "description": description, "schema": {"type": "string"}}


_DRY_RUN = _query("dryRun", "All: validate and authorize the write, change nothing.")
_FIELD_MANAGER = _query("fieldManager", "Who makes the write (cli, ui, kubectl, ...), for field ownership.")
_FIELD_VALIDATION = _query(
    "fieldValidation",
    "Strict, Warn or Ignore; Director refuses unknown or duplicate fields whichever is given.",
)
_FORCE = _query("force", "true: take over fields another manager owns (server-side apply).")


def _operation(kind: str, action: str, schema: str, extra: list[Schema], body: list[str] | None) -> Schema:
    operation: Schema = {
        "operationId": f"{action}{kind}",
        "parameters": extra,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": _ref(schema)}}}},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": GROUP, "kind": kind, "version": VERSION},
    }
    if body is not None:
        operation["requestBody"] = {
            "content": {media: {"schema": {"$ref": _ref(kind)}} for media in body},
            "required": True,
        }
    return operation


def _paths() -> dict[str, Schema]:
    paths: dict[str, Schema] = {}
    writes = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
    for kind, (_model, plural) in KINDS.items():
        collection = f"/apis/{GROUP_VERSION}/{plural}"
        paths[collection] = {
            "get": _operation(
                kind,
                "list",
                f"{kind}List",
                [_query("labelSelector", "Only these labels."), _query("watch", "true: stream changes.")],
                None,
            ),
            "post": _operation(kind, "post", kind, writes, ["application/json", "application/yaml"]),
        }
        paths[f"{collection}/{{name}}"] = {
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": _operation(kind, "get", kind, [], None),
            "put": _operation(kind, "put", kind, writes, ["application/json", "application/yaml"]),
            "patch": _operation(
                kind,
                "patch",
                kind,
                [*writes, _FORCE],
                ["application/merge-patch+json", "application/apply-patch+yaml"],
            ),
            "delete": _operation(kind, "delete", kind, [_DRY_RUN], None),
        }
    return paths


@functools.cache
def group_document() -> bytes:
    document = {
        "openapi": "3.0.0",
        "info": {"title": "Director", "version": VERSION},
        "paths": _paths(),
        "components": {"schemas": schemas()},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def group_path() -> str:
    """Where the group's document is, with a hash of it, so clients cache it until it changes."""
    digest = hashlib.sha256(group_document()).hexdigest()[:32].upper()
    return f"/openapi/v3/apis/{GROUP_VERSION}?hash={digest}"


def root_document() -> dict[str, Any]:
    return {"paths": {f"apis/{GROUP_VERSION}": {"serverRelativeURL": group_path()}}}
