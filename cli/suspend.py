"""`dirctl suspend gitsource NAME` and `dirctl resume gitsource NAME`: hold a source's revisions and drift
correction, and let them go again."""

from __future__ import annotations

import argparse

from cli import exit_codes, gitsources, verbs
from cli.common import UsageError, api_from, reports_errors


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, suspended in (("suspend", True), ("resume", False)):
        parser = subcommands.add_parser(verb, help=verbs.SUMMARY[verb])
        parser.add_argument("target", nargs="+", metavar="gitsource NAME", help="`gitsource NAME`")
        parser.set_defaults(run=run, suspend=suspended)


def source_name(words: list[str]) -> str:
    """`gitsource NAME` or `gitsource/NAME` -> NAME; UsageError otherwise."""
    if len(words) == 1 and "/" in words[0]:
        words = words[0].split("/", 1)
    if len(words) != 2 or words[0] not in gitsources.KINDS or not words[1]:
        raise UsageError("name a gitsource as `gitsource NAME` or `gitsource/NAME`")
    return words[1]


@reports_errors
def run(args: argparse.Namespace) -> int:
    name = source_name(args.target)
    with api_from(args) as api:
        gitsources.patch(api, name, {"spec": {"suspend": args.suspend}})
    print(f"gitsource/{name} {'suspended' if args.suspend else 'resumed'}")
    return exit_codes.OK
