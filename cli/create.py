"""`dirctl create blockeddomain DOMAIN [--reason TEXT]`: objects that are not Site records."""

from __future__ import annotations

import argparse

from cli import blocked, exit_codes
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


@reports_errors
def run_blocked_domain(args: argparse.Namespace) -> int:
    with api_from(args) as api:
        blocked.create(api, args.domain, args.reason)
    return exit_codes.OK
