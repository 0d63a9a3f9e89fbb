"""`dirctl wait --for=condition=Ready site/NAME` (or `--for=delete`)."""

from __future__ import annotations

import argparse

from cli import exit_codes, verbs
from cli.common import api_from, error, parse_target, reports_errors
from cli.waiting import parse_timeout, wait_for_condition, wait_for_deletion

CONDITIONS = ("Ready", "Reconciling", "Stalled")


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("wait", help=verbs.SUMMARY["wait"])
    parser.add_argument("target", nargs="+", metavar="site/NAME", help="`site/NAME` or `site NAME`")
    parser.add_argument(
        "--for", dest="wait_for", required=True, help="condition=Ready (or another) or delete"
    )
    parser.add_argument("--timeout", default="5m", type=parse_timeout, help="give up after (default 5m)")
    parser.set_defaults(run=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    name = parse_target(args.target)
    with api_from(args) as api:
        if args.wait_for == "delete":
            return wait_for_deletion(api, [name], args.timeout)
        kind, _, value = args.wait_for.partition("=")
        if kind != "condition" or value not in CONDITIONS:
            error(
                f"--for must be condition=Ready, condition=Reconciling, condition=Stalled or delete, "
                f"not {args.wait_for!r}"
            )
            return exit_codes.USAGE
        api.get_site(name)
        return wait_for_condition(api, [name], value, args.timeout)
