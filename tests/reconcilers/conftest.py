"""A real edge on the real Swarm, shared by a test module; the site reconcilers, fresh for each test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from docker_cleanup import remove_labelled
from reconciler_helpers import Stack, context, edge_settings

from reconcilers.files import SiteFiles
from reconcilers.images import ImageResolver
from reconcilers.platform import EdgePlatform, wait_for_platform
from reconcilers.routes import SiteRoutes
from reconcilers.service import SiteServices
from reconcilers.swarm_cache import SwarmCache
from specs.config import Settings


@pytest.fixture(scope="module")
def edge(swarm, base_image, test_run, tmp_path_factory) -> Iterator[Settings]:
    """Settings of a running edge (network, Nginx service) for the whole module, removed afterwards."""
    settings = edge_settings(test_run, tmp_path_factory.mktemp("edge"), base_image)
    platform = EdgePlatform(settings, swarm, SwarmCache(settings, swarm), ImageResolver(swarm, settings))
    asyncio.run(wait_for_platform(platform, context(90)))
    yield settings
    remove_labelled(swarm, f"io.director.instance={settings.instance}")


@pytest.fixture
def stack(edge: Settings, swarm: docker.DockerClient) -> Stack:
    files = SiteFiles(edge)
    cache = SwarmCache(edge, swarm)
    services = SiteServices(edge, cache, ImageResolver(swarm, edge))
    return Stack(edge, swarm, files, services, SiteRoutes(edge, swarm), cache)


@pytest.fixture
def write_site_file(edge: Settings, stack: Stack) -> Callable[[str, str, str, int], Path]:
    def write(site: str, relative: str, text: str, mode: int = 0o660) -> Path:
        path = edge.sites_dir / site / relative
        path.write_text(text)
        uid = stack.files.uid_of(site)
        assert uid is not None
        os.chown(path, uid, 33)
        path.chmod(mode)
        return path

    return write
