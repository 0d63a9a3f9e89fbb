"""Field ownership for server-side apply, and JSON merge patch.

Every writer (the CLI, the UI, GitOps, the shell) names itself as a field manager. The server remembers
which leaf fields each manager set, so an apply that would change a field another manager set is refused
as a conflict unless forced: the UI, the CLI and GitOps cannot silently overwrite each other. Ownership
lives in an annotation of the record itself, so it changes atomically with the spec under the store's
resourceVersion check.

A field path is a tuple of keys. Mappings (labels, annotations, env, resources, healthCheck) are owned
key by key; lists (owners, domains, command) are owned whole, as atomic values.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api.errors import ApiError, Cause
from specs import jsonio

MANAGED_FIELDS_ANNOTATION = "director.io/managed-fields"
FIELD_MANAGER_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
DEFAULT_UPDATE_MANAGER = "api"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
# The manager `kubectl apply --server-side` writes as: its first apply takes over, without conflicts, the
# fields `kubectl apply` (client-side) set, as Kubernetes does, so moving to server-side apply is one command.
KUBECTL_SERVER_SIDE_MANAGER = "kubectl"

Path = tuple[str, ...]
Document = dict[str, Any]
_MISSING = object()


@dataclass
class ManagerEntry:
    operation: str  # "Apply" or "Update"
    time: str
    fields: set[Path]

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "time": self.time,
            "fields": sorted(list(p) for p in self.fields),
        }


Managed = dict[str, ManagerEntry]


def check_field_manager(manager: str) -> str:
    if not FIELD_MANAGER_PATTERN.match(manager):
        raise ApiError(
            400,
            f"fieldManager {manager!r} is not a manager name such as cli, ui, gitops or shell "
            "(lower-case letters, digits and hyphens)",
            causes=[Cause("fieldManager", "must be a manager name such as cli, ui, gitops or shell")],
        )
    return manager


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry(previous: ManagerEntry | None, operation: str, fields: set[Path]) -> ManagerEntry:
    """The manager's new entry; its time moves only when what it owns does, so that re-applying the same
    configuration changes nothing at all and is not written."""
    if previous is not None and previous.operation == operation and previous.fields == fields:
        return previous
    return ManagerEntry(operation, _now(), fields)


def read_managed(document: Document) -> Managed:
    raw = document.get("metadata", {}).get("annotations", {}).get(MANAGED_FIELDS_ANNOTATION)
    if not raw:
        return {}
    try:
        parsed = jsonio.load_json(raw, MANAGED_FIELDS_ANNOTATION)
        return {
            name: ManagerEntry(entry["operation"], entry["time"], {tuple(path) for path in entry["fields"]})
            for name, entry in parsed.items()
        }
    except (ValueError, KeyError, TypeError):  # InvalidSpec is a ValueError
        # A hand-edited record with a broken annotation loses its ownership, not its content.
        return {}


def write_managed(document: Document, managed: Managed) -> None:
    annotations = document.setdefault("metadata", {}).setdefault("annotations", {})
    kept = {name: entry for name, entry in managed.items() if entry.fields}
    if kept:
        annotations[MANAGED_FIELDS_ANNOTATION] = json.dumps(
            {name: entry.to_json() for name, entry in sorted(kept.items())}, separators=(",", ":")
        )
    else:
        annotations.pop(MANAGED_FIELDS_ANNOTATION, None)


def without_managed(document: Document) -> Document:
    """The document as clients see it: ownership bookkeeping is the server's."""
    annotations = document.get("metadata", {}).get("annotations")
    if annotations and MANAGED_FIELDS_ANNOTATION in annotations:
        document = {**document, "metadata": {**document["metadata"]}}
        document["metadata"]["annotations"] = {
            k: v for k, v in annotations.items() if k != MANAGED_FIELDS_ANNOTATION
        }
        if not document["metadata"]["annotations"]:
            del document["metadata"]["annotations"]
    return document


def managers_of(document: Document) -> dict[str, list[str]]:
    """Manager name -> the dotted paths it owns, for people reading `describe`."""
    return {
        name: sorted(".".join(path) for path in entry.fields)
        for name, entry in read_managed(document).items()
    }


def _leaves(value: Any, prefix: Path) -> dict[Path, Any]:
    if isinstance(value, dict) and value:
        found: dict[Path, Any] = {}
        for key, child in value.items():
            found.update(_leaves(child, (*prefix, str(key))))
        return found
    return {prefix: value}


def owned_leaves(document: Document) -> dict[Path, Any]:
    """The leaf fields of a document that writers own: labels, annotations and the whole spec."""
    metadata = document.get("metadata") or {}
    leaves: dict[Path, Any] = {}
    for area in ("labels", "annotations"):
        for key, value in (metadata.get(area) or {}).items():
            if area == "annotations" and key == MANAGED_FIELDS_ANNOTATION:
                continue
            leaves[("metadata", area, key)] = value
    spec = document.get("spec")
    if isinstance(spec, dict):
        leaves.update({p: v for p, v in _leaves(spec, ("spec",)).items() if p != ("spec",) or spec})
    return leaves


def get_path(document: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return _MISSING
        document = document[key]
    return document


def set_path(document: Document, path: Path, value: Any) -> None:
    for key in path[:-1]:
        child = document.get(key)
        if not isinstance(child, dict):
            child = document[key] = {}
        document = child
    document[path[-1]] = copy.deepcopy(value)


def remove_path(document: Document, path: Path) -> None:
    parents: list[tuple[Document, str]] = []
    for key in path[:-1]:
        child = document.get(key)
        if not isinstance(child, dict):
            return
        parents.append((document, key))
        document = child
    document.pop(path[-1], None)
    # An emptied mapping inside the spec (env: {}) is dropped so its default applies again.
    for parent, key in reversed(parents):
        if parent[key] == {} and len(parents) > 1:
            del parent[key]
        else:
            break


def _related(first: Path, second: Path) -> bool:
    shorter = min(len(first), len(second))
    return first[:shorter] == second[:shorter]


def _display(path: Path) -> str:
    return ".".join(path)


def apply(
    live: Document | None, applied: Document, manager: str, managed: Managed, *, force: bool
) -> tuple[Document, Managed]:
    """Server-side apply of `applied` (the manager's whole intent) onto `live`.

    Fields in `applied` are set; fields this manager set before and no longer gives are removed unless
    another manager also owns them. A field another manager owns whose value would change is a conflict.
    """
    # `result` is only read; `after` is a copy whose leaves are set from copies, so it shares nothing with
    # the caller's documents.
    result = live if live is not None else {}
    applied_leaves = owned_leaves(applied)
    after = copy.deepcopy(result)
    for path, value in applied_leaves.items():
        set_path(after, path, value)

    conflicts: dict[Path, set[str]] = {}
    for other, entry in managed.items():
        if other == manager:
            continue
        for owned in entry.fields:
            for path in applied_leaves:
                if not _related(owned, path):
                    continue
                shorter = owned if len(owned) <= len(path) else path
                if get_path(result, shorter) != get_path(after, shorter):
                    conflicts.setdefault(owned, set()).add(other)
    if conflicts and not force and manager == KUBECTL_SERVER_SIDE_MANAGER:
        force = set(conflicts) <= _set_by_client_side_apply(result)
    if conflicts and not force:
        causes = [
            Cause(_display(path), f'conflict with "{owner}": {_display(path)}', reason="FieldManagerConflict")
            for path, owners in sorted(conflicts.items())
            for owner in sorted(owners)
        ]
        listing = "; ".join(cause.message for cause in causes)
        raise ApiError(
            409,
            f"Apply failed with {len(causes)} conflict(s): {listing}. Change those fields in the other "
            "manager, leave them out of this configuration, or force the change (--force-conflicts)",
            causes=causes,
        )

    previous = managed.get(manager)
    new_fields = set(applied_leaves)
    others = {name: entry for name, entry in managed.items() if name != manager}
    if previous is not None:
        for path in previous.fields - new_fields:
            if not any(path in entry.fields for entry in others.values()):
                remove_path(after, path)
    updated: Managed = {}
    for name, entry in others.items():
        fields = {path for path in entry.fields if path not in conflicts} if force else set(entry.fields)
        updated[name] = ManagerEntry(entry.operation, entry.time, fields)
    updated[manager] = _entry(previous, "Apply", new_fields)
    if manager == KUBECTL_SERVER_SIDE_MANAGER:
        _keep_last_applied_current(after, applied)
    return after, updated


def _keep_last_applied_current(after: Document, applied: Document) -> None:
    """An object `kubectl apply` (client-side) managed keeps its record of the last apply in step with what
    `kubectl apply --server-side` applies, as Kubernetes does, so going back to client-side apply computes its
    patches from the configuration actually in force."""
    annotations = (after.get("metadata") or {}).get("annotations")
    if not isinstance(annotations, dict) or LAST_APPLIED_ANNOTATION not in annotations:
        return
    recorded = copy.deepcopy(applied)
    recorded_annotations = (recorded.get("metadata") or {}).get("annotations")
    if isinstance(recorded_annotations, dict):
        recorded_annotations.pop(LAST_APPLIED_ANNOTATION, None)
    annotations[LAST_APPLIED_ANNOTATION] = json.dumps(recorded, sort_keys=True, separators=(",", ":")) + "\n"


def _set_by_client_side_apply(live: Document) -> set[Path]:
    """The fields the last `kubectl apply` (client-side) set that still hold the value it gave them: those
    whose conflicts an upgrade to server-side apply may take over. Fields changed since belong to others."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    try:
        last_applied = json.loads(annotations.get(LAST_APPLIED_ANNOTATION) or "null")
    except json.JSONDecodeError:
        return set()
    if not isinstance(last_applied, dict):
        return set()
    return {path for path, value in owned_leaves(last_applied).items() if get_path(live, path) == value}


def record_update(
    old: Document | None, new: Document, manager: str, managed: Managed, *, given: Document | None = None
) -> Managed:
    """Ownership after a non-apply write: the writer takes every field it changed, from everyone.

    For a create, `given` is what the writer sent: it owns what it wrote, not the defaults filled in.
    """
    new_leaves = owned_leaves(new)
    if old is None:
        taken = set(owned_leaves(given)) & set(new_leaves) if given is not None else set(new_leaves)
        changed = taken
    else:
        old_leaves = owned_leaves(old)
        changed = {
            path
            for path in set(old_leaves) | set(new_leaves)
            if old_leaves.get(path, _MISSING) != new_leaves.get(path, _MISSING)
        }
        taken = {path for path in changed if path in new_leaves}
    updated: Managed = {}
    for name, entry in managed.items():
        fields = {path for path in entry.fields if not any(_related(path, c) for c in changed)}
        # A field that exists no longer is owned by nobody.
        fields = {path for path in fields if get_path(new, path) is not _MISSING}
        updated[name] = ManagerEntry(entry.operation, entry.time, fields)
    if taken:
        current = updated.get(manager)
        fields = (current.fields if current else set()) | taken
        updated[manager] = _entry(managed.get(manager), "Update", fields)
    return updated


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def all_paths(paths: Iterable[Path]) -> list[str]:
    return sorted(_display(path) for path in paths)
