"""`dirctl logs NAME [-f]`: a dynamic site's service logs."""

from __future__ import annotations

import argparse
import sys

from cli import exit_codes, verbs
from cli.common import api_from, reports_errors


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("logs", help=verbs.SUMMARY["logs"])
    parser.add_argument("name", help="the site's name")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    parser.set_defaults(run=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    with api_from(args) as api:
        for text in api.logs(args.name, follow=args.follow, tail=args.tail):
            sys.stdout.write(text)
            sys.stdout.flush()
    return exit_codes.OK
