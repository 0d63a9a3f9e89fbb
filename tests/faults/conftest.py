"""Fixtures of the fault tests: a fresh instance's settings (the state directory is the test's to choose)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from docker_cleanup import INSTANCE_LABEL, remove_labelled
from swarm_helpers import free_tcp_port

from specs.config import Settings


@pytest.fixture
def new_settings(
    test_run, base_image: str, swarm: docker.DockerClient
) -> Iterator[Callable[[Path], Settings]]:
    """Settings of a new instance over the given state directory; its Docker objects go when the test ends."""
    made: list[Settings] = []

    def factory(state_dir: Path) -> Settings:
        settings = Settings(
            instance=test_run.new_instance(),
            state_dir=state_dir,
            http_port=free_tcp_port(),
            edge_image=base_image,
            site_image=base_image,
        )
        made.append(settings)
        return settings

    yield factory
    for settings in made:
        remove_labelled(swarm, f"{INSTANCE_LABEL}={settings.instance}")
