"""`dirctl reconcile site NAME`: ask the controller to reconcile the site now, not at the next resync."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from cli import exit_codes, gitsources, verbs
from cli.common import api_from, parse_target, reports_errors


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("reconcile", help=verbs.SUMMARY["reconcile"])
    parser.add_argument(
        "target", nargs="+", metavar="site NAME", help="`site NAME`, `site/NAME` or `gitsource NAME`"
    )
    parser.set_defaults(run=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    from specs.models import RECONCILE_REQUEST_ANNOTATION

    requested_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    words = args.target[0].split("/", 1) if len(args.target) == 1 else args.target
    if words[0] in gitsources.KINDS and len(words) == 2:
        with api_from(args) as api:
            gitsources.patch(
                api, words[1], {"metadata": {"annotations": {RECONCILE_REQUEST_ANNOTATION: requested_at}}}
            )
        print(f"gitsource/{words[1]} fetch requested at {requested_at}")
        return exit_codes.OK
    name = parse_target(args.target)
    with api_from(args) as api:
        api.patch_site(
            name, {"metadata": {"annotations": {RECONCILE_REQUEST_ANNOTATION: requested_at}}}, manager="cli"
        )
    print(f"site/{name} reconcile requested at {requested_at}")
    return exit_codes.OK
