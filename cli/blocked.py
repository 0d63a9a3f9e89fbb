"""The admins' blocked domains, as `create`, `get` and `delete` show and change them."""

from __future__ import annotations

import json
import sys
from typing import Any

from cli import kinds
from cli.client import Api
from cli.output import age, table, to_yaml

BLOCKED = "/apis/director.io/v1/blockeddomains"
KINDS = kinds.BLOCKED_DOMAINS
Document = dict[str, Any]


def create(api: Api, domain: str, reason: str) -> None:
    body = {"apiVersion": "director.io/v1", "kind": "BlockedDomain", "metadata": {"name": domain}}
    api.json("POST", BLOCKED, json=body | {"spec": {"reason": reason}})
    print(f"blockeddomain/{domain} created")


def delete(api: Api, domain: str) -> None:
    api.json("DELETE", f"{BLOCKED}/{domain}")
    print(f"blockeddomain/{domain} deleted")


def show(api: Api, domain: str | None, output: str) -> None:
    items: list[Document] = (
        [api.json("GET", f"{BLOCKED}/{domain}")] if domain else api.json("GET", BLOCKED)["items"]
    )
    if output == "json":
        print(json.dumps(items[0] if domain else {"items": items}, indent=2))
    elif output == "yaml":
        sys.stdout.write(to_yaml(items[0] if domain else {"items": items}))
    elif output == "name":
        sys.stdout.write("".join(f"blockeddomain/{item['metadata']['name']}\n" for item in items))
    elif items:
        rows = [
            [
                item["metadata"]["name"],
                item["spec"].get("blockedBy", ""),
                age(item["metadata"].get("creationTimestamp")),
                item["spec"].get("reason", ""),
            ]
            for item in items
        ]
        table(["DOMAIN", "BLOCKED-BY", "AGE", "REASON"], rows)
    else:
        print("No blocked domains.", file=sys.stderr)
