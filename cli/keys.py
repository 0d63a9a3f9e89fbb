"""`dirctl keys add|list|delete`: the SSH public keys one logs in to the shell server with."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli import exit_codes, verbs
from cli.common import UsageError, api_from, reports_errors
from cli.output import age, table, to_yaml

SSH_KEYS = "/apis/auth.director.io/v1/sshkeys"


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "keys",
        help=verbs.SUMMARY["keys"],
        description="Add, list and delete the SSH public keys you log in to Director's SSH shell with.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a public key (a .pub file, or - for standard input)")
    add.add_argument("file", help="such as ~/.ssh/id_ed25519.pub")
    add.add_argument("--name", help="what to call it (default: the key file's comment, such as alice@laptop)")
    add.set_defaults(run=run_add)
    listed = actions.add_parser("list", help="list your keys")
    listed.add_argument("-o", "--output", choices=["json", "yaml", "name"], help="output format")
    listed.set_defaults(run=run_list)
    delete = actions.add_parser("delete", help="delete a key by name")
    delete.add_argument("name")
    delete.set_defaults(run=run_delete)


def _read_key(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    path = Path(file).expanduser()
    if path.suffix != ".pub" and path.with_name(path.name + ".pub").exists():
        raise UsageError(f"{file} looks like a private key; add {file}.pub, the public half")
    try:
        return path.read_text()
    except OSError as error:
        raise UsageError(f"cannot read {file}: {error.strerror}") from None


@reports_errors
def run_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"publicKey": _read_key(args.file)}
    if args.name:
        body["name"] = args.name
    with api_from(args) as api:
        key = api.json("POST", SSH_KEYS, json=body)
    print(f"sshkey/{key['name']} added ({key['fingerprint']})")
    return exit_codes.OK


@reports_errors
def run_list(args: argparse.Namespace) -> int:
    with api_from(args) as api:
        items: list[dict[str, Any]] = api.json("GET", SSH_KEYS)["items"]
    if args.output == "json":
        print(json.dumps({"items": items}, indent=2))
    elif args.output == "yaml":
        sys.stdout.write(to_yaml({"items": items}))
    elif args.output == "name":
        sys.stdout.write("".join(f"sshkey/{item['name']}\n" for item in items))
    elif items:
        rows = [
            [
                item["name"],
                item["fingerprint"],
                age(item.get("created")),
                age(item["lastUsed"]) if item.get("lastUsed") else "never",
            ]
            for item in items
        ]
        table(["NAME", "FINGERPRINT", "AGE", "LAST-USED"], rows)
    else:
        print("No SSH keys; add one with `dirctl keys add ~/.ssh/id_ed25519.pub`.", file=sys.stderr)
    return exit_codes.OK


@reports_errors
def run_delete(args: argparse.Namespace) -> int:
    with api_from(args) as api:
        api.json("DELETE", f"{SSH_KEYS}/{args.name}")
    print(f"sshkey/{args.name} deleted")
    return exit_codes.OK
