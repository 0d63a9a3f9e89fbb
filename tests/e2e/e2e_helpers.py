"""Helpers of the end-to-end tests: `director controller` as a subprocess, HTTP through its edge, and a
request loop that counts every answer while something changes underneath it.

The tests write desired state into the record store as the API would, and judge only what runs.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import docker
import pytest

from reconcilers.docker_calls import LABEL_INSTANCE, LABEL_SITE
from specs.config import Settings
from specs.events import EventLog, ReconcileEvent
from specs.models import Condition, ConditionType, ObjectMeta, Site, SiteSpec
from specs.store import NotFound, SiteStore

ROOT = Path(__file__).resolve().parents[2]
DIRECTOR = Path(sys.executable).with_name("director")
LOCAL_IMAGE = "director-local/site:latest"
# Serves the site's public/ on $PORT with the python3 of Director's local base image.
SERVE_PUBLIC = ["sh", "-c", 'exec python3 -m http.server "$PORT" --bind "$HOST" --directory /site/public']


class ControllerProcess:
    """One `director controller` subprocess, its log in a file."""

    def __init__(self, settings: Settings, log: Path, resync_seconds: int = 10) -> None:
        self.settings = settings
        self.log = log
        self.resync_seconds = resync_seconds
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = os.environ | {
            "DIRECTOR_STATE_DIR": str(self.settings.state_dir),
            "DIRECTOR_INSTANCE": self.settings.instance,
            "DIRECTOR_HTTP_PORT": str(self.settings.http_port),
            "DIRECTOR_SITES_DOMAIN": self.settings.sites_domain,
            "DIRECTOR_EDGE_IMAGE": self.settings.edge_image,
            "DIRECTOR_SITE_IMAGE": self.settings.site_image,
            "DIRECTOR_RESYNC_SECONDS": str(self.resync_seconds),
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(DIRECTOR), "controller", "--step-timeout", "30", "--max-backoff", "5"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("0.0.0.0", 0))
        port: int = probe.getsockname()[1]
        return port


def get(settings: Settings, host: str, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
    """One GET through the edge on a fresh connection, as a browser opening the page would."""
    connection = http.client.HTTPConnection("127.0.0.1", settings.http_port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host, "Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def host_of(settings: Settings, name: str) -> str:
    return f"{name}.{settings.sites_domain}"


def eventually(
    check: Callable[[], bool], seconds: float, what: str, controller: ControllerProcess | None = None
) -> float:
    """Poll `check` until it holds; return how long that took. Past `seconds`, fail with the log's tail."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except (OSError, NotFound):
            pass
        if time.monotonic() - started > seconds:
            tail = controller.tail() if controller is not None else ""
            pytest.fail(f"timed out after {seconds:.0f}s waiting for {what}\n{tail}")
        time.sleep(0.05)


def serves(settings: Settings, host: str, status: int, text: str = "") -> bool:
    answer = get(settings, host)
    return answer[0] == status and text in answer[1]


def condition(store: SiteStore, name: str, type_: ConditionType) -> Condition | None:
    status = store.get(name).status
    return status.condition(type_) if status is not None else None


def ready(store: SiteStore, name: str) -> bool:
    found = condition(store, name, "Ready")
    return found is not None and found.status == "True"


def services_of(client: docker.DockerClient, settings: Settings) -> dict[str, str]:
    """Every Swarm service of this instance: name -> the site label (empty for the edge)."""
    found = client.api.services(filters={"label": f"{LABEL_INSTANCE}={settings.instance}"})
    return {s["Spec"]["Name"]: s["Spec"].get("Labels", {}).get(LABEL_SITE, "") for s in found}


def running_tasks(client: docker.DockerClient, service: str) -> list[dict[str, object]]:
    tasks = client.api.tasks(filters={"service": service, "desired-state": "running"})
    return [t for t in tasks if t.get("Status", {}).get("State") == "running"]


def site(name: str, **spec: object) -> Site:
    return Site(metadata=ObjectMeta(name=name), spec=SiteSpec.model_validate(spec))


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
