"""`dirctl describe site NAME`: the spec in brief, conditions, URLs, tasks and the last events; and
`dirctl describe platform edge`: the network, the edge on each node and the revisions it serves."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime
from typing import Any

from cli import exit_codes, gitsources, platform, users, verbs
from cli.common import api_from, parse_target, reports_errors
from cli.output import EVENT_COLUMNS, age, event_row, table

Document = dict[str, Any]


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("describe", help=verbs.SUMMARY["describe"])
    parser.add_argument(
        "target", nargs="+", metavar="site NAME", help="`site NAME`, `site/NAME` or `platform edge`"
    )
    parser.add_argument("--events", type=int, default=10, metavar="N", help="how many recent events to show")
    parser.set_defaults(run=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    words = args.target[0].split("/", 1) if len(args.target) == 1 else args.target
    if words[0] in users.KINDS and len(words) == 2:
        with api_from(args) as api:
            print(users.describe_user(api, words[1]), end="")
        return exit_codes.OK
    if words[0] in gitsources.KINDS and len(words) == 2:
        with api_from(args) as api:
            print(gitsources.describe_one(api, words[1], args.events), end="")
        return exit_codes.OK
    if words[0] in platform.KINDS:
        with api_from(args) as api:
            record = api.json("GET", f"{platform.PLATFORMS}/{words[1] if len(words) > 1 else 'edge'}")
        print(platform.describe(record), end="")
        return exit_codes.OK
    name = parse_target(args.target)
    with api_from(args) as api:
        site = api.get_site(name)
        events = api.events(name, limit=max(1, args.events))
    print(describe(site, events), end="")
    return exit_codes.OK


def _mapping(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in values.items()) or "<none>"


def describe(site: Document, events: list[Document]) -> str:
    metadata, spec, status = site["metadata"], site.get("spec") or {}, site.get("status") or {}
    now = datetime.now(UTC)
    created = metadata.get("creationTimestamp")
    resources = spec.get("resources") or {}
    lines = [
        f"Name:          {metadata['name']}",
        f"Labels:        {_mapping(metadata.get('labels') or {})}",
        f"Annotations:   {_mapping(metadata.get('annotations') or {})}",
        f"Created:       {created} ({age(created, now)} ago)",
        f"Generation:    {metadata.get('generation')} (observed: {status.get('observedGeneration', '-')})",
        f"Resource ver.: {metadata.get('resourceVersion')}",
    ]
    if metadata.get("deletionTimestamp"):
        lines.append(
            f"Deleting:      since {metadata['deletionTimestamp']}, "
            f"waiting for {', '.join(metadata.get('finalizers') or []) or 'nothing'}"
        )
    lines += [
        "Spec:",
        f"  Type:          {spec.get('type')}   Purpose: {spec.get('purpose')}   "
        f"Availability: {spec.get('availability')}",
        f"  Owners:        {', '.join(spec.get('owners') or []) or '<none>'}",
        f"  Domains:       {', '.join(spec.get('domains') or []) or '<none>'}",
    ]
    if spec.get("type") == "dynamic":
        lines += [
            f"  Image:         {spec.get('image')}",
            f"  Command:       {' '.join(spec['command']) if spec.get('command') else '<image default>'}",
            f"  Replicas:      {spec.get('replicas')}",
            f"  Env:           {', '.join(sorted(spec.get('env') or {})) or '<none>'}",
        ]
        if spec.get("healthCheck"):
            check = spec["healthCheck"]
            lines.append(
                f"  Health check:  GET {check.get('path')} every {check.get('interval')}, "
                f"timeout {check.get('timeout')}, {check.get('retries')} retries"
            )
    lines.append(
        f"  Resources:     cpus {resources.get('cpus')}, memory {resources.get('memory')}, "
        f"uploads up to {resources.get('uploadLimit')}"
    )
    lines.append("Conditions:")
    conditions = status.get("conditions") or []
    if conditions:
        for entry in conditions:
            lines.append(
                f"  {entry.get('type', ''):<12} {entry.get('status', ''):<8} {entry.get('reason', ''):<20} "
                f"{age(entry.get('lastTransitionTime'), now):>5}  {entry.get('message', '')}".rstrip()
            )
    else:
        lines.append("  <none: the controller has not reported on this site yet>")
    lines.append(f"URLs:          {', '.join(status.get('urls') or []) or '<none>'}")
    service = status.get("service")
    if service:
        update = f", update {service['updateState']}" if service.get("updateState") else ""
        tasks = f"{service.get('runningTasks', 0)}/{service.get('desiredTasks', 0)}"
        lines.append(f"Tasks:         {tasks} running{update}")
    last = status.get("lastReconcile")
    if last:
        lines.append(
            f"Last reconcile: {last.get('result')} {age(last.get('time'), now)} ago "
            f"({last.get('trigger', '')}) {last.get('message', '')}".rstrip()
        )
    text = "\n".join(lines) + "\nEvents:\n"
    if not events:
        return text + "  <none>\n"
    buffer = io.StringIO()
    table(EVENT_COLUMNS, [event_row(event, now) for event in reversed(events)], buffer)
    return text + "".join(f"  {line}\n" for line in buffer.getvalue().splitlines())
