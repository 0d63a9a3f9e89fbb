"""The record of accepted writes, as dirctl shows it: `dirctl get writes [--site NAME] [--user NAME]`, and
who made each generation in `dirctl rollout history site NAME`."""

from __future__ import annotations

import json
import sys
from typing import Any

from cli import kinds
from cli.client import Api
from cli.output import table, to_yaml

WRITES = "/apis/director.io/v1/writes"
KINDS = kinds.WRITES
Document = dict[str, Any]
COLUMNS = ["TIME", "USER", "SITE", "OPERATION", "MANAGER", "GENERATION"]


def when(write: Document) -> str:
    """The write's time to the second, as people compare them."""
    return str(write["time"])[:19].replace("T", " ") + "Z"


def list_writes(api: Api, *, site: str | None, user: str | None, limit: int | None = None) -> list[Document]:
    params = {key: value for key, value in (("site", site), ("user", user)) if value}
    if limit is not None:
        params["limit"] = str(limit)
    items: list[Document] = api.json("GET", WRITES, params=params)["items"]
    return items


def show(api: Api, *, site: str | None, user: str | None, output: str) -> None:
    items = list_writes(api, site=site, user=user)
    if output in ("json", "yaml"):
        document = {"items": items}
        sys.stdout.write(json.dumps(document, indent=2) + "\n" if output == "json" else to_yaml(document))
    elif items:
        rows = [
            [
                when(item),
                item["user"],
                item["site"],
                item["operation"],
                item["fieldManager"],
                "-" if item.get("generation") is None else str(item["generation"]),
            ]
            for item in items
        ]
        table(COLUMNS, rows)
    else:
        print("No writes found.", file=sys.stderr)


def by_generation(writes: list[Document], created: str | None) -> dict[int, Document]:
    """The write that made each generation of the site as it is now: the first with that generation since the
    site was created (a site deleted and made again under its name starts over at generation 1)."""
    since = (created or "")[:19]
    made: dict[int, Document] = {}
    for write in sorted(writes, key=lambda each: str(each["time"])):
        generation = write.get("generation")
        if generation is None or write["operation"] == "delete" or str(write["time"])[:19] < since:
            continue
        made.setdefault(int(generation), write)
    return made
