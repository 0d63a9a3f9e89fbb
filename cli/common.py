"""What every verb that talks to the API shares: connection options, the client, and error reporting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import wraps

from cli import exit_codes
from cli.client import Api, ApiCallError
from cli.config import CliConfig, ConfigError, load_config

Run = Callable[[argparse.Namespace], int]


def add_connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--server", default=default, help="the API's URL (overrides DIRECTOR_SERVER and the config)"
    )
    group.add_argument(
        "--token", default=default, help="an API token (overrides DIRECTOR_TOKEN and the config)"
    )
    group.add_argument(
        "--ca",
        default=default,
        metavar="FILE",
        help="the CA certificate the API's is signed by (overrides DIRECTOR_CA and the config)",
    )


def config_from(args: argparse.Namespace) -> CliConfig:
    return load_config(
        getattr(args, "server", None), getattr(args, "token", None), ca=getattr(args, "ca", None)
    )


def api_from(args: argparse.Namespace) -> Api:
    return Api(config_from(args))


def error(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)


class UsageError(ValueError):
    """The command line itself is wrong: reported as one `error:` line, ending with exit code USAGE."""


def reports_errors(run: Run) -> Run:
    """One `error:` line and the documented exit code for a bad command line, or whatever the API or the
    config refused."""

    @wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except UsageError as problem:
            error(str(problem))
            return exit_codes.USAGE
        except ApiCallError as failure:
            error(str(failure))
            return failure.exit_code
        except ConfigError as failure:
            error(str(failure))
            return exit_codes.UNAVAILABLE

    return wrapper


def parse_target(words: list[str]) -> str:
    """`site NAME`, `site/NAME` or `sites NAME` -> NAME; UsageError otherwise."""
    if len(words) == 1 and "/" in words[0]:
        kind, _, name = words[0].partition("/")
        words = [kind, name]
    if len(words) != 2 or words[0] not in ("site", "sites") or not words[1]:
        raise UsageError("name a site as `site NAME` or `site/NAME`")
    return words[1]
