"""Session fixtures for tests that use the real Docker engine in swarm mode.

Other people's tests and the demo share this Swarm, so everything a test run creates is findable:
- what a test creates itself carries `test_labels`: `io.director.test=<run id>` plus the creating process's
  pid and start time;
- what Director's own code creates under a test's `settings` carries `io.director.instance=dt<6 chars>`,
  and the instance is registered in a file naming the process that owns it.
At the end of the session this run's objects are removed; at the start, objects left by runs whose process
is gone (an interrupted run) are removed. Nothing else on the Swarm is touched.
"""

from __future__ import annotations

import os
import secrets
import socket
import string
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import docker
import docker.errors
import pytest

from reconcilers.local_images import ImageBuildError, ensure_base_image
from specs.config import Settings

# scripts/ is not a package: the cleanup module is shared with `make clean`, which runs it as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from docker_cleanup import (
    INSTANCE_LABEL,
    TEST_LABEL,
    TEST_PID_LABEL,
    TEST_PID_START_LABEL,
    process_start_ticks,
    register_instance,
    remove_labelled,
    remove_leftovers,
    unregister_instance,
)


@pytest.fixture(scope="session", autouse=True)
def no_personal_dirctl_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the tester's own dirctl configuration (written by `make run`) out of every test and child process:
    a test that means to run offline must not reach a live API with an admin token."""
    names = ("DIRECTOR_CONFIG", "DIRECTOR_SERVER", "DIRECTOR_TOKEN", "DIRECTOR_CA", "KUBECONFIG")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["DIRECTOR_CONFIG"] = str(tmp_path_factory.mktemp("dirctl") / "absent-config.yaml")
    for name in names[1:]:
        os.environ.pop(name, None)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass
class SessionRun:
    """This pytest process's identity on the shared Swarm."""

    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    pid: str = field(default_factory=lambda: str(os.getpid()))
    pid_start: str = field(default_factory=lambda: process_start_ticks(os.getpid()) or "")
    instances: list[str] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        return {TEST_LABEL: self.run_id, TEST_PID_LABEL: self.pid, TEST_PID_START_LABEL: self.pid_start}

    def new_instance(self) -> str:
        alphabet = string.ascii_lowercase + string.digits
        instance = "dt" + "".join(secrets.choice(alphabet) for _ in range(6))
        register_instance(instance, self.run_id, self.pid, self.pid_start)
        self.instances.append(instance)
        return instance


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("0.0.0.0", 0))
        port: int = probe.getsockname()[1]
        return port


def _no_engine(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def test_run() -> Iterator[SessionRun]:
    run = SessionRun()
    yield run
    labelled = [f"{TEST_LABEL}={run.run_id}", *(f"{INSTANCE_LABEL}={name}" for name in run.instances)]
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException:
        # Without an engine nothing of this run can exist in Docker; only the registry files remain.
        client = None
    if client is not None:
        try:
            for label_filter in labelled:
                remove_labelled(client, label_filter)
        finally:
            client.close()
    for instance in run.instances:
        unregister_instance(instance)


@pytest.fixture(scope="session")
def run_id(test_run: SessionRun) -> str:
    return test_run.run_id


@pytest.fixture(scope="session")
def test_labels(test_run: SessionRun) -> dict[str, str]:
    """Put these labels on everything a test creates in Docker itself (services, containers, networks...)."""
    return dict(test_run.labels)


@pytest.fixture(scope="session")
def docker_client(test_run: SessionRun) -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        _no_engine(
            f"no Docker engine answers ({error}); start one with `make setup` "
            "(or `dockerd &`), then run the tests again"
        )
    remove_leftovers(client, test_run.run_id, test_run.instances)
    yield client
    client.close()


@pytest.fixture(scope="session")
def swarm(docker_client: docker.DockerClient) -> docker.DockerClient:
    """The Docker client, once the engine is a Swarm manager (a one-node swarm is initialised if needed)."""
    state = docker_client.info()["Swarm"]
    if state["LocalNodeState"] == "inactive":
        try:
            docker_client.swarm.init(advertise_addr="127.0.0.1")
        except docker.errors.APIError as error:
            # Another test process may have initialised it a moment ago; the re-read below decides.
            if "already part of a swarm" not in str(error):
                raise
        state = docker_client.info()["Swarm"]
    if state["LocalNodeState"] != "active" or not state.get("ControlAvailable"):
        pytest.fail(
            f"the Docker engine is not a Swarm manager (swarm state {state['LocalNodeState']!r}, "
            f"manager: {bool(state.get('ControlAvailable'))}); "
            "run `docker swarm init --advertise-addr 127.0.0.1`",
            pytrace=False,
        )
    return docker_client


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    """The content-hash tag of director-local/base (nginx-light, python3, curl); built at first use, ~40 s."""
    try:
        return ensure_base_image(docker_client)
    except ImageBuildError as error:
        pytest.fail(f"the local base image could not be built: {error}", pytrace=False)


@pytest.fixture
def make_settings(test_run: SessionRun, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """Settings with a unique instance (`dt` + 6 characters), a fresh state dir and a free port.

    Keyword arguments override any field, e.g. make_settings(site_image=base_image).
    """

    def factory(**overrides: Any) -> Settings:
        instance = test_run.new_instance()
        values: dict[str, Any] = {
            "instance": instance,
            "state_dir": tmp_path_factory.mktemp(instance),
            "http_port": free_tcp_port(),
        }
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the test thread while its
    browser is open, and a test after it that runs its own loop (asyncio.run) would be refused."""
    in_browser = [item for item in items if {"browser", "page"} & set(getattr(item, "fixturenames", ()))]
    if in_browser:
        chosen = set(map(id, in_browser))
        items[:] = [item for item in items if id(item) not in chosen] + in_browser
