"""A controller process with recording reconcilers, for the tests of the leader lock and of SIGTERM.

    python tests/controller/recording_controller.py STATE_DIR [--hang SECONDS]

Every reconciler call is appended to STATE_DIR/journal-<pid>.txt. With --hang, the service reconciler of
every site takes that long (a reconcile in flight when SIGTERM comes); with --block, it waits that long
on a thread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from controller_fakes import Journal, RecordingPlatform, RecordingReconciler, site_and_platform

from controller.process import configure_logging, run
from controller.runtime import Controller, ControllerOptions
from controller.types import Outcome, Step
from specs.config import Settings
from specs.models import Site
from store.events import EventLog
from store.records import SiteStore


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--hang", type=float, default=0.0)
    parser.add_argument("--block", type=float, default=0.0)
    parser.add_argument("--shutdown-grace", type=float, default=5.0)
    parser.add_argument("--exit-grace", type=float, default=5.0)
    args = parser.parse_args()
    configure_logging("INFO")
    settings = Settings(state_dir=args.state_dir)
    journal = Journal(path=args.state_dir / f"journal-{os.getpid()}.txt")

    def build() -> Controller:
        service = RecordingReconciler("service", journal)
        if args.hang:

            async def slow(site: Site, attempt: int) -> Outcome:
                await asyncio.sleep(args.hang)
                journal.add("service", "finished", site.name)
                return Outcome(steps=[Step("apply", "created")])

            service.default = slow
        if args.block:

            async def blocked(site: Site, attempt: int) -> Outcome:
                # A call stuck in a thread, as a hung Docker daemon leaves it: cancelling the await
                # does not stop the thread.
                await asyncio.to_thread(time.sleep, args.block)
                return Outcome(steps=[Step("apply", "created")])

            service.default = blocked
        return Controller(
            kinds=site_and_platform(
                settings,
                SiteStore(settings.state_dir),
                [RecordingReconciler("files", journal), service],
                RecordingPlatform(journal),
            ),
            events=EventLog(settings.events_db),
            state_dir=settings.state_dir,
            options=ControllerOptions(workers=2, step_timeout=30, shutdown_grace=args.shutdown_grace),
        )

    return run(build, exit_grace=args.exit_grace)


if __name__ == "__main__":
    sys.exit(main())
