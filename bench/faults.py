"""Recovery times after faults caused for real, for the closing note: the controller SIGKILLed every few
seconds during 200 applies (every run), and dockerd stopped and started while 50 sites are applied (only
with --dockerd: it stops every container on the machine for a while).

    python -m bench.faults [--rounds 3] [--dockerd]

The scenarios are those of tests/faults/ (kill_scenario.py, dockerd_scenario.py); this prints their figures,
medians over the rounds, where the tests judge them.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench.e2e_helpers import ROOT, throwaway_instance
from reconcilers.docker_calls import make_client
from reconcilers.local_images import ensure_base_image
from store.records import SiteStore

# The scenarios live beside the tests that judge them.
sys.path.append(str(ROOT / "tests" / "faults"))

import dockerd_scenario
import kill_scenario
from swarm_helpers import ControllerProcess, eventually, serves

EDGE_SECONDS = 120.0
CONVERGE_SECONDS = 300.0


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}s" if values else "n/a"


def kill_rounds(rounds: int) -> None:
    client = make_client()
    image = ensure_base_image(client)
    recoveries: list[float] = []
    kills: list[int] = []
    for _ in range(rounds):
        with throwaway_instance(client, image, prefix="bfk") as settings:
            controller = ControllerProcess(settings, settings.state_dir / "controller.log", resync_seconds=10)
            controller.start()
            try:
                eventually(lambda: serves(settings, "nobody.example.org", 404), EDGE_SECONDS, "the edge")
                run = kill_scenario.run_with_kills(
                    controller, SiteStore(settings.state_dir), kill_scenario.Plan(), CONVERGE_SECONDS
                )
            finally:
                controller.stop()
        kills.append(run.kills)
        if run.recovery_seconds is not None:
            recoveries.append(run.recovery_seconds)
        print(
            f"  SIGKILL round: {run.kills} kills during {run.applies} applies; converged "
            f"{run.recovery_seconds if run.recovery_seconds is None else round(run.recovery_seconds, 1)}s "
            "after the last restart"
        )
    print(
        f"controller SIGKILLed during 200 applies: {rounds} rounds, "
        f"median {statistics.median(kills):.0f} kills; "
        f"every site converged a median {_median(recoveries)} after the last restart "
        f"({rounds - len(recoveries)} rounds did not within {CONVERGE_SECONDS:.0f}s)"
    )


def dockerd_round() -> None:
    client = make_client()
    image = ensure_base_image(client)
    try:
        with throwaway_instance(client, image, prefix="bfd") as settings:
            controller = ControllerProcess(
                settings, settings.state_dir / "controller.log", arguments=("--step-timeout", "30")
            )
            controller.start()
            try:
                eventually(lambda: serves(settings, "nobody.example.org", 404), EDGE_SECONDS, "the edge")
                run = dockerd_scenario.restart_during_applies(
                    controller, SiteStore(settings.state_dir), dockerd_scenario.Plan(), CONVERGE_SECONDS
                )
            finally:
                controller.stop()
                dockerd_scenario.engine_back()
    finally:
        print(f"  Swarm after the round: {dockerd_scenario.engine_back()}")
    print(
        f"dockerd restarted during 50 applies: {run.stop_seconds:.1f}s to stop, "
        f"away {run.away_seconds:.1f}s; "
        f"after its return every site served in {run.served_seconds and round(run.served_seconds, 1)}s, "
        f"every site Ready and served in {run.converged_seconds and round(run.converged_seconds, 1)}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the SIGKILL scenario (1)")
    parser.add_argument(
        "--dockerd", action="store_true", help="also restart dockerd (stops every container on the machine)"
    )
    args = parser.parse_args()
    kill_rounds(args.rounds)
    if args.dockerd:
        dockerd_round()


if __name__ == "__main__":
    main()
