"""dirctl: the command line of Director. One module per verb; each registers its own subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli import (
    apply,
    create,
    delete,
    describe,
    diff,
    events,
    exit_codes,
    get,
    keys,
    login,
    logs,
    reconcile,
    rollout,
    schema,
    suspend,
    users,
    wait,
)
from cli.common import add_connection_options

VERBS = (
    apply,
    create,
    get,
    describe,
    diff,
    delete,
    events,
    logs,
    wait,
    rollout,
    reconcile,
    suspend,
    users,
    keys,
    login,
    schema,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dirctl",
        description="Manage Director sites: declarative Site records in YAML.",
        epilog=exit_codes.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_options(parser, suppress=False)
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for verb in VERBS:
        verb.register(subcommands)
    _add_connection_options_everywhere(parser)
    return parser


def _add_connection_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """--server and --token work after the verb too (`dirctl get sites --server URL`), as in kubectl."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                add_connection_options(subparser, suppress=True)
                _add_connection_options_everywhere(subparser)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `dirctl ... | head` closed the pipe: not an error of dirctl's.
        sys.stderr.close()
        return exit_codes.OK
    return code


if __name__ == "__main__":
    sys.exit(main())
