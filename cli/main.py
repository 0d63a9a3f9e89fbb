"""dirctl: the command line of Director. One module per verb; each registers its own subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli import apply, exit_codes, schema

VERBS = (apply, schema)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dirctl",
        description="Manage Director sites: declarative Site records in YAML.",
        epilog=exit_codes.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for verb in VERBS:
        verb.register(subcommands)
    return parser


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
