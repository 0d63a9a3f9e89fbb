"""The site form: the fields a person sets, to and from a Site document, and the API's answers placed at them.

The form is one more writer through the API's service, with the field manager `ui`: it states its whole
intent (a server-side apply), carrying the resourceVersion it was loaded at. What comes back is placed where
the person looks: a validation cause next to its field, a field another manager owns as theirs, a concurrent
change as what changed and by whom, merged with what this person typed so that nothing is lost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from api import fields
from api.errors import ApiError
from api.models import WriteRecord
from specs.models import API_VERSION, KIND_SITE, Site

FIELD_MANAGER = "ui"

# Every input of the form, in order; each maps to a part of the spec (or metadata.name).
FORM_FIELDS = (
    "name",
    "type",
    "purpose",
    "availability",
    "owners",
    "domains",
    "image",
    "command",
    "env",
    "replicas",
    "health_enabled",
    "health_path",
    "health_interval",
    "health_timeout",
    "health_retries",
    "cpus",
    "memory",
    "upload_limit",
    "pids",
)
LABELS = {
    "name": "Name",
    "type": "Type",
    "purpose": "Purpose",
    "availability": "Availability",
    "owners": "Owners",
    "domains": "Custom domains",
    "image": "Image",
    "command": "Command",
    "env": "Environment",
    "replicas": "Replicas",
    "health_enabled": "Health check",
    "health_path": "Health check path",
    "health_interval": "Interval",
    "health_timeout": "Timeout",
    "health_retries": "Retries",
    "cpus": "CPUs",
    "memory": "Memory",
    "upload_limit": "Upload limit",
    "pids": "Processes",
}
# A cause's field path (its first parts) -> the input it belongs to.
_PATH_TO_FIELD = (
    ("metadata.name", "name"),
    ("spec.type", "type"),
    ("spec.purpose", "purpose"),
    ("spec.availability", "availability"),
    ("spec.owners", "owners"),
    ("spec.domains", "domains"),
    ("spec.image", "image"),
    ("spec.command", "command"),
    ("spec.env", "env"),
    ("spec.replicas", "replicas"),
    ("spec.healthCheck.path", "health_path"),
    ("spec.healthCheck.interval", "health_interval"),
    ("spec.healthCheck.timeout", "health_timeout"),
    ("spec.healthCheck.retries", "health_retries"),
    ("spec.healthCheck", "health_enabled"),
    ("spec.resources.cpus", "cpus"),
    ("spec.resources.memory", "memory"),
    ("spec.resources.uploadLimit", "upload_limit"),
    ("spec.resources.pids", "pids"),
)


def field_of_path(path: str) -> str | None:
    for prefix, name in _PATH_TO_FIELD:
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return name
    return None


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]


def _words(text: str) -> list[str]:
    return [word for word in re.split(r"[\s,]+", text) if word]


def values_of(site: Site) -> dict[str, str]:
    """The form's inputs for a site, as text."""
    spec = site.spec
    check = spec.health_check
    return {
        "name": site.name,
        "type": spec.type,
        "purpose": spec.purpose,
        "availability": spec.availability,
        "owners": ", ".join(spec.owners),
        "domains": "\n".join(spec.domains),
        "image": spec.image or "",
        "command": "\n".join(spec.command or []),
        "env": "\n".join(f"{key}={value}" for key, value in spec.env.items()),
        "replicas": str(spec.replicas),
        "health_enabled": "on" if check is not None else "",
        "health_path": check.path if check is not None else "/",
        "health_interval": check.interval if check is not None else "30s",
        "health_timeout": check.timeout if check is not None else "5s",
        "health_retries": str(check.retries) if check is not None else "3",
        "cpus": f"{spec.resources.cpus:g}",
        "memory": spec.resources.memory,
        "upload_limit": spec.resources.upload_limit,
        "pids": str(spec.resources.pids),
    }


def default_values(owner: str | None) -> dict[str, str]:
    values = values_of(Site.model_validate({"metadata": {"name": "new-site"}}))
    values["name"] = ""
    values["owners"] = owner or ""
    return values


def form_values(data: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(data.get(name, "")) for name in FORM_FIELDS}


@dataclass
class Problems:
    """What is wrong, by input; `general` for what belongs to no one input."""

    by_field: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def add(self, name: str | None, message: str) -> None:
        if name is None:
            self.general.append(message)
        else:
            self.by_field.setdefault(name, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)


def _number(values: Mapping[str, str], name: str, kind: type, problems: Problems) -> Any:
    raw = values.get(name, "").strip()
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number such as 0.5"
        problems.add(name, f"must be {what}, got {raw!r}")
        return None


def document_from(values: Mapping[str, str], problems: Problems) -> dict[str, Any]:
    """The Site document the form states (its whole intent: server-side apply by `ui`)."""
    spec: dict[str, Any] = {
        "type": values.get("type") or "static",
        "purpose": values.get("purpose") or "project",
        "availability": values.get("availability") or "enabled",
        "owners": _words(values.get("owners", "")),
        "domains": [domain.lower() for domain in _words(values.get("domains", ""))],
        "resources": {
            "cpus": _number(values, "cpus", float, problems),
            "memory": values.get("memory", "").strip(),
            "uploadLimit": values.get("upload_limit", "").strip(),
            "pids": _number(values, "pids", int, problems),
        },
    }
    replicas = _number(values, "replicas", int, problems)
    if spec["type"] == "dynamic":
        spec["replicas"] = replicas
        if values.get("image", "").strip():
            spec["image"] = values["image"].strip()
        command = _lines(values.get("command", ""))
        if command:
            spec["command"] = command
        if values.get("health_enabled"):
            spec["healthCheck"] = {
                "path": values.get("health_path", "").strip(),
                "interval": values.get("health_interval", "").strip(),
                "timeout": values.get("health_timeout", "").strip(),
                "retries": _number(values, "health_retries", int, problems),
            }
    elif values.get("image", "").strip():
        spec["image"] = values["image"].strip()
    env: dict[str, str] = {}
    for line in _lines(values.get("env", "")):
        key, equals, value = line.partition("=")
        if not equals:
            problems.add("env", f"{line!r} is not NAME=value")
            continue
        env[key.strip()] = value
    if env:
        spec["env"] = env
    # An empty list or mapping is left out rather than stated: `ui` then claims no field it leaves empty,
    # and another writer may fill it without a conflict.
    for key in ("owners", "domains"):
        if not spec[key]:
            del spec[key]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_SITE,
        "metadata": {"name": values.get("name", "").strip()},
        "spec": spec,
    }


def place_error(error: ApiError, problems: Problems) -> None:
    """An API error's causes at their inputs, its message where no input fits."""
    placed = False
    for cause in error.causes:
        name = field_of_path(cause.field)
        if name is not None:
            problems.add(name, cause.message)
            placed = True
    if not placed or not error.causes:
        problems.add(None, error.message)


# ---- who owns what --------------------------------------------------------------------------------------


def owners_by_field(site: Site) -> dict[str, list[str]]:
    """For each input, the other managers (not `ui`) that set some of it: shown as theirs."""
    document = site.to_document(include_status=False)
    found: dict[str, set[str]] = {}
    for manager, paths in fields.managers_of(document).items():
        if manager == FIELD_MANAGER:
            continue
        for path in paths:
            name = field_of_path(path)
            if name is not None:
                found.setdefault(name, set()).add(manager)
    return {name: sorted(managers) for name, managers in found.items()}


def field_conflicts(error: ApiError) -> list[tuple[str, str]]:
    """(field path, message) of each field-manager conflict in an apply's 409."""
    return [(cause.field, cause.message) for cause in error.causes if cause.reason == "FieldManagerConflict"]


def is_stale(error: ApiError) -> bool:
    return error.code == 409 and "has been modified" in error.message


def leaves(document: Mapping[str, Any]) -> dict[str, Any]:
    return {".".join(path): value for path, value in fields.owned_leaves(dict(document)).items()}


def kept_fields(intent: Mapping[str, Any], result: Site) -> list[str]:
    """Spec fields the result has that the intent leaves out: another manager's, which an apply keeps."""
    wanted = Site.model_validate(intent).to_document(include_status=False)
    stored = result.to_document(include_status=False)
    wanted_leaves = {path: value for path, value in leaves(wanted).items() if path.startswith("spec.")}
    stored_leaves = {path: value for path, value in leaves(stored).items() if path.startswith("spec.")}
    return sorted(path for path in stored_leaves if path not in wanted_leaves)


# ---- concurrent changes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    field: str
    label: str
    before: str
    after: str


@dataclass(frozen=True)
class Writer:
    username: str
    field_manager: str
    operation: str
    time: str


def writers_since(name: str, resource_version: str) -> list[Writer]:
    """Who wrote the site after `resource_version` (the audit record of every accepted write)."""
    since = int(resource_version) if resource_version.isdigit() else 0
    found = []
    for record in WriteRecord.objects.filter(site=name).order_by("-id")[:50]:
        if record.resource_version.isdigit() and int(record.resource_version) > since:
            found.append(
                Writer(
                    record.username,
                    record.field_manager,
                    record.operation,
                    f"{record.time:%Y-%m-%d %H:%M:%S} UTC",
                )
            )
    return list(reversed(found))


def merge(
    base: Mapping[str, str], theirs: Mapping[str, str], mine: Mapping[str, str]
) -> tuple[dict[str, str], list[Change], list[str]]:
    """A three-way merge of the form: what someone else changed since `base` is taken unless this person
    changed it too (then theirs is kept in the input and it is reported as clashing). Returns the merged
    values, what the other writer changed, and the inputs both changed."""
    merged: dict[str, str] = {}
    changes: list[Change] = []
    clashes: list[str] = []
    for name in FORM_FIELDS:
        before, other, own = base.get(name, ""), theirs.get(name, ""), mine.get(name, "")
        if other != before:
            changes.append(Change(name, LABELS[name], before, other))
        if own == before:
            merged[name] = other
        else:
            merged[name] = own
            if other != before and other != own:
                clashes.append(name)
    return merged, changes, clashes


def encode_base(values: Mapping[str, str]) -> str:
    return json.dumps(dict(values), separators=(",", ":"))


def decode_base(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {str(key): str(value) for key, value in data.items()} if isinstance(data, dict) else {}


# ---- YAML ---------------------------------------------------------------------------------------------


def yaml_of(site: Site) -> str:
    """The site as a person edits it: what writers set, without status or the server's bookkeeping."""
    document = fields.without_managed(site.to_document(include_status=False))
    metadata = document.get("metadata", {})
    kept = {key: metadata[key] for key in ("name", "labels", "annotations") if metadata.get(key)}
    edited = {
        "apiVersion": document["apiVersion"],
        "kind": document["kind"],
        "metadata": kept,
        "spec": document["spec"],
    }
    text: str = yaml.safe_dump(edited, sort_keys=False, allow_unicode=True)
    return text


def new_site_yaml(owner: str | None) -> str:
    owners = f"\n  owners: [{owner}]" if owner else ""
    return (
        f"apiVersion: {API_VERSION}\nkind: {KIND_SITE}\nmetadata:\n  name: my-site\nspec:\n"
        f"  type: static{owners}\n"
    )
