"""GitSources as dirctl shows and changes them: get, describe, delete, reconcile, suspend and resume."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime
from typing import Any

from cli import kinds
from cli.client import MERGE_TYPE, Api
from cli.output import EVENT_COLUMNS, age, condition, event_row, table, to_yaml

GITSOURCES = "/apis/director.io/v1/gitsources"
KINDS = kinds.GITSOURCES
Document = dict[str, Any]


def _ref(spec: Document) -> str:
    ref = spec.get("ref") or {}
    for kind in ("branch", "tag", "commit"):
        if ref.get(kind):
            return f"{kind} {str(ref[kind])[:12] if kind == 'commit' else ref[kind]}"
    return "-"


def _ready(source: Document) -> tuple[str, str, str]:
    ready = condition(source, "Ready")
    if ready is None:
        return "Unknown", "", ""
    return str(ready.get("status", "Unknown")), str(ready.get("reason", "")), str(ready.get("message", ""))


def show(api: Api, name: str | None, output: str) -> None:
    items: list[Document] = (
        [api.json("GET", f"{GITSOURCES}/{name}")] if name else api.json("GET", GITSOURCES)["items"]
    )
    if output == "json":
        print(json.dumps(items[0] if name else {"items": items}, indent=2))
        return
    if output == "yaml":
        sys.stdout.write(
            to_yaml(
                items[0]
                if name
                else {"apiVersion": "director.io/v1", "kind": "GitSourceList", "items": items}
            )
        )
        return
    if output == "name":
        sys.stdout.write("".join(f"gitsource/{item['metadata']['name']}\n" for item in items))
        return
    if not items:
        print("No gitsources found.", file=sys.stderr)
        return
    rows = []
    for item in items:
        spec, sync = item.get("spec") or {}, (item.get("status") or {}).get("sync") or {}
        ready, reason, message = _ready(item)
        row = [
            item["metadata"]["name"],
            ready,
            reason,
            (sync.get("appliedRevision") or "-")[:12],
            str(len(sync.get("inventory") or [])),
            "True" if spec.get("suspend") else "False",
            age(item["metadata"].get("creationTimestamp")),
        ]
        if output == "wide":
            row += [spec.get("url", ""), _ref(spec), spec.get("applyAs", ""), message]
        rows.append(row)
    headers = ["NAME", "READY", "REASON", "APPLIED", "SITES", "SUSPENDED", "AGE"]
    if output == "wide":
        headers += ["URL", "REF", "APPLY-AS", "MESSAGE"]
    table(headers, rows)


def describe(source: Document, events: list[Document]) -> str:
    metadata, spec, status = source["metadata"], source.get("spec") or {}, source.get("status") or {}
    sync = status.get("sync") or {}
    now = datetime.now(UTC)
    webhook = ((spec.get("webhook") or {}).get("secretRef") or {}).get("name") or "<none>"
    secret = (spec.get("secretRef") or {}).get("name") or "<none>"
    created = metadata.get("creationTimestamp")
    lines = [
        f"Name:          {metadata['name']}",
        f"Created:       {created} ({age(created, now)} ago)",
        f"Generation:    {metadata.get('generation')} (observed: {status.get('observedGeneration', '-')})",
        "Spec:",
        f"  URL:           {spec.get('url')}",
        f"  Ref:           {_ref(spec)}   Path: {spec.get('path') or '/'}   Interval: {spec.get('interval')}",
        f"  Apply as:      {spec.get('applyAs')}   Prune: {spec.get('prune')}   "
        f"Suspended: {spec.get('suspend')}   On deletion: {spec.get('deletionPolicy')}",
        f"  Secret:        {secret}   Webhook secret: {webhook}",
        "Conditions:",
    ]
    conditions = status.get("conditions") or []
    for entry in conditions:
        lines.append(
            f"  {entry.get('type', ''):<12} {entry.get('status', ''):<8} {entry.get('reason', ''):<18} "
            f"{age(entry.get('lastTransitionTime'), now):>5}  {entry.get('message', '')}".rstrip()
        )
    if not conditions:
        lines.append("  <none: the controller has not reported on this source yet>")
    fetched = sync.get("fetchedRevision")
    lines += [
        "Revisions:",
        f"  Fetched:       {fetched or '-'}"
        + (f" ({age(sync.get('fetchedAt'), now)} ago)" if fetched else ""),
        f"  Attempted:     {sync.get('attemptedRevision') or '-'}",
        f"  Applied:       {sync.get('appliedRevision') or '-'}",
        f"Documents:     {sync.get('documents', 0)}",
        f"Inventory:     {', '.join(sync.get('inventory') or []) or '<none>'}",
    ]
    refused = sync.get("refused") or []
    lines.append(f"Refused:       {sync.get('refusedCount', len(refused))}")
    for entry in refused:
        where = entry.get("file", "")
        if entry.get("document") is not None:
            where += f" document {entry['document']}"
        if entry.get("field"):
            where += f" {entry['field']}"
        if entry.get("line") is not None:
            where += f" (line {entry['line']}, column {entry.get('column')})"
        lines.append(f"  {where}: {entry.get('message', '')}")
    history = sync.get("history") or []
    lines.append("History:")
    if history:
        buffer = io.StringIO()
        table(
            ["REVISION", "RESULT", "WHEN", "TOOK", "MESSAGE"],
            [
                [
                    (entry.get("revision") or "")[:12],
                    entry.get("result", ""),
                    f"{age(entry.get('time'), now)} ago",
                    f"{entry.get('durationSeconds', 0):.2f}s",
                    " ".join(str(entry.get("message", "")).split()),
                ]
                for entry in history
            ],
            buffer,
        )
        lines += [f"  {line}" for line in buffer.getvalue().splitlines()]
    else:
        lines.append("  <no revision tried yet>")
    text = "\n".join(lines) + "\nEvents:\n"
    if not events:
        return text + "  <none>\n"
    buffer = io.StringIO()
    table(EVENT_COLUMNS, [event_row(event, now) for event in reversed(events)], buffer)
    return text + "".join(f"  {line}\n" for line in buffer.getvalue().splitlines())


def describe_one(api: Api, name: str, events: int) -> str:
    source = api.json("GET", f"{GITSOURCES}/{name}")
    listed = api.json("GET", f"{GITSOURCES}/{name}/events", params={"limit": max(1, events)})["items"]
    return describe(source, listed)


def delete(api: Api, name: str) -> None:
    response = api.request("DELETE", f"{GITSOURCES}/{name}")
    if response.status_code == 202:
        print(f"gitsource/{name} deleting: the controller orphans or deletes its sites first")
    else:
        print(f"gitsource/{name} deleted")


def patch(api: Api, name: str, body: Document) -> Document:
    result: Document = api.json(
        "PATCH",
        f"{GITSOURCES}/{name}",
        params={"fieldManager": "cli"},
        content=json.dumps(body),
        headers={"Content-Type": MERGE_TYPE},
    )
    return result


def apply(
    api: Api, name: str, document: Document, *, manager: str, force: bool, dry_run: bool
) -> tuple[Document, str]:
    params = (
        {"fieldManager": manager}
        | ({"force": "true"} if force else {})
        | ({"dryRun": "All"} if dry_run else {})
    )
    response = api.request(
        "PATCH",
        f"{GITSOURCES}/{name}",
        params=params,
        content=json.dumps(document),
        headers={"Content-Type": "application/apply-patch+yaml"},
    )
    fallback = "created" if response.status_code == 201 else "configured"
    return response.json(), response.headers.get("Director-Outcome", fallback)
