"""`dirctl create blockeddomain|secret|user|token ...`: objects that are not Site records."""

from __future__ import annotations

import argparse
import sys

from cli import blocked, exit_codes, secrets, users, verbs
from cli.common import api_from, reports_errors


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "create",
        help=verbs.SUMMARY["create"],
        description="Create an object that is not a Site record. Sites are created with `dirctl apply`.",
    )
    kinds = parser.add_subparsers(title="kinds", metavar="KIND", required=True)
    domain = kinds.add_parser(
        "blockeddomain",
        help="a domain no site may claim, with every name under it (admins)",
        description="Block a domain: no site may claim it or any name under it. Sites serving it keep it.",
    )
    domain.add_argument("domain", help="such as example.org")
    domain.add_argument("--reason", default="", help="shown to whoever is refused the domain")
    domain.set_defaults(run=run_blocked_domain)
    secret = kinds.add_parser(
        "secret",
        help="credentials a gitsource names (never shown again)",
        description=(
            "Store credentials for a GitSource: username + password (or token) for https, identity "
            "(+ known_hosts) for ssh, hmac for a webhook. The API never returns a value."
        ),
    )
    secret.add_argument("name", help="such as robotics-git")
    secret.add_argument("--from-literal", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    secret.add_argument("--from-file", action="append", default=[], metavar="KEY=PATH", help="repeatable")
    secret.add_argument("--owner", help="whose secret it is (admins; default: yours)")
    secret.set_defaults(run=run_secret)
    user = kinds.add_parser(
        "user",
        help="a user who can log in and own sites (admins)",
        description="Create a user. Without --password-stdin a password is made and shown once.",
    )
    user.add_argument("name", help="the name spec.owners will use, such as alice")
    user.add_argument("--admin", action="store_true", help="an administrator")
    user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user.set_defaults(run=run_user)
    token = kinds.add_parser(
        "token",
        help="an API token (shown once)",
        description=(
            "Make an API token. Your own is made with your current token and ends no later than it; an admin "
            "makes one for another user with --user."
        ),
    )
    token.add_argument("--name", required=True, help="what it is for, such as ci")
    token.add_argument("--user", help="whose token (admins; default: yours)")
    token.add_argument("--expires", metavar="DURATION", help="such as 30d, 12h or 90m (default: the longest)")
    token.set_defaults(run=run_token)


@reports_errors
def run_user(args: argparse.Namespace) -> int:
    password = users.read_password(sys.stdin) if args.password_stdin else None
    with api_from(args) as api:
        users.create_user(api, args.name, admin=args.admin, password=password)
    return exit_codes.OK


@reports_errors
def run_token(args: argparse.Namespace) -> int:
    with api_from(args) as api:
        users.create_token(api, args.name, args.user, args.expires)
    return exit_codes.OK


@reports_errors
def run_secret(args: argparse.Namespace) -> int:
    data = secrets.string_data(args.from_literal, args.from_file)
    with api_from(args) as api:
        secrets.create(api, args.name, data, args.owner)
    return exit_codes.OK


@reports_errors
def run_blocked_domain(args: argparse.Namespace) -> int:
    with api_from(args) as api:
        blocked.create(api, args.domain, args.reason)
    return exit_codes.OK
