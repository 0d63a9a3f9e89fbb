"""`dirctl schema KIND`: the JSON Schema of a resource in wire form, for editors and validators."""

from __future__ import annotations

import argparse
import json
import sys

from cli import exit_codes, verbs

# Kinds by name; their models are imported only when a schema is asked for (pydantic loads in ~60 ms).
SCHEMAS = ("site", "gitsource")


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "schema",
        help=verbs.SUMMARY["schema"],
        description="Print the JSON Schema (camelCase field names, as written in YAML) of a resource kind.",
    )
    parser.add_argument("kind", choices=sorted(SCHEMAS), help="the resource kind")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from specs.gitsource import GitSource
    from specs.models import Resource, Site

    model: type[Resource] = {"site": Site, "gitsource": GitSource}[args.kind]
    schema = model.model_json_schema(by_alias=True, mode="validation")
    json.dump(schema, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    return exit_codes.OK
