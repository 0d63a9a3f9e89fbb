"""`dirctl events [NAME] [-w]`: the reconcile events of one site or of every site you may see."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from cli import exit_codes, verbs
from cli.client import EVENTS, SITES
from cli.common import api_from, reports_errors
from cli.output import EVENT_COLUMNS, event_row, table


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("events", help=verbs.SUMMARY["events"])
    parser.add_argument("name", nargs="?", help="one site's name (default: every site you may see)")
    parser.add_argument("--limit", type=int, default=50, help="how many of the newest events (default 50)")
    parser.add_argument("-w", "--watch", action="store_true", help="keep printing events as they happen")
    parser.add_argument(
        "--uid",
        help="administrators: the events of an earlier site of NAME, by its uid (shown by -o json)",
    )
    parser.add_argument("-o", "--output", choices=["json"], help="one JSON object per line")
    parser.set_defaults(run=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    if args.uid is not None and args.name is None:
        print("error: --uid needs the site's NAME: dirctl events NAME --uid UID", file=sys.stderr)
        return exit_codes.USAGE
    now = datetime.now(UTC)
    with api_from(args) as api:
        if not args.watch:
            events = list(reversed(api.events(args.name, limit=args.limit, uid=args.uid)))
            if args.output == "json":
                for event in events:
                    print(json.dumps(event))
            elif events:
                table(EVENT_COLUMNS, [event_row(event, now) for event in events])
            return exit_codes.OK
        path = f"{SITES}/{args.name}/events" if args.name else EVENTS
        header_printed = False
        params = {"limit": str(args.limit)} | ({"uid": args.uid} if args.uid is not None else {})
        for change in api.watch(path, params):
            event = change["object"]
            if args.output == "json":
                print(json.dumps(event), flush=True)
                continue
            row = event_row(event, datetime.now(UTC))
            if not header_printed:
                print("   ".join(EVENT_COLUMNS))
                header_printed = True
            print("   ".join(row), flush=True)
    return exit_codes.OK
