"""One `director controller` process, with its edge, shared by every test of a module.

Starting a controller and its edge costs seconds; the tests of a module use different site names, so they
share one, which is stopped and whose Docker objects are removed when the module is done.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
from docker_cleanup import INSTANCE_LABEL, remove_labelled
from swarm_helpers import ControllerProcess, eventually, free_tcp_port, get

from specs.config import Settings
from store.records import SiteStore

EDGE_START_SECONDS = 90


@pytest.fixture(scope="module")
def director(
    test_run, base_image: str, swarm: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProcess]:
    """A running controller whose edge answers (404 for an unknown host) before the first test starts."""
    instance = test_run.new_instance()
    settings = Settings(
        instance=instance,
        state_dir=tmp_path_factory.mktemp(instance),
        http_port=free_tcp_port(),
        edge_image=base_image,
        site_image=base_image,
    )
    controller = ControllerProcess(settings, settings.state_dir.parent / f"{instance}-controller.log")
    controller.start()
    try:
        eventually(
            lambda: get(settings, "nobody.example.org")[0] == 404,
            EDGE_START_SECONDS,
            "the edge to answer",
            controller,
        )
        yield controller
    finally:
        controller.stop()
        remove_labelled(swarm, f"{INSTANCE_LABEL}={instance}")


@pytest.fixture(scope="module")
def settings(director: ControllerProcess) -> Settings:
    return director.settings


@pytest.fixture(scope="module")
def store(settings: Settings) -> SiteStore:
    return SiteStore(settings.state_dir)
