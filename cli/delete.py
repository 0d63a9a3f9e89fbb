"""`dirctl delete site NAME` or `dirctl delete -f FILE`, optionally waiting until the sites are gone."""

from __future__ import annotations

import argparse

from cli import blocked, exit_codes, gitsources, secrets, users, verbs
from cli.common import api_from, error, parse_target, reports_errors
from cli.waiting import parse_timeout, wait_for_deletion


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("delete", help=verbs.SUMMARY["delete"])
    parser.add_argument(
        "target", nargs="*", metavar="site NAME", help="`site NAME`, `site/NAME` or `blockeddomain DOMAIN`"
    )
    parser.add_argument(
        "-f", "--filename", action="append", metavar="FILE|DIR|-", help="delete the sites in it"
    )
    parser.add_argument("--wait", action="store_true", help="return once the sites are gone (finalized)")
    parser.add_argument("--timeout", default="5m", type=parse_timeout, help="how long --wait waits (5m)")
    parser.add_argument("--dry-run", choices=["server"], help="ask the server whether it would delete")
    parser.add_argument("--ignore-not-found", action="store_true", help="a missing site is not an error")
    parser.add_argument("--owner", help="whose secret (admins): `delete secret NAME --owner USER`")
    parser.add_argument(
        "--reassign-to", metavar="USER", help="`delete user NAME`: who takes over the sites the user owns"
    )
    parser.set_defaults(run=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    if args.target and args.target[0].partition("/")[0] in users.KINDS + users.TOKEN_KINDS:
        words = args.target[0].split("/", 1) if len(args.target) == 1 else args.target
        if len(words) != 2:
            error(f"name it: `delete {words[0]} {'ID' if words[0] in users.TOKEN_KINDS else 'NAME'}`")
            return exit_codes.USAGE
        with api_from(args) as api:
            if words[0] in users.KINDS:
                users.delete_user(api, words[1], args.reassign_to)
            else:
                users.delete_token(api, words[1])
        return exit_codes.OK
    if args.target and args.target[0].partition("/")[0] in gitsources.KINDS + secrets.KINDS:
        words = args.target[0].split("/", 1) if len(args.target) == 1 else args.target
        if len(words) != 2:
            error(f"name it: `delete {words[0]} NAME`")
            return exit_codes.USAGE
        with api_from(args) as api:
            if words[0] in gitsources.KINDS:
                gitsources.delete(api, words[1])
            else:
                secrets.delete(api, words[1], args.owner)
        return exit_codes.OK
    if args.target and args.target[0].partition("/")[0] in blocked.KINDS:
        words = args.target[0].split("/", 1) if len(args.target) == 1 else args.target
        if len(words) != 2:
            error("name the domain: `delete blockeddomain DOMAIN`")
            return exit_codes.USAGE
        with api_from(args) as api:
            blocked.delete(api, words[1])
        return exit_codes.OK
    names: list[str] = []
    if args.filename:
        from specs.yamlio import load_paths

        loaded = load_paths(args.filename)
        for problem in loaded.errors:
            error(str(problem))
        if not loaded.ok:
            return exit_codes.FAILED
        names += [site.name for site in loaded.sites]
    if args.target:
        names.append(parse_target(args.target))
    if not names:
        error("name a site (`delete site NAME`) or give -f FILE")
        return exit_codes.USAGE
    code = exit_codes.OK
    deleting: list[str] = []
    with api_from(args) as api:
        for name in names:
            site = api.find_site(name)
            if site is None:
                if not args.ignore_not_found:
                    error(f'site "{name}" not found')
                    code = max(code, exit_codes.NOT_FOUND)
                continue
            remaining, status = api.delete_site(name, dry_run=args.dry_run == "server")
            suffix = " (server dry run)" if args.dry_run else ""
            if status == 202:
                finalizers = ", ".join(remaining["metadata"].get("finalizers", []))
                print(f"site/{name} deleting: waiting for {finalizers}{suffix}")
                deleting.append(name)
            else:
                print(f"site/{name} deleted{suffix}")
        if args.wait and deleting and not args.dry_run:
            code = max(code, wait_for_deletion(api, deleting, args.timeout))
    return code
