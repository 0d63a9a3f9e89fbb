"""`dirctl apply -f FILE|DIR|-`: validate Site documents and, later through the API, apply them."""

from __future__ import annotations

import argparse
import sys

from cli import exit_codes
from specs.errors import SpecError
from specs.yamlio import LoadedSite, LoadResult, dump_sites, load_paths

DRY_RUN_MODES = ("none", "client", "server")
OUTPUT_FORMATS = ("yaml", "name")


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "apply",
        help="create or update Sites from YAML files",
        description=(
            "Create or update the Sites described in YAML files. With --dry-run=client every document is "
            "validated offline and nothing is sent anywhere."
        ),
    )
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE|DIR|-",
        help="a YAML file (may hold several documents), a directory of *.yaml/*.yml files, or - for stdin; "
        "repeatable",
    )
    parser.add_argument(
        "--dry-run",
        choices=DRY_RUN_MODES,
        nargs="?",
        const="client",
        default="none",
        help="client: validate offline and print what would be applied; server: ask the API to validate",
    )
    parser.add_argument(
        "-o", "--output", choices=OUTPUT_FORMATS, help="print the objects as YAML, or only their names"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.dry_run != "client":
        print(
            "error: applying to Director (and --dry-run=server) needs the Director API, which this dirctl "
            "does not reach yet; use --dry-run=client to validate offline",
            file=sys.stderr,
        )
        return exit_codes.UNAVAILABLE
    result = load_paths(args.filename)
    errors = [*result.errors, *_duplicate_names(result)]
    _print_objects(result.loaded, args.output)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not result.loaded and not errors:
        print("error: no objects passed to apply", file=sys.stderr)
        return exit_codes.FAILED
    return exit_codes.FAILED if errors else exit_codes.OK


def _print_objects(loaded: list[LoadedSite], output: str | None) -> None:
    if output == "yaml":
        if loaded:
            sys.stdout.write(dump_sites([entry.site for entry in loaded], include_status=False))
        return
    for entry in loaded:
        line = f"site/{entry.site.name}"
        print(line if output == "name" else f"{line} configured (dry run)")


def _duplicate_names(result: LoadResult) -> list[SpecError]:
    # Two documents for one site in one apply: the second would silently win, so say so instead.
    first_seen: dict[str, LoadedSite] = {}
    errors = []
    for entry in result.loaded:
        first = first_seen.setdefault(entry.site.name, entry)
        if first is not entry:
            errors.append(
                SpecError(
                    entry.source,
                    f"site {entry.site.name!r} is also defined in {first.source} document {first.document}",
                    entry.document,
                    "metadata.name",
                )
            )
    return errors
