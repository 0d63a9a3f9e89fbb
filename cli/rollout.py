"""`dirctl rollout history site NAME` (each generation with who wrote it, when, through which field manager)
and `dirctl rollout undo site NAME [--to-generation N]`."""

from __future__ import annotations

import argparse

from cli import exit_codes, verbs, writes
from cli.common import api_from, error, parse_target, reports_errors
from cli.output import table


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("rollout", help=verbs.SUMMARY["rollout"])
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    history = actions.add_parser("history", help="list the site's previous spec generations")
    history.add_argument("target", nargs="+", metavar="site NAME")
    history.set_defaults(run=run_history)
    undo = actions.add_parser("undo", help="make an earlier generation's spec the current one")
    undo.add_argument("target", nargs="+", metavar="site NAME")
    undo.add_argument(
        "--to-generation", type=int, metavar="N", help="default: the generation before this one"
    )
    undo.set_defaults(run=run_undo)


def _summary(spec: dict[str, object]) -> str:
    parts = [str(spec.get("type", "static")), f"availability={spec.get('availability', 'enabled')}"]
    if spec.get("image"):
        parts.append(f"image={spec['image']}")
    if spec.get("type") == "dynamic":
        parts.append(f"replicas={spec.get('replicas', 1)}")
    domains = spec.get("domains")
    if isinstance(domains, list) and domains:
        parts.append(f"domains={','.join(str(d) for d in domains)}")
    return " ".join(parts)


@reports_errors
def run_history(args: argparse.Namespace) -> int:
    name = parse_target(args.target)
    with api_from(args) as api:
        current = api.get_site(name)
        history = api.history(name)
        made = writes.by_generation(
            writes.list_writes(api, site=name, user=None, limit=1000),
            current["metadata"].get("creationTimestamp"),
        )

    def row(item: writes.Document, mark: str) -> list[str]:
        generation = int(item["metadata"]["generation"])
        write = made.get(generation)
        who = [writes.when(write), write["user"], write["fieldManager"]] if write else ["-", "-", "-"]
        return [str(generation), mark, *who, _summary(item["spec"])]

    rows = [row(current, "current")] + [row(item, "") for item in history]
    table(["GENERATION", "", "WRITTEN", "BY", "MANAGER", "SPEC"], rows)
    return exit_codes.OK


@reports_errors
def run_undo(args: argparse.Namespace) -> int:
    name = parse_target(args.target)
    with api_from(args) as api:
        current = api.get_site(name)
        generation = current["metadata"]["generation"]
        history = api.history(name)
        wanted = args.to_generation
        candidates = [item for item in history if item["metadata"]["generation"] != generation]
        if wanted is None:
            target = candidates[0] if candidates else None
        else:
            target = next((item for item in candidates if item["metadata"]["generation"] == wanted), None)
        if target is None:
            kept = ", ".join(str(item["metadata"]["generation"]) for item in candidates) or "none"
            error(
                f'site "{name}" has no earlier generation {wanted if wanted else ""} to go back to '
                f"(kept: {kept})".replace("  ", " ")
            )
            return exit_codes.FAILED
        if target["spec"] == current["spec"]:
            print(f"site/{name} unchanged: generation {generation} already has that spec")
            return exit_codes.OK
        replacement = current | {"spec": target["spec"]}
        replacement.pop("status", None)
        stored = api.replace_site(name, replacement, manager="cli")
    print(
        f"site/{name} rolled back to the spec of generation {target['metadata']['generation']} "
        f"(now generation {stored['metadata']['generation']})"
    )
    return exit_codes.OK
