"""Helpers of the end-to-end tests beyond what swarm_helpers shares with the other Swarm tests: the site
image and command they run, and a request loop that counts every answer while something changes
underneath it.

The tests write desired state into the record store as the API would, and judge only what runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import docker
from swarm_helpers import get

from specs.config import Settings
from store.events import EventLog, ReconcileEvent

LOCAL_IMAGE = "director-local/site:latest"
# Serves the site's public/ on $PORT with the python3 of Director's local base image.
SERVE_PUBLIC = ["sh", "-c", 'exec python3 -m http.server "$PORT" --bind "$HOST" --directory /site/public']


def running_tasks(client: docker.DockerClient, service: str) -> list[dict[str, object]]:
    tasks = client.api.tasks(filters={"service": service, "desired-state": "running"})
    return [t for t in tasks if t.get("Status", {}).get("State") == "running"]


def events_since(settings: Settings, name: str, since: float) -> list[ReconcileEvent]:
    """The site's reconcile events whose last occurrence is after the wall-clock time `since`."""
    events = EventLog(settings.events_db).query(name, limit=200)
    return [event for event in events if event.last_time.timestamp() >= since]


@dataclass
class LoopResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    # Which of the expected texts each good answer carried, in order of arrival.
    seen: list[str] = field(default_factory=list)


class RequestLoop:
    """A thread sending GETs to `hosts` one after another until stopped, each on a new connection.

    An answer counts as good when it is a 200 whose body has one of `expect`; anything else (another
    status, another body, a refused or reset connection, a timeout) is a failure, kept with its reason.
    """

    def __init__(self, settings: Settings, hosts: Iterable[str], expect: Iterable[str]) -> None:
        self.settings = settings
        self.hosts = list(hosts)
        self.expect = list(expect)
        self.result = LoopResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-loop", daemon=True)

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            host = self.hosts[turn % len(self.hosts)]
            turn += 1
            try:
                status, body = get(self.settings, host)
            except OSError as error:
                self.result.failures.append(f"{host}: {type(error).__name__}: {error}")
                continue
            matched = next((text for text in self.expect if text in body), None)
            if status == 200 and matched is not None:
                self.result.ok += 1
                if not self.result.seen or self.result.seen[-1] != matched:
                    self.result.seen.append(matched)
            else:
                self.result.failures.append(f"{host}: {status} {body[:120]!r}")

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def assert_no_failure(self, at_least: int = 1) -> None:
        failures = self.result.failures
        total = self.result.ok + len(failures)
        assert not failures, f"{len(failures)} of {total} requests failed: {failures[:5]}"
        assert self.result.ok >= at_least, f"only {self.result.ok} requests made; the loop did not run"


def write_site_file(settings: Settings, name: str, relative: str, text: str, mode: int = 0o644) -> Path:
    """A file in the site's directory as its owner would put it there (root-owned, world-readable is
    enough: the site's uid only needs to read and run it)."""
    path = settings.sites_dir / name / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path
