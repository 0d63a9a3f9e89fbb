"""`dirctl create blockeddomain DOMAIN [--reason TEXT]`: objects that are not Site records."""

from __future__ import annotations

import argparse

from cli import blocked, exit_codes, secrets
from cli.common import api_from, reports_errors


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "create",
        help="create a blocked domain (admins)",
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
