"""`dirctl get sites [NAME]`: list or show sites, or watch them change (-w).

Tables are printed by the server (a Kubernetes `Table`), so a list of 10,000 sites costs the client one
small parse, not 10,000 objects.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli import exit_codes, kinds, verbs
from cli.client import SITES, TABLE_ACCEPT, Api
from cli.common import api_from, config_from, error, reports_errors
from cli.output import OUTPUT_FORMATS, print_sites, table_text, to_yaml

Document = dict[str, Any]


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "get",
        help=verbs.SUMMARY["get"],
        description="List sites (those you own; an admin sees all), or another kind.",
    )
    parser.add_argument(
        "kind",
        choices=[
            "sites",
            "site",
            *kinds.PLATFORMS,
            *kinds.BLOCKED_DOMAINS,
            *kinds.GITSOURCES,
            *kinds.SECRETS,
            *kinds.USERS,
            *kinds.TOKENS,
            *kinds.WRITES,
        ],
        help="the resource kind",
    )
    parser.add_argument("name", nargs="?", help="one object's name")
    parser.add_argument(
        "-o", "--output", choices=OUTPUT_FORMATS, help="wide, yaml, json or name (default: table)"
    )
    parser.add_argument("-l", "--selector", help="label selector, such as tier=web,env in (prod,test)")
    parser.add_argument("-w", "--watch", action="store_true", help="after the listing, print every change")
    parser.add_argument("--user", help="tokens: whose (admins; default: yours); writes: by whom")
    parser.add_argument("--site", help="writes: to which site")
    parser.set_defaults(run=run)


def _params(args: argparse.Namespace) -> dict[str, str]:
    params = {}
    if args.selector:
        params["labelSelector"] = args.selector
    if args.name:
        params["fieldSelector"] = f"metadata.name={args.name}"
    return params


@reports_errors
def run(args: argparse.Namespace) -> int:
    output = args.output or config_from(args).output or ""
    with api_from(args) as api:
        if args.kind not in ("sites", "site"):
            return _show_other_kind(api, args, output)
        if output in ("yaml", "json"):
            version = _print_objects(api, args, output)
        else:
            version = _print_table(api, args, output)
        if args.watch:
            _watch(api, args, output, version)
    return exit_codes.OK


def _show_other_kind(api: Api, args: argparse.Namespace, output: str) -> int:
    """Whatever is not a site, each kind by its own module (imported only when asked for)."""
    if args.kind in kinds.PLATFORMS:
        if args.watch or args.selector:
            error("the platform takes neither -w nor -l")
            return exit_codes.USAGE
        from cli import platform

        platform.show(api, args.name, output)
        return exit_codes.OK
    if args.kind in kinds.WRITES:
        if args.watch or args.selector or args.name:
            error("writes take --site and --user, not a name, -w or -l")
            return exit_codes.USAGE
        from cli import writes

        writes.show(api, site=args.site, user=args.user, output=output)
        return exit_codes.OK
    if args.kind in kinds.USERS + kinds.TOKENS:
        if args.watch or args.selector:
            error(f"{args.kind} take neither -w nor -l")
            return exit_codes.USAGE
        from cli import users

        if args.kind in kinds.USERS:
            users.show_users(api, args.name, output)
        else:
            users.show_tokens(api, args.user, output)
        return exit_codes.OK
    if args.kind in kinds.GITSOURCES + kinds.SECRETS:
        if args.watch or args.selector:
            error(f"{args.kind} takes neither -w nor -l")
            return exit_codes.USAGE
        from cli import gitsources, secrets

        show = gitsources.show if args.kind in kinds.GITSOURCES else secrets.show
        show(api, args.name, output)
        return exit_codes.OK
    if args.watch or args.selector:
        error("blocked domains take neither -w nor -l")
        return exit_codes.USAGE
    from cli import blocked

    blocked.show(api, args.name, output)
    return exit_codes.OK


def _print_objects(api: Api, args: argparse.Namespace, output: str) -> str:
    if args.name:
        sites = [api.get_site(args.name)]
        version = str(sites[0]["metadata"].get("resourceVersion", "0"))
    else:
        listed = api.list_sites(args.selector)
        sites, version = listed["items"], str(listed["metadata"].get("resourceVersion", "0"))
    if sites or not args.watch:
        print_sites(sites, output, single=bool(args.name))
    return version


def _print_table(api: Api, args: argparse.Namespace, output: str) -> str:
    # Rows without objects (Kubernetes' default is each row's metadata): cells are all dirctl shows.
    params = _params(args) | {"includeObject": "None"}
    listed: Document = api.json("GET", SITES, params=params, headers={"Accept": TABLE_ACCEPT})
    rows = listed["rows"]
    if args.name and not rows:
        api.get_site(args.name)  # says why: not found (exit 4) or not yours (403)
    if output == "name":
        sys.stdout.write("".join(f"site/{row['cells'][0]}\n" for row in rows))
    elif rows:
        wide = output == "wide"
        columns = [column for column in listed["columnDefinitions"] if wide or column["priority"] == 0]
        sys.stdout.write(
            table_text(
                [column["name"].upper() for column in columns], [row["cells"][: len(columns)] for row in rows]
            )
        )
    elif not args.watch:
        print("No sites found.", file=sys.stderr)
    sys.stdout.flush()
    return str(listed["metadata"].get("resourceVersion", "0"))


def _watch(api: Api, args: argparse.Namespace, output: str, version: str) -> None:
    as_table = output not in ("yaml", "json")
    params = _params(args) | {"resourceVersion": version} | ({"includeObject": "None"} if as_table else {})
    headers = {"Accept": TABLE_ACCEPT} if as_table else {}
    for event in api.watch(SITES, params, headers=headers):
        change = event.get("object") or {}
        if output == "json":
            print(json.dumps(event), flush=True)
        elif output == "yaml":
            sys.stdout.write("---\n" + to_yaml(event))
            sys.stdout.flush()
        else:
            for row in change.get("rows", []):
                cells = [str(cell) for cell in row["cells"]]
                if output == "name":
                    print(f"site/{cells[0]}", flush=True)
                else:
                    shown = cells if output == "wide" else cells[:6]
                    print("   ".join(shown), flush=True)
