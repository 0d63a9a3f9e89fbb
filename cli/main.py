"""dirctl: the command line of Director. One module per verb; each registers its own subcommand.

Only the verb asked for is imported (cli/verbs.py says why): the command line is read twice, first by a
parser that knows every verb by name and help alone, which says which verb was asked for (and answers
`dirctl --help` and a wrong or missing verb itself), then by one with that verb's module registered, which
reads the verb's own arguments, help and errors exactly as a parser of every verb would.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cli import exit_codes, verbs
from cli.common import add_connection_options

# Where the first reading leaves the verb it found.
_VERB = "_dirctl_verb"


def build_parser(*loaded: str) -> argparse.ArgumentParser:
    """dirctl's parser with the arguments of the `loaded` verbs (their modules imported); every other verb
    is there by name and help only, which serves `dirctl --help` but none of its own arguments."""
    parser = argparse.ArgumentParser(
        prog="dirctl",
        description="Manage Director sites: declarative Site records in YAML.",
        epilog=exit_codes.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_options(parser, suppress=False)
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    modules = {verbs.MODULE[verb] for verb in loaded}
    for verb, module, summary in verbs.VERBS:
        if verb in subcommands.choices:
            continue  # registered with another verb of its module
        if module in modules:
            importlib.import_module(module).register(subcommands)
        else:
            # Takes whatever follows, unread: the second reading reads it with the verb's own parser.
            placeholder = subcommands.add_parser(verb, help=summary, add_help=False)
            placeholder.set_defaults(**{_VERB: verb})
    for verb in loaded:
        _add_connection_options_everywhere(subcommands.choices[verb])
    return parser


def _add_connection_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """--server and --token work after the verb too (`dirctl get sites --server URL`), as in kubectl."""
    add_connection_options(parser, suppress=True)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _add_connection_options_everywhere(subparser)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command line read with the parser of the verb it names (see the module's docstring)."""
    found, _rest = build_parser().parse_known_args(argv)
    return build_parser(getattr(found, _VERB)).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else list(argv))
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
