"""Secrets as dirctl creates, lists and deletes them: values go in, and never come back out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cli import kinds
from cli.client import Api
from cli.common import UsageError
from cli.output import age, table, to_yaml

SECRETS = "/apis/director.io/v1/secrets"
KINDS = kinds.SECRETS
MAX_FILE_BYTES = 64 * 1024
Document = dict[str, Any]


def _pair(text: str, option: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise UsageError(f"{option} takes KEY=VALUE, got {text!r}")
    return key, value


def string_data(literals: list[str], files: list[str]) -> dict[str, str]:
    """The secret's keys and values from --from-literal KEY=VALUE and --from-file KEY=PATH."""
    data: dict[str, str] = {}
    for literal in literals:
        key, value = _pair(literal, "--from-literal")
        data[key] = value
    for given in files:
        key, path = _pair(given, "--from-file")
        try:
            with Path(path).open("rb") as handle:
                content = handle.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            raise UsageError(f"--from-file {key}: {path} cannot be read: {error.strerror or error}") from None
        if len(content) > MAX_FILE_BYTES:
            raise UsageError(f"--from-file {key}: {path} is larger than {MAX_FILE_BYTES // 1024} KiB")
        try:
            data[key] = content.decode()
        except UnicodeDecodeError:
            raise UsageError(f"--from-file {key}: {path} is not text (UTF-8)") from None
    if not data:
        raise UsageError("give the secret's values: --from-literal KEY=VALUE or --from-file KEY=PATH")
    return data


def create(api: Api, name: str, data: dict[str, str], owner: str | None) -> None:
    params = {"owner": owner} if owner else {}
    body = {"apiVersion": "director.io/v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}
    created = api.json("POST", SECRETS, json=body, params=params)
    print(f"secret/{name} created (keys: {', '.join(created.get('keys') or [])})")


def delete(api: Api, name: str, owner: str | None) -> None:
    api.json("DELETE", f"{SECRETS}/{name}", params={"owner": owner} if owner else {})
    print(f"secret/{name} deleted")


def show(api: Api, name: str | None, output: str, owner: str | None = None) -> None:
    params = {"owner": owner} if owner else {}
    items: list[Document] = (
        [api.json("GET", f"{SECRETS}/{name}", params=params)]
        if name
        else api.json("GET", SECRETS, params=params)["items"]
    )
    if output == "json":
        print(json.dumps(items[0] if name else {"items": items}, indent=2))
    elif output == "yaml":
        sys.stdout.write(to_yaml(items[0] if name else {"items": items}))
    elif output == "name":
        sys.stdout.write("".join(f"secret/{item['metadata']['name']}\n" for item in items))
    elif items:
        rows = [
            [
                item["metadata"]["name"],
                item["metadata"].get("owner", ""),
                ", ".join(item.get("keys") or []),
                age(item["metadata"].get("creationTimestamp")),
            ]
            for item in items
        ]
        table(["NAME", "OWNER", "KEYS", "AGE"], rows)
    else:
        print("No secrets found.", file=sys.stderr)
