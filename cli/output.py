"""How dirctl prints sites and events: aligned tables, YAML, JSON or bare names."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

Document = dict[str, Any]
OUTPUT_FORMATS = ("wide", "yaml", "json", "name")


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


def table_text(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns three spaces apart, each cell as str() shows it. One format string for every
    line: a listing of 10,000 sites is formatted in C, not cell by cell in Python."""
    lines = [headers, *rows]
    widths = [max(map(len, map(str, column))) for column in zip(*lines, strict=True)]
    line = "   ".join([*(f"{{!s:<{width}}}" for width in widths[:-1]), "{!s}"]).format
    return "\n".join([line(*cells).rstrip() for cells in lines]) + "\n"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], out: TextIO = sys.stdout) -> None:
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
    import yaml  # PyYAML takes about 15 ms to load: only for what is shown as YAML

    return str(yaml.dump(document, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False))


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
