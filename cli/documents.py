"""Site documents as dirctl sends and compares them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from specs.models import Site

Document = dict[str, Any]
# Set by the server, never by a person: left out when comparing what is stored with what a file says.
SERVER_METADATA = (
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "finalizers",
)


def intent(site: Site) -> Document:
    """Only what the file states, not the defaults filled in: server-side apply owns exactly these fields,
    so a default never takes a field away from another manager."""
    document: Document = site.model_dump(mode="json", by_alias=True, exclude_unset=True)
    from specs.models import API_VERSION, KIND_SITE

    document["apiVersion"] = API_VERSION
    document["kind"] = KIND_SITE
    document.pop("status", None)
    return document


def comparable(document: Document | None) -> Document:
    """A stored site without status and server-set metadata, for `diff`."""
    if document is None:
        return {}
    result = {key: value for key, value in document.items() if key != "status"}
    metadata = {k: v for k, v in (document.get("metadata") or {}).items() if k not in SERVER_METADATA}
    for key in ("labels", "annotations"):
        if not metadata.get(key):
            metadata.pop(key, None)
    result["metadata"] = metadata
    return result
