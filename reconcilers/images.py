"""Which image a service runs (a site's or the edge's): the names of Director's local images resolve to the
one built here, named by its ID so that Swarm does not try to pull it before each start
(local_images.pinned_local_image)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import docker

from reconcilers.docker_calls import off_loop
from reconcilers.local_images import BASE_ALIASES, pinned_local_image, resolve_edge_image, resolve_site_image
from specs.config import Settings


class ImageResolver:
    def __init__(self, client: docker.DockerClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._lock = asyncio.Lock()
        self._site_image: str | None = None
        self._edge_image: str | None = None

    async def site_image(self, requested: str, deadline: float) -> str:
        if requested not in BASE_ALIASES:
            return requested
        # The image the content-hash tag names, not the alias: a rebuilt image changes the spec and so
        # redeploys the site.
        async with self._lock:
            if self._site_image is None:
                self._site_image = await off_loop(deadline, self._pinned, resolve_site_image)
            return self._site_image

    async def edge_image(self, deadline: float) -> str:
        async with self._lock:
            if self._edge_image is None:
                # By ID too: every edge start (a new node, a crash, an update) would wait for the pull.
                self._edge_image = await off_loop(deadline, self._pinned, resolve_edge_image)
            return self._edge_image

    def _pinned(self, resolve: Callable[[docker.DockerClient, Settings], str]) -> str:
        return pinned_local_image(self._client, resolve(self._client, self._settings))
