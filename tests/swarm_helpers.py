"""What every test and benchmark that runs Director for real shares: `director controller` as a subprocess,
HTTP through its edge, waiting for the world to converge, and reading what is on the Swarm.

tests/ is on sys.path for the tests (tests/conftest.py lives here, prepend import mode); the benchmarks in
bench/ put it there themselves, so the controller runs the same way in both.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import docker
import pytest

from reconcilers.docker_calls import LABEL_INSTANCE, LABEL_SITE
from specs.config import Settings
from specs.models import Condition, ConditionType, ObjectMeta, Site, SiteSpec
from store.records import NotFound, SiteStore

ROOT = Path(__file__).resolve().parents[1]
DIRECTOR = Path(sys.executable).with_name("director")
# Short enough that a failing step or a backoff never outlasts a test's patience.
TEST_CONTROLLER_ARGUMENTS = ("--step-timeout", "30", "--max-backoff", "5")


class ControllerProcess:
    """One `director controller` subprocess over `settings`, its output appended to `log`."""

    def __init__(
        self,
        settings: Settings,
        log: Path,
        *,
        resync_seconds: int = 10,
        arguments: Sequence[str] = TEST_CONTROLLER_ARGUMENTS,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        # More environment, such as DIRECTOR_API_URL for a controller that applies GitSources.
        self.env = dict(env or {})
        self.log = log
        self.resync_seconds = resync_seconds
        self.arguments = list(arguments)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = (
            os.environ
            | {
                "DIRECTOR_STATE_DIR": str(self.settings.state_dir),
                "DIRECTOR_INSTANCE": self.settings.instance,
                "DIRECTOR_HTTP_PORT": str(self.settings.http_port),
                "DIRECTOR_SITES_DOMAIN": self.settings.sites_domain,
                "DIRECTOR_EDGE_IMAGE": self.settings.edge_image,
                "DIRECTOR_SITE_IMAGE": self.settings.site_image,
                "DIRECTOR_RESYNC_SECONDS": str(self.resync_seconds),
            }
            | self.env
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(DIRECTOR), "controller", *self.arguments],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )

    def signal(self, signum: int) -> int:
        """Send `signum` and return the exit code the process ends with."""
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, and SIGKILL if the controller has not finished within `timeout` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
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
    check: Callable[[], bool],
    seconds: float,
    what: str,
    controller: ControllerProcess | None = None,
    *,
    poll: float = 0.05,
) -> float:
    """Poll `check` every `poll` seconds until it holds; return how long that took. Past `seconds`, fail
    with the log's tail."""
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
        time.sleep(poll)


def serves(settings: Settings, host: str, status: int, text: str = "") -> bool:
    answer = get(settings, host)
    return answer[0] == status and text in answer[1]


def condition(store: SiteStore, name: str, type_: ConditionType) -> Condition | None:
    status = store.get(name).status
    return status.condition(type_) if status is not None else None


def ready(store: SiteStore, name: str) -> bool:
    found = condition(store, name, "Ready")
    return found is not None and found.status == "True"


def record_gone(store: SiteStore, name: str) -> bool:
    """True once the record is deleted for good (not merely marked with a deletionTimestamp)."""
    try:
        store.get(name)
    except NotFound:
        return True
    return False


def services_of(client: docker.DockerClient, settings: Settings) -> dict[str, str]:
    """Every Swarm service of this instance: name -> the site label (empty for the edge)."""
    found = client.api.services(filters={"label": f"{LABEL_INSTANCE}={settings.instance}"})
    return {s["Spec"]["Name"]: s["Spec"].get("Labels", {}).get(LABEL_SITE, "") for s in found}


def site(name: str, **spec: object) -> Site:
    return Site(metadata=ObjectMeta(name=name), spec=SiteSpec.model_validate(spec))
