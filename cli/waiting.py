"""Waiting for sites: until Ready (with a live line per change of their conditions) or until gone."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from cli import exit_codes
from cli.client import SITES, Api, ApiCallError
from cli.output import condition

Document = dict[str, Any]
_POLL_SECONDS = 0.25


@dataclass
class Progress:
    summary: str = ""
    done: bool = False
    failed: bool = False


def _observed(site: Document, entry: Document | None) -> bool:
    generation = site["metadata"].get("generation") or 0
    status = site.get("status") or {}
    observed = (entry or {}).get("observedGeneration") or status.get("observedGeneration") or 0
    return int(observed) >= int(generation)


def summarize(site: Document, wanted: str) -> Progress:
    parts = []
    for kind in ("Ready", "Reconciling", "Stalled"):
        entry = condition(site, kind)
        if entry is not None:
            detail = entry.get("reason", "")
            if entry.get("message"):
                detail += f": {entry['message']}"
            parts.append(
                f"{kind}={entry.get('status')} ({detail})" if detail else f"{kind}={entry.get('status')}"
            )
    service = (site.get("status") or {}).get("service")
    if service:
        parts.append(f"tasks {service.get('runningTasks', 0)}/{service.get('desiredTasks', 0)}")
    target = condition(site, wanted)
    stalled = condition(site, "Stalled")
    progress = Progress(summary="; ".join(parts) or "no status yet")
    progress.done = target is not None and target.get("status") == "True" and _observed(site, target)
    progress.failed = (
        not progress.done
        and stalled is not None
        and stalled.get("status") == "True"
        and _observed(site, stalled)
    )
    return progress


def wait_for_condition(
    api: Api, names: list[str], wanted: str, timeout: float, out: TextIO = sys.stdout
) -> int:
    """Follow the sites' watch stream until each has condition `wanted`=True for its current generation."""
    deadline = time.monotonic() + timeout
    pending = {name: Progress() for name in names}
    last = dict(pending)
    failed: list[str] = []
    while pending and time.monotonic() < deadline:
        remaining = max(1, int(deadline - time.monotonic()))
        for event in api.watch(SITES, {"timeoutSeconds": str(remaining)}):
            site = event.get("object") or {}
            name = (site.get("metadata") or {}).get("name")
            if name not in pending:
                continue
            if event.get("type") == "DELETED":
                out.write(f"site/{name}: deleted while waiting\n")
                failed.append(name)
                del pending[name]
            else:
                progress = summarize(site, wanted)
                if progress.summary != pending[name].summary:
                    out.write(f"site/{name}: {progress.summary}\n")
                    out.flush()
                pending[name] = last[name] = progress
                if progress.done:
                    out.write(f"site/{name} condition met: {wanted}\n")
                    del pending[name]
                elif progress.failed:
                    failed.append(name)
                    del pending[name]
            if not pending:
                break
    for name in failed:
        print(f"error: site/{name} did not become {wanted}: {last[name].summary}", file=sys.stderr)
    if pending:
        for name in sorted(pending):
            print(
                f"error: timed out waiting for site/{name} to be {wanted}: {pending[name].summary}",
                file=sys.stderr,
            )
        return exit_codes.TIMEOUT
    return exit_codes.FAILED if failed else exit_codes.OK


def wait_for_deletion(api: Api, names: list[str], timeout: float, out: TextIO = sys.stdout) -> int:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while True:
        for name in list(pending):
            try:
                api.get_site(name)
            except ApiCallError as failure:
                if failure.status != 404:
                    raise
                out.write(f"site/{name} deleted\n")
                pending.remove(name)
        if not pending:
            return exit_codes.OK
        if time.monotonic() >= deadline:
            for name in pending:
                print(f"error: timed out waiting for site/{name} to be deleted", file=sys.stderr)
            return exit_codes.TIMEOUT
        time.sleep(_POLL_SECONDS)


def parse_timeout(text: str) -> float:
    """`30s`, `5m`, `1h` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(f"--timeout must be a duration such as 30s, 5m or 1h, got {text!r}") from None
