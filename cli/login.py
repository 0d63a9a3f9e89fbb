"""`dirctl login`: exchange a user name and password for an API token, saved in the config file."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime

from cli import exit_codes, verbs
from cli.client import Api
from cli.common import error, reports_errors
from cli.config import CliConfig, default_config_path, load_config, read_ca, read_config_file, save_config


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "login",
        help=verbs.SUMMARY["login"],
        description="Ask for the password (or read it from stdin with --password-stdin), obtain an API token "
        "and save server, token and CA in the config file. Over HTTPS, --ca FILE names the CA certificate "
        "the server's is signed by (make run: STATE_DIR/tls/ca.crt); it is saved too.",
    )
    parser.add_argument("-u", "--username", help="user name (default: asked)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    parser.set_defaults(run=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    given_ca = getattr(args, "ca", None)
    config = load_config(getattr(args, "server", None), None)
    if not config.server:
        error("say which API to log in to: dirctl login --server https://HOST:PORT [--ca FILE]")
        return exit_codes.USAGE
    ca = read_ca(given_ca) if given_ca else config.ca
    username = args.username or input("User name: ").strip()
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
    with Api(CliConfig(server=config.server, ca=ca)) as api:
        token = api.login(username, password)
    path = default_config_path()
    saved = read_config_file(path)
    save_config(CliConfig(server=config.server, token=token["token"], ca=ca, output=saved.output), path)
    print(f"Logged in to {config.server} as {token['user']}; the token is saved in {path}")
    print(f"The token expires {expiry_text(token.get('expires'))}: run `dirctl login` again then.")
    return exit_codes.OK


def expiry_text(expires: object, now: datetime | None = None) -> str:
    """`at 2026-01-31 12:00 UTC (in 30 days)`, from the API's ISO 8601 `expires`."""
    if not isinstance(expires, str):
        return "at a time the server did not say"
    try:
        moment = datetime.fromisoformat(expires).astimezone(UTC)
    except ValueError:
        return f"at {expires}"
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    if seconds >= 2 * 86400:
        remaining = f"{round(seconds / 86400)} days"
    elif seconds >= 2 * 3600:
        remaining = f"{round(seconds / 3600)} hours"
    else:
        remaining = f"{max(round(seconds / 60), 0)} minutes"
    return f"at {moment:%Y-%m-%d %H:%M} UTC (in {remaining})"
