"""`dirctl diff -f FILE`: what applying would change, as a unified diff of YAML. Exit codes as kubectl:
0 no difference, 1 differences, 2 or more an error."""

from __future__ import annotations

import argparse
import difflib
import sys

from cli import exit_codes, verbs
from cli.client import ApiCallError
from cli.common import api_from, error
from cli.config import ConfigError
from cli.documents import comparable, intent
from cli.output import to_yaml


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "diff",
        help=verbs.SUMMARY["diff"],
        description="Compare the live sites with what applying the files would make of them (the server "
        "computes it with a dry run, so defaults and other managers' fields are accounted for).",
    )
    parser.add_argument("-f", "--filename", action="append", required=True, metavar="FILE|DIR|-")
    parser.add_argument("--field-manager", default="cli", help="the manager the apply would be made as")
    parser.add_argument("--force-conflicts", action="store_true", help="diff as if conflicts were forced")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from specs.yamlio import load_paths

    loaded = load_paths(args.filename)
    for problem in loaded.errors:
        error(str(problem))
    if not loaded.ok:
        return exit_codes.USAGE
    differences = False
    try:
        with api_from(args) as api:
            for site in loaded.sites:
                live = api.find_site(site.name)
                merged, _ = api.apply_site(
                    site.name,
                    intent(site),
                    manager=args.field_manager,
                    force=args.force_conflicts,
                    dry_run=True,
                )
                before = to_yaml(comparable(live)) if live is not None else ""
                after = to_yaml(comparable(merged))
                if before != after:
                    differences = True
                    sys.stdout.writelines(
                        difflib.unified_diff(
                            before.splitlines(keepends=True),
                            after.splitlines(keepends=True),
                            fromfile=f"live/site/{site.name}",
                            tofile=f"merged/site/{site.name}",
                        )
                    )
    except (ApiCallError, ConfigError) as failure:
        error(str(failure))
        # kubectl's convention: any error is above 1, whatever it is.
        return max(exit_codes.USAGE, getattr(failure, "exit_code", exit_codes.UNAVAILABLE))
    return exit_codes.FAILED if differences else exit_codes.OK
