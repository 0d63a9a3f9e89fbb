"""Users and API tokens as dirctl manages them: `create user`, `get users`, `describe user`, `disable user`,
`enable user`, `delete user`; `create token`, `get tokens`, `delete token`. Administrators manage everyone's;
a user their own tokens."""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from typing import Any

from cli import exit_codes, kinds, verbs
from cli.client import Api
from cli.common import UsageError, api_from, reports_errors
from cli.output import age, table, to_yaml

USERS = "/apis/auth.director.io/v1/users"
TOKENS = "/apis/auth.director.io/v1/tokens"
KINDS = kinds.USERS
TOKEN_KINDS = kinds.TOKENS
Document = dict[str, Any]
_DURATION = re.compile(r"^([1-9][0-9]*)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The verbs only users have: `disable user NAME` and `enable user NAME`."""
    for verb, disabled, meaning in (
        (
            "disable",
            True,
            "Refuse the user's tokens, sessions and SSH logins at once; their sites keep running.",
        ),
        ("enable", False, "Let a disabled user in again."),
    ):
        parser = subcommands.add_parser(verb, help=verbs.SUMMARY[verb], description=meaning)
        parser.add_argument("target", nargs="+", metavar="user NAME", help="`user NAME` or `user/NAME`")
        parser.set_defaults(run=run_set_disabled, disabled=disabled)


def expires_in_seconds(text: str) -> int:
    """`--expires 30d` (or 12h, 90m, 3600s) as seconds."""
    matched = _DURATION.match(text.strip())
    if matched is None:
        raise UsageError(f"--expires must be a duration such as 30d, 12h or 90m, got {text!r}")
    return int(matched.group(1)) * _UNIT_SECONDS[matched.group(2)]


def user_target(words: list[str]) -> str:
    parts = words[0].split("/", 1) if len(words) == 1 else words
    if len(parts) != 2 or parts[0] not in KINDS or not parts[1]:
        raise UsageError("name the user: `user NAME` or `user/NAME`")
    return parts[1]


@reports_errors
def run_set_disabled(args: argparse.Namespace) -> int:
    name = user_target(args.target)
    with api_from(args) as api:
        api.json(
            "PATCH",
            f"{USERS}/{name}",
            json={"spec": {"disabled": args.disabled}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
    print(f"user/{name} {'disabled' if args.disabled else 'enabled'}")
    return exit_codes.OK


# ---- users -------------------------------------------------------------------------------------------


def create_user(api: Api, name: str, *, admin: bool, password: str | None) -> None:
    body: Document = {"apiVersion": "auth.director.io/v1", "kind": "User", "metadata": {"name": name}}
    body["spec"] = {"admin": admin}
    if password is not None:
        body["password"] = password
    created = api.json("POST", USERS, json=body)
    print(f"user/{name} created{' (admin)' if admin else ''}")
    if "password" in created:
        print(f"password: {created['password']}   (shown once: hand it to {name})")


def read_password(stream: Any) -> str:
    """The first line of standard input, without its line end: `--password-stdin`."""
    password = str(stream.readline()).rstrip("\r\n")
    if not password:
        raise UsageError("--password-stdin: standard input held no password")
    return password


def _yes(value: object) -> str:
    return "yes" if value else "no"


def show_users(api: Api, name: str | None, output: str) -> None:
    items: list[Document] = [api.json("GET", f"{USERS}/{name}")] if name else api.json("GET", USERS)["items"]
    if output in ("json", "yaml"):
        document = items[0] if name else {"items": items}
        sys.stdout.write(json.dumps(document, indent=2) + "\n" if output == "json" else to_yaml(document))
    elif output == "name":
        sys.stdout.write("".join(f"user/{item['metadata']['name']}\n" for item in items))
    else:
        rows = []
        for item in items:
            status = item.get("status") or {}
            sites = status.get("siteCount", len(status.get("sites") or []))
            rows.append(
                [
                    item["metadata"]["name"],
                    _yes(item["spec"].get("admin")),
                    _yes(item["spec"].get("disabled")),
                    str(sites),
                    age(item["metadata"].get("creationTimestamp")),
                    age(status["lastLogin"]) if status.get("lastLogin") else "never",
                ]
            )
        table(["NAME", "ADMIN", "DISABLED", "SITES", "AGE", "LAST-LOGIN"], rows)


def describe_user(api: Api, name: str) -> str:
    user = api.json("GET", f"{USERS}/{name}")
    spec, status = user["spec"], user.get("status") or {}
    lines = [
        f"Name:        {user['metadata']['name']}",
        f"Admin:       {_yes(spec.get('admin'))}",
        f"Disabled:    {_yes(spec.get('disabled'))}",
        f"Created:     {user['metadata'].get('creationTimestamp')}",
        f"Last login:  {status.get('lastLogin') or 'never'}",
        f"Password:    {'set' if status.get('hasPassword') else 'none (tokens only)'}",
        f"Sites:       {', '.join(status.get('sites') or []) or '<none>'}",
        "Tokens:",
    ]
    tokens = status.get("tokens") or []
    lines += [f"  {row}" for row in _token_rows_text(tokens).splitlines()] if tokens else ["  <none>"]
    lines.append("SSH keys:")
    keys = status.get("sshKeys") or []
    lines += [f"  {key['name']}   {key['fingerprint']}" for key in keys] if keys else ["  <none>"]
    return "\n".join(lines) + "\n"


def delete_user(api: Api, name: str, reassign_to: str | None) -> None:
    params = {"reassignTo": reassign_to} if reassign_to else {}
    api.json("DELETE", f"{USERS}/{name}", params=params | {"fieldManager": "cli"})
    print(f"user/{name} deleted" + (f" (their sites are now {reassign_to}'s)" if reassign_to else ""))


# ---- tokens ------------------------------------------------------------------------------------------


def create_token(api: Api, name: str, user: str | None, expires: str | None) -> None:
    body: Document = {"name": name}
    if expires:
        body["expiresInSeconds"] = expires_in_seconds(expires)
    created = api.json("POST", TOKENS, json=body, params={"user": user} if user else {})
    owner, expires_at = created["user"], created["expires"]
    print(f"token/{created['id']} created for {owner} ({created['name']}), expires {expires_at}")
    print(f"secret: {created['token']}   (shown once: keep it now)")


TOKEN_COLUMNS = ["ID", "NAME", "USER", "PREFIX", "SCOPE", "EXPIRES", "LAST-USED"]


def _token_row(token: Document) -> list[str]:
    return [
        str(token["id"]),
        token["name"],
        token["user"],
        token["prefix"] + "...",
        token.get("scope") or "-",
        str(token["expires"])[:19] + "Z",
        f"{age(token['lastUsed'])} ago" if token.get("lastUsed") else "never",
    ]


def _token_rows_text(tokens: list[Document]) -> str:
    buffer = io.StringIO()
    table(TOKEN_COLUMNS, [_token_row(token) for token in tokens], buffer)
    return buffer.getvalue()


def show_tokens(api: Api, user: str | None, output: str) -> None:
    items: list[Document] = api.json("GET", TOKENS, params={"user": user} if user else {})["items"]
    if output in ("json", "yaml"):
        document = {"items": items}
        sys.stdout.write(json.dumps(document, indent=2) + "\n" if output == "json" else to_yaml(document))
    elif output == "name":
        sys.stdout.write("".join(f"token/{item['id']}\n" for item in items))
    elif items:
        sys.stdout.write(_token_rows_text(items))
    else:
        print("No tokens found.", file=sys.stderr)


def delete_token(api: Api, token_id: str) -> None:
    if not token_id.isdigit():
        raise UsageError(
            f"a token is named by its ID (a number, as `dirctl get tokens` shows), got {token_id!r}"
        )
    api.json("DELETE", f"{TOKENS}/{token_id}")
    print(f"token/{token_id} deleted (revoked, with every token made with it)")
