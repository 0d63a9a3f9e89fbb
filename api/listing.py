"""Site lists fast enough for 10,000 sites, in JSON and, for people's terminals, as a server-printed Table (as
Kubernetes does) so a client receives the rows, not the objects.

Each site's JSON and table row are kept once rendered and reused while the site is the same object: the
listing cache (api/listcache.py) and the store share an unchanged Site between lists, so a list of 10,000
sites of which a few changed renders those few and joins the rest. Only a row's age is computed anew.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar, cast

from pydantic import TypeAdapter

from api.errors import ApiError, Cause
from api.fields import MANAGED_FIELDS_ANNOTATION
from specs.gitsource import GitRef, GitSource
from specs.models import API_VERSION, Site

_SITE = TypeAdapter(Site)

COLUMNS = [
    ("Name", "string", False),
    ("Type", "string", False),
    ("Availability", "string", False),
    ("Ready", "string", False),
    ("Reason", "string", False),
    ("Age", "string", False),
    ("Generation", "string", True),
    ("Owners", "string", True),
    ("Domains", "string", True),
    ("Image", "string", True),
    ("URL", "string", True),
]
_AGE_COLUMN = 5
_COLUMN_DEFINITIONS = [
    {"name": name, "type": kind, "format": "name" if name == "Name" else "", "priority": 1 if wide else 0}
    for name, kind, wide in COLUMNS
]
# What each row carries besides its cells, as Kubernetes' includeObject says: nothing (dirctl), the object's
# metadata (the default: kubectl's --show-labels and -L read it), or the whole object.
IncludeObject = Literal["None", "Metadata", "Object"]
INCLUDE_OBJECT_CHOICES: tuple[IncludeObject, ...] = ("None", "Metadata", "Object")

Rendering = TypeVar("Rendering")


class _PerSite(Generic[Rendering]):
    """One rendering per site, valid while the site is the very object it was made from (listed Sites are
    shared and never changed, so an unchanged site is the same object). Kept by the object's identity: a
    list of 10,000 sites then looks its renderings up without reading the sites themselves, which are
    spread over the heap."""

    def __init__(self, render: Callable[[Site], Rendering]) -> None:
        self._render = render
        # The site is kept with its rendering, so its id cannot pass to another object meanwhile.
        self._entries: dict[int, tuple[Site, Rendering]] = {}
        self._lock = threading.Lock()

    def of(self, site: Site) -> Rendering:
        entry = self._entries.get(id(site))
        if entry is not None and entry[0] is site:
            return entry[1]
        rendering = self._render(site)
        self._entries[id(site)] = (site, rendering)
        return rendering

    def trim(self, sites: list[Site]) -> None:
        """Forget the sites no longer listed, once the renderings outnumber what is listed by far."""
        if len(self._entries) <= 2 * len(sites) + 1024:
            return
        with self._lock:
            entries = self._entries
            self._entries = {id(site): entries[id(site)] for site in sites if id(site) in entries}


def _version(site: Site) -> int:
    return int(site.metadata.resource_version or 0)


def _without_bookkeeping(site: Site) -> Site:
    annotations = site.metadata.annotations
    if MANAGED_FIELDS_ANNOTATION not in annotations:
        return site
    kept = {key: value for key, value in annotations.items() if key != MANAGED_FIELDS_ANNOTATION}
    return site.model_copy(update={"metadata": site.metadata.model_copy(update={"annotations": kept})})


def list_version(sites: list[Site]) -> str:
    return str(max((_version(site) for site in sites), default=0))


def _site_json(site: Site) -> tuple[int, bytes]:
    return _version(site), _SITE.dump_json(_without_bookkeeping(site), by_alias=True, exclude_none=True)


_JSON = _PerSite(_site_json)


def site_list_json(sites: list[Site]) -> bytes:
    rendered = [_JSON.of(site) for site in sites]
    _JSON.trim(sites)
    version = max((item_version for item_version, _ in rendered), default=0)
    head = json.dumps(
        {"apiVersion": API_VERSION, "kind": "SiteList", "metadata": {"resourceVersion": str(version)}},
        separators=(",", ":"),
    )
    return head[:-1].encode() + b',"items":[' + b",".join(item for _, item in rendered) + b"]}"


def age(moment: datetime | None, now: datetime) -> str:
    """kubectl's short ages: 42s, 7m, 5h, 3d."""
    if moment is None:
        return "<unknown>"
    return _age(int((now - moment).total_seconds()))


def _age(seconds: int) -> str:
    return _age_and_next_change(seconds)[0]


def _age_and_next_change(seconds: int) -> tuple[str, int]:
    """The short age of `seconds`, and at how many seconds it next reads differently."""
    seconds = max(0, seconds)
    if seconds >= 2 * 86400:
        return f"{seconds // 86400}d", (seconds // 86400 + 1) * 86400
    if seconds >= 2 * 3600:
        return f"{seconds // 3600}h", min((seconds // 3600 + 1) * 3600, 2 * 86400)
    if seconds >= 60:
        return f"{seconds // 60}m", min((seconds // 60 + 1) * 60, 2 * 3600)
    return f"{seconds}s", seconds + 1


def partial_metadata(site: Site) -> dict[str, Any]:
    """The row's object for includeObject=Metadata: the site's metadata (a PartialObjectMetadata)."""
    document = site.model_dump(mode="json", by_alias=True, exclude_none=True, include={"metadata"})
    metadata = document["metadata"]
    annotations = metadata.get("annotations")
    if annotations and MANAGED_FIELDS_ANNOTATION in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != MANAGED_FIELDS_ANNOTATION}
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}


def row_object(site: Site, include: IncludeObject) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Metadata":
        return partial_metadata(site)
    return dict(json.loads(_JSON.of(site)[1]))


def row(site: Site, now: datetime) -> list[Any]:
    cells = _cells(site)
    cells.insert(_AGE_COLUMN, age(site.metadata.creation_timestamp, now))
    return cells


def _cells(site: Site) -> list[Any]:
    """The row's cells but its age, which changes as time goes by."""
    status = site.status
    ready = status.condition("Ready") if status is not None else None
    spec = site.spec
    return [
        site.name,
        spec.type,
        spec.availability,
        ready.status if ready is not None else "Unknown",
        ready.reason
        if ready is not None
        else ("Deleting" if site.metadata.deletion_timestamp else "Pending"),
        f"{status.observed_generation if status and status.observed_generation else '-'}/"
        f"{site.metadata.generation or 0}",
        ",".join(spec.owners) or "<none>",
        ",".join(spec.domains) or "<none>",
        spec.image or "<none>",
        status.urls[0] if status is not None and status.urls else "<none>",
    ]


class _Row:
    """A row as JSON, made anew only when its age reads differently (an hour-old site's, once an hour)."""

    __slots__ = ("after_age", "before_age", "created", "objects", "shown", "site", "version")

    def __init__(self, site: Site) -> None:
        self.site = site
        self.objects: dict[str, str] = {}
        cells = _cells(site)
        before = json.dumps({"cells": cells[:_AGE_COLUMN]}, separators=(",", ":"))
        after = json.dumps(cells[_AGE_COLUMN:], separators=(",", ":"))
        self.before_age = before[:-2] + ","  # without the closing "]}"
        self.after_age = "," + after[1:] + "}"
        moment = site.metadata.creation_timestamp
        self.created = moment.timestamp() if moment is not None else None
        self.version = _version(site)
        # (until when, the JSON): replaced whole, so concurrent readers see one or the other.
        self.shown: tuple[float, str] = (float("-inf"), "")

    def json(self, now: float) -> str:
        until, text = self.shown
        if now < until:
            return text
        if self.created is None:
            age, until = "<unknown>", float("inf")
        else:
            age, change = _age_and_next_change(int(now - self.created))
            until = self.created + change
        text = f'{self.before_age}"{age}"{self.after_age}'
        self.shown = (until, text)
        return text

    def json_with(self, now: float, include: IncludeObject) -> str:
        text = self.json(now)
        if include == "None":
            return text
        rendered = self.objects.get(include)
        if rendered is None:
            shown = row_object(self.site, include)
            rendered = self.objects[include] = json.dumps(shown, separators=(",", ":"))
        return f'{text[:-1]},"object":{rendered}}}'


_ROWS = _PerSite(_Row)


def site_table(
    sites: list[Site], *, definitions: bool = True, include: IncludeObject = "Metadata"
) -> dict[str, Any]:
    """Rows of cells; priority-1 columns are the `-o wide` ones. A watch sends its one-row tables without
    the column definitions, which the client has from the listing."""
    now = datetime.now(UTC)
    table: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": list_version(sites)},
    }
    if definitions:
        table["columnDefinitions"] = _COLUMN_DEFINITIONS
    rows = []
    for site in sites:
        entry: dict[str, Any] = {"cells": row(site, now)}
        shown = row_object(site, include)
        if shown is not None:
            entry["object"] = shown
        rows.append(entry)
    table["rows"] = rows
    return table


def site_table_json(sites: list[Site], include: IncludeObject = "Metadata") -> bytes:
    """site_table(sites) as compact JSON, from the kept rows."""
    rows = [_ROWS.of(site) for site in sites]
    _ROWS.trim(sites)
    now = time.time()
    head = json.dumps(
        {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(max((each.version for each in rows), default=0))},
            "columnDefinitions": _COLUMN_DEFINITIONS,
        },
        separators=(",", ":"),
    )
    return f'{head[:-1]},"rows":[{",".join([each.json_with(now, include) for each in rows])}]}}'.encode()


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def include_object(raw: str | None) -> IncludeObject:
    """The includeObject query parameter: Metadata unless it says otherwise."""
    if not raw:
        return "Metadata"
    for choice in INCLUDE_OBJECT_CHOICES:
        if raw == choice:
            return choice
    raise ApiError(
        400,
        f"includeObject must be None, Metadata or Object, got {raw!r}",
        causes=[Cause("includeObject", "None, Metadata or Object")],
    )


# ---- gitsources --------------------------------------------------------------------------------------

GITSOURCE_COLUMNS = [
    ("Name", "string", False),
    ("Ready", "string", False),
    ("Reason", "string", False),
    ("Applied", "string", False),
    ("Sites", "integer", False),
    ("Suspended", "string", False),
    ("Age", "string", False),
    ("URL", "string", True),
    ("Ref", "string", True),
    ("Apply-As", "string", True),
    ("Message", "string", True),
]


def _ref_text(ref: GitRef) -> str:
    if ref.commit:
        return f"commit {ref.commit[:12]}"
    return f"branch {ref.branch}" if ref.branch else f"tag {ref.tag}" if ref.tag else "-"


def gitsource_table(sources: list[GitSource], include: IncludeObject = "Metadata") -> dict[str, Any]:
    """GitSources as `dirctl get gitsources` shows them (a Table, for kubectl)."""
    now = datetime.now(UTC)
    rows = []
    for source in sources:
        ready = source.status.condition("Ready") if source.status is not None else None
        sync = source.status.sync if source.status is not None else None
        cells = [
            source.name,
            ready.status if ready is not None else "Unknown",
            ready.reason if ready is not None else "",
            (sync.applied_revision or "-")[:12] if sync is not None else "-",
            len(sync.inventory) if sync is not None else 0,
            "True" if source.spec.suspend else "False",
            age(source.metadata.creation_timestamp, now),
            source.spec.url,
            _ref_text(source.spec.ref),
            source.spec.apply_as or "",
            " ".join(ready.message.split()) if ready is not None else "",
        ]
        entry: dict[str, Any] = {"cells": cells}
        if include != "None":
            document = source.to_document()
            metadata: dict[str, Any] = dict(cast(dict[str, Any], document["metadata"]))
            annotations = metadata.get("annotations")
            if isinstance(annotations, dict) and MANAGED_FIELDS_ANNOTATION in annotations:
                metadata["annotations"] = {
                    k: v for k, v in annotations.items() if k != MANAGED_FIELDS_ANNOTATION
                }
            entry["object"] = (
                {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}
                if include == "Metadata"
                else document | {"metadata": metadata}
            )
        rows.append(entry)
    versions = [int(source.metadata.resource_version or 0) for source in sources]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(max(versions, default=0))},
        "columnDefinitions": [
            {"name": name, "type": kind, "format": "name" if name == "Name" else "", "priority": int(wide)}
            for name, kind, wide in GITSOURCE_COLUMNS
        ],
        "rows": rows,
    }
