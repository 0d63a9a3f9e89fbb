"""The platform record (`edge`), as `get platform` and `describe platform` show it."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from cli import kinds
from cli.client import Api
from cli.output import age, condition, table, to_yaml

PLATFORMS = "/apis/director.io/v1/platforms"
KINDS = kinds.PLATFORMS
Document = dict[str, Any]


def _ready(platform: Document) -> str:
    ready = condition(platform, "Ready")
    return ready.get("status", "Unknown") if ready else "Unknown"


def show(api: Api, name: str | None, output: str) -> None:
    items: list[Document] = (
        [api.json("GET", f"{PLATFORMS}/{name}")] if name else api.json("GET", PLATFORMS)["items"]
    )
    if output == "json":
        print(json.dumps(items[0] if name else {"items": items}, indent=2))
        return
    if output == "yaml":
        sys.stdout.write(to_yaml(items[0] if name else {"items": items}))
        return
    if output == "name":
        sys.stdout.write("".join(f"platform/{item['metadata']['name']}\n" for item in items))
        return
    rows = []
    for item in items:
        edge = (item.get("status") or {}).get("platform") or {}
        nodes = f"{edge.get('runningNodes', 0)}/{edge.get('desiredNodes', 0)}"
        rows.append(
            [
                item["metadata"]["name"],
                _ready(item),
                nodes,
                edge.get("routesRevision") or "-",
                age(item["metadata"].get("creationTimestamp")),
            ]
        )
    table(["NAME", "READY", "NODES", "ROUTES", "AGE"], rows)


def describe(platform: Document) -> str:
    metadata, spec, status = platform["metadata"], platform.get("spec") or {}, platform.get("status") or {}
    now = datetime.now(UTC)
    edge = status.get("platform") or {}
    created = metadata.get("creationTimestamp")
    lines = [
        f"Name:          {metadata['name']}",
        f"Created:       {created} ({age(created, now)} ago)",
        f"Sites domain:  {spec.get('sitesDomain')}   HTTP port: {spec.get('httpPort')}",
        "Conditions:",
    ]
    for entry in status.get("conditions") or []:
        lines.append(
            f"  {entry.get('type', ''):<12} {entry.get('status', ''):<8} {entry.get('reason', ''):<20} "
            f"{age(entry.get('lastTransitionTime'), now):>5}  {entry.get('message', '')}".rstrip()
        )
    if not status.get("conditions"):
        lines.append("  <none: the controller has not reported on the platform yet>")
    lines += [
        f"Network:       {edge.get('network', '-')} ({edge.get('networkId') or 'not created'})",
        f"Edge:          service {edge.get('service', '-')}, running on "
        f"{edge.get('runningNodes', 0)} of {edge.get('desiredNodes', 0)} nodes",
        f"Revisions:     edge {edge.get('edgeRevision') or '-'}, routes {edge.get('routesRevision') or '-'}",
        "Nodes:",
    ]
    tasks = edge.get("tasks") or []
    if tasks:
        for task in tasks:
            state = task.get("state", "")
            desired = task.get("desiredState", "")
            lines.append(
                f"  {task.get('node', ''):<14} {state:<10} (desired {desired:<8}) "
                f"{age(task.get('since'), now):>5}  {task.get('message', '')}".rstrip()
            )
    else:
        lines.append("  <no edge task on any node>")
    last = status.get("lastReconcile")
    if last:
        lines.append(
            f"Last reconcile: {last.get('result')} {age(last.get('time'), now)} ago "
            f"({last.get('trigger', '')}) {last.get('message', '')}".rstrip()
        )
    return "\n".join(lines) + "\n"
