"""The state directory's filesystem filled to the brim, for real (a small tmpfs the test mounts).

While it is full: writes are refused with 507 Insufficient Storage naming the state directory (the API and
dirctl alike), reads still answer, the sites keep serving, and the controller keeps repairing the world
though it can record nothing. Once space returns: nothing was torn, the events of what happened meanwhile
are in the log, and writes go through again.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
import yaml
from fault_helpers import api_answers, fill, small_filesystem, start_director
from swarm_helpers import eventually, host_of, ready, serves

from specs.config import Settings
from store.records import SiteStore
from tests.e2e.e2e_helpers import LOCAL_IMAGE, SERVE_PUBLIC, RequestLoop, events_since, running_tasks

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

SITES = "/apis/director.io/v1/sites"
START_SECONDS = 120.0
CONVERGE_SECONDS = 90.0


def site_yaml(name: str, **spec: object) -> str:
    return yaml.safe_dump(
        {"apiVersion": "director.io/v1", "kind": "Site", "metadata": {"name": name}, "spec": spec}
    )


def dynamic(name: str) -> str:
    return site_yaml(name, type="dynamic", image=LOCAL_IMAGE, command=SERVE_PUBLIC)


def test_a_full_state_directory_refuses_writes_with_507_tears_nothing_and_resumes(
    new_settings: Callable[[Path], Settings], swarm: docker.DockerClient, tmp_path: Path
):
    with small_filesystem(tmp_path / "state", "48m") as state_dir:
        settings = new_settings(state_dir)
        director = start_director(settings)
        try:
            eventually(
                lambda: serves(settings, "nobody.example.org", 404),
                START_SECONDS,
                "the edge",
                director.controller,
            )
            eventually(lambda: api_answers(director), START_SECONDS, "the API")
            applied = director.dirctl(
                "apply", "-f", "-", stdin=site_yaml("steady") + "---\n" + dynamic("dyn")
            )
            assert applied.returncode == 0, applied.stderr
            steady, dyn = host_of(settings, "steady"), host_of(settings, "dyn")
            eventually(
                lambda: serves(settings, steady, 200, "<h1>steady</h1>"),
                CONVERGE_SECONDS,
                "steady",
                director.controller,
            )
            eventually(
                lambda: serves(settings, dyn, 200, "<h1>dyn</h1>"),
                CONVERGE_SECONDS,
                "dyn",
                director.controller,
            )
            store = SiteStore(state_dir)
            eventually(
                lambda: ready(store, "dyn") and ready(store, "steady"),
                CONVERGE_SECONDS,
                "Ready",
                director.controller,
            )

            filler = fill(state_dir)
            with RequestLoop(settings, [steady], ["<h1>steady</h1>"]) as loop, director.client() as client:
                refused = client.post(SITES, json=yaml.safe_load(site_yaml("late")))
                assert refused.status_code == 507, refused.text
                status = refused.json()
                assert status["reason"] == "InsufficientStorage"
                assert str(state_dir) in status["message"] and "full" in status["message"], status
                assert "traceback" not in refused.text.lower()

                by_dirctl = director.dirctl("apply", "-f", "-", stdin=site_yaml("late"))
                assert by_dirctl.returncode != 0
                assert str(state_dir) in by_dirctl.stderr and "full" in by_dirctl.stderr, by_dirctl.stderr
                assert "Traceback" not in by_dirctl.stderr

                assert client.get(f"{SITES}/steady").status_code == 200
                assert client.get(SITES).status_code == 200

                # The controller repairs the world with nothing to write its events to.
                removed_at = time.time()
                swarm.api.remove_service(settings.service_name("dyn"))
                eventually(
                    lambda: (
                        bool(running_tasks(swarm, settings.service_name("dyn")))
                        and serves(settings, dyn, 200, "<h1>dyn</h1>")
                    ),
                    CONVERGE_SECONDS,
                    "dyn's service recreated while the disk is full",
                    director.controller,
                )
                assert director.controller.process is not None and director.controller.process.poll() is None
                assert director.api is not None and director.api.poll() is None
            loop.assert_no_failure()

            # Nothing torn: every record parses, no half-written file is left, the event log is whole.
            sites, broken = SiteStore(state_dir).list()
            assert not broken, broken
            assert sorted(site.name for site in sites) == ["dyn", "steady"]
            leftovers = [p for p in (state_dir / "specs").rglob(".*.tmp")] + [
                p for p in (state_dir / "status").rglob(".*.tmp")
            ]
            assert not leftovers, leftovers
            with sqlite3.connect(settings.events_db) as db:
                assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

            os.unlink(filler)
            # Held back, not lost: the recreation is in the log once it takes writes again.
            eventually(
                lambda: any(
                    event.step == "service" and event.result == "created"
                    for event in events_since(settings, "dyn", removed_at)
                ),
                30,
                "the event of dyn's recreation",
                director.controller,
            )
            again = director.dirctl("apply", "-f", "-", stdin=site_yaml("late"))
            assert again.returncode == 0, again.stderr
            late = host_of(settings, "late")
            eventually(
                lambda: serves(settings, late, 200, "<h1>late</h1>"),
                CONVERGE_SECONDS,
                "late",
                director.controller,
            )
            eventually(
                lambda: ready(store, "dyn") and ready(store, "late"),
                CONVERGE_SECONDS,
                "Ready again",
                director.controller,
            )
            log = director.controller.log.read_text(errors="replace")
            assert "Traceback" not in log, director.controller.tail(60)
        finally:
            director.stop()
