"""A long property-based run against a live API (issue 13, "Bad input, at scale"): hostile requests from
tests/api/fuzzing.py as an admin, a normal user and nobody, each answer judged (a Status or a resource, never
a 5xx or a traceback; nothing written by a refused request, a read or a dry run). Unlike the bounded run in
`make test`, which stops at the first problem, this one goes on and groups what it finds.

    .venv/bin/python -m bench.fuzz [--examples 3000] [--seed N] [--server-from CHECKOUT]

`--server-from` serves the API from another checkout (say, main before these fixes) to count what it lets
through.

Prints the number of examples run per caller, the answers by status, and each distinct finding with the
first request that showed it; exits 1 if there was any.

Measured here (issue 13), `--examples 3000 --seed 13`, 9,000 requests each run, about 200 s on 2 busy cores:
the API before these fixes (`--server-from` an export of it) gave 16 answers of 500 and 5 distinct findings
(an events page token past 64 bits, half a surrogate pair in a token name, a token issued by a dry run, a
written file answered without a kind); after them, none. Found by hand beside it and fixed with it:
DeleteOptions of another shape (500), a dry run in DeleteOptions or on a write that has none (done for
real), a resourceVersion that was no string (500), a multipart body without a boundary (500), a file PATCH
and an upload refused halfway (renamed or written all the same), a GitSource whose metadata was of another
shape (500), tailLines outside an int32, unknown URLs under /hooks and /controller (an HTML page).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.api.fuzzing import Findings, check, live_target, probes  # noqa: E402

CALLERS = ("admin", "alice", "anonymous")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=3000, help="requests per caller (default 3000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed, to repeat a run")
    parser.add_argument(
        "--server-from", type=Path, default=REPO, help="serve the API from this checkout (default: this one)"
    )
    arguments = parser.parse_args()
    # Findings quote what was sent, half surrogate pairs included.
    sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    findings = Findings()
    started = time.monotonic()
    with (
        live_target(arguments.server_from.resolve()) as target,
        httpx.Client(base_url=target.url, timeout=30) as client,
    ):
        for who in CALLERS:
            before = findings.examples
            caller_started = time.monotonic()
            strategy = probes(target.tokens, target.ssh_key, who)

            @settings(
                max_examples=arguments.examples,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                phases=[phase for phase in settings.default.phases if phase.name != "shrink"],
            )
            @given(data=st.data())
            def probe_the_api(data: st.DataObject) -> None:
                probe = data.draw(strategy)  # noqa: B023 - called before the loop moves on
                answer, found = check(target, client, probe)
                findings.record(probe, answer, found)

            if arguments.seed is not None:
                probe_the_api = seed(arguments.seed)(probe_the_api)
            probe_the_api()
            run = findings.examples - before
            seconds = time.monotonic() - caller_started
            print(f"{who}: {run} examples in {seconds:.0f} s ({run / seconds:.0f}/s)", flush=True)
        log = (target.state_dir / "server.log").read_text(errors="replace")
    print(f"examples run: {findings.examples} in {time.monotonic() - started:.0f} s")
    print("answers by status: " + ", ".join(f"{code}: {n}" for code, n in sorted(findings.by_status.items())))
    if findings.unanswered:
        # Requests the client could not put on the wire (h11 refuses what HTTP/1.1 cannot carry), and streams
        # that had not begun within the budget: neither is an answer of the server.
        unanswered = sorted(findings.unanswered.items())
        print("no answer to judge: " + ", ".join(f"{why}: {n}" for why, n in unanswered))
    tracebacks = log.count("Traceback (most recent call last)")
    print(f"tracebacks in the server log: {tracebacks}")
    print(f"distinct findings: {len(findings.first)}")
    for key, (probe, found) in sorted(findings.first.items()):
        print(f"\n[{findings.counts[key]}x] {key[0]} {key[1]}: {key[2]}")
        print("  " + probe.describe().replace("\n", "\n  "))
        for problem in found:
            print(f"    - {problem[:300]}")
    if tracebacks:
        print("\nserver log (last 4000 characters):\n" + log[-4000:])
    return 1 if findings.first or tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
