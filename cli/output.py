"""How dirctl prints sites and events: aligned tables, YAML, JSON or bare names."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml

Document = dict[str, Any]
OUTPUT_FORMATS = ("wide", "yaml", "json", "name")
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(value: str | None, now: datetime | None = None) -> str:
    """kubectl's short ages: 42s, 7m, 5h, 3d."""
    moment = parse_time(value)
    if moment is None:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    if seconds >= 2 * 86400:
        return f"{seconds // 86400}d"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600}h"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def condition(site: Document, kind: str) -> Document | None:
    for entry in (site.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return None


def table_text(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    materialized = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in materialized) for i in range(len(headers))]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in materialized
    ]
    return "\n".join(lines) + "\n"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], out: TextIO = sys.stdout) -> None:
    out.write(table_text(headers, rows))


def print_sites(sites: list[Document], output: str, *, single: bool, out: TextIO = sys.stdout) -> None:
    """YAML or JSON: one site as itself, a listing as a SiteList (as kubectl prints a List)."""
    document: Any = (
        sites[0] if single else {"apiVersion": "director.io/v1", "kind": "SiteList", "items": sites}
    )
    if output == "json":
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(to_yaml(document))


def to_yaml(document: Any) -> str:
    return str(yaml.dump(document, Dumper=_Dumper, sort_keys=False))


EVENT_COLUMNS = ["LAST SEEN", "SITE", "GEN", "STEP", "RESULT", "COUNT", "MESSAGE"]


def event_row(event: Document, now: datetime) -> list[str]:
    return [
        age(event.get("lastTime"), now),
        str(event.get("site", "")),
        str(event.get("generation") or "-"),
        str(event.get("step", "")),
        str(event.get("result", "")),
        str(event.get("count", 1)),
        " ".join(str(event.get("message", "")).split()),
    ]
