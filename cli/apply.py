"""`dirctl apply -f FILE|DIR|-`: validate Site and GitSource documents, then apply them through the API
(server-side)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli import exit_codes, gitsources, verbs
from cli.client import Api, ApiCallError
from cli.common import api_from, reports_errors
from cli.documents import intent
from cli.output import to_yaml
from cli.waiting import parse_timeout, wait_for_condition

if TYPE_CHECKING:
    from specs.errors import SpecError
    from specs.yamlio import Kinds, LoadedResource, LoadedSite, LoadResult

DRY_RUN_MODES = ("none", "client", "server")
OUTPUT_FORMATS = ("yaml", "name")


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "apply",
        help=verbs.SUMMARY["apply"],
        description=(
            "Create or update the Sites and GitSources described in YAML files. With --dry-run=client every "
            "document is validated offline and nothing is sent anywhere."
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
    parser.add_argument(
        "--field-manager", default="cli", help="who this apply is, for field ownership (default: cli)"
    )
    parser.add_argument(
        "--force-conflicts",
        action="store_true",
        help="take over fields another manager set, instead of failing",
    )
    parser.add_argument(
        "--wait", action="store_true", help="then follow each site's conditions until it is Ready"
    )
    parser.add_argument(
        "--timeout", default="5m", type=parse_timeout, help="how long --wait waits (default 5m)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.dry_run != "client":
        return _apply_through_api(args)
    from specs.yamlio import load_paths  # pydantic's models load in ~60 ms: only for verbs that read files

    result = load_paths(args.filename, kinds=_kinds())
    errors = [*result.errors, *_duplicate_names(result)]
    _print_objects(result.loaded, args.output)
    _print_resources(result.resources, args.output)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not result.loaded and not result.resources and not errors:
        print("error: no objects passed to apply", file=sys.stderr)
        return exit_codes.FAILED
    return exit_codes.FAILED if errors else exit_codes.OK


@reports_errors
def _apply_through_api(args: argparse.Namespace) -> int:
    api = api_from(args)  # before reading any file: without an API there is nothing to apply to
    from specs.yamlio import load_paths  # pydantic's models load in ~60 ms: only for verbs that read files

    result = load_paths(args.filename, kinds=_kinds())
    errors = [*result.errors, *_duplicate_names(result)]
    for problem in errors:
        print(f"error: {problem}", file=sys.stderr)
    if not result.loaded and not result.resources and not errors:
        print("error: no objects passed to apply", file=sys.stderr)
        return exit_codes.FAILED
    dry_run = args.dry_run == "server"
    suffix = " (server dry run)" if dry_run else ""
    applied: list[str] = []
    refused = bool(errors)
    with api:
        for entry in result.loaded:
            name = entry.site.name
            try:
                stored, outcome = api.apply_site(
                    name,
                    intent(entry.site),
                    manager=args.field_manager,
                    force=args.force_conflicts,
                    dry_run=dry_run,
                )
            except ApiCallError as failure:
                if failure.exit_code == exit_codes.UNAVAILABLE:
                    raise
                print(f"error: site/{name} ({entry.source}): {failure}", file=sys.stderr)
                refused = True
                continue
            applied.append(name)
            if args.output == "yaml":
                sys.stdout.write("---\n" + to_yaml(stored))
            elif args.output == "name":
                print(f"site/{name}")
            else:
                print(f"site/{name} {outcome}{suffix}")
        for other in result.resources:
            refused = not _apply_resource(api, other, args, dry_run, suffix) or refused
        sys.stdout.flush()
        if args.wait and applied and not dry_run:
            waited = wait_for_condition(api, applied, "Ready", args.timeout)
            if waited != exit_codes.OK:
                return waited
    return exit_codes.FAILED if refused else exit_codes.OK


def _kinds() -> Kinds:
    from specs.gitsource import KIND_GITSOURCE, GitSource
    from specs.models import KIND_SITE, Site

    return {KIND_SITE: Site, KIND_GITSOURCE: GitSource}


def _apply_resource(
    api: Api, entry: LoadedResource, args: argparse.Namespace, dry_run: bool, suffix: str
) -> bool:
    """Apply a GitSource document; False if the server refused it."""
    name = entry.resource.name
    document = entry.resource.model_dump(mode="json", by_alias=True, exclude_unset=True)
    document.update({"apiVersion": entry.resource.api_version, "kind": entry.resource.kind})
    document.pop("status", None)
    try:
        stored, outcome = gitsources.apply(
            api, name, document, manager=args.field_manager, force=args.force_conflicts, dry_run=dry_run
        )
    except ApiCallError as failure:
        if failure.exit_code == exit_codes.UNAVAILABLE:
            raise
        print(f"error: gitsource/{name} ({entry.source}): {failure}", file=sys.stderr)
        return False
    if args.output == "yaml":
        sys.stdout.write("---\n" + to_yaml(stored))
    elif args.output == "name":
        print(f"gitsource/{name}")
    else:
        print(f"gitsource/{name} {outcome}{suffix}")
    return True


def _print_resources(loaded: list[LoadedResource], output: str | None) -> None:
    for entry in loaded:
        if output == "yaml":
            sys.stdout.write("---\n" + to_yaml(entry.resource.to_document(include_status=False)))
            continue
        line = f"{entry.resource.kind.lower()}/{entry.resource.name}"
        print(line if output == "name" else f"{line} configured (dry run)")


def _print_objects(loaded: list[LoadedSite], output: str | None) -> None:
    if output == "yaml":
        if loaded:
            from specs.yamlio import dump_sites

            sys.stdout.write(dump_sites([entry.site for entry in loaded], include_status=False))
        return
    for entry in loaded:
        line = f"site/{entry.site.name}"
        print(line if output == "name" else f"{line} configured (dry run)")


def _duplicate_names(result: LoadResult) -> list[SpecError]:
    # Two documents for one site in one apply: the second would silently win, so say so instead.
    from specs.errors import SpecError

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
