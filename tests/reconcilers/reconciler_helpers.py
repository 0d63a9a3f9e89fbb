"""Helpers of the reconciler tests: contexts, sites, HTTP via the edge, a counting Docker API, the Stack."""

from __future__ import annotations

import asyncio
import http.client
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pytest

from controller.types import Outcome, ReconcileContext
from reconcilers.files import SiteFiles
from reconcilers.routes import SiteRoutes
from reconcilers.service import SiteServices
from reconcilers.swarm_cache import SwarmCache
from specs.config import Settings
from specs.models import ObjectMeta, Site, SiteSpec

WRITE_METHODS = frozenset(
    {"create_service", "update_service", "remove_service", "create_network", "remove_network", "kill"}
)


def context(
    seconds: float = 60.0, trigger: str = "test", given: dict[str, dict[str, object]] | None = None
) -> ReconcileContext:
    return ReconcileContext(
        reconcile_id="test", trigger=trigger, deadline=time.monotonic() + seconds, given=given or {}
    )


def make_site(name: str, created: datetime | None = None, generation: int = 1, **spec: Any) -> Site:
    meta = ObjectMeta(name=name, generation=generation, creation_timestamp=created or datetime.now(UTC))
    return Site(metadata=meta, spec=SiteSpec(**spec))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        port: int = probe.getsockname()[1]
        return port


def http_get(settings: Settings, host: str, path: str = "/") -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", settings.http_port, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


# For about 100 ms after a reload Nginx's old workers still accept connections with the old routes (the
# master lets the new workers start before it tells the old ones to quit): an answer counts once it holds.
STEADY_SECONDS = 0.5


def wait_for_http(
    settings: Settings, host: str, want_status: int, want_text: str = "", seconds: float = 30.0
) -> tuple[int, str]:
    deadline = time.monotonic() + seconds
    found: tuple[int, str] = (0, "")
    steady_since: float | None = None
    while time.monotonic() < deadline:
        try:
            found = http_get(settings, host)
        except OSError as error:
            found = (0, str(error))
        if found[0] == want_status and want_text in found[1]:
            steady_since = steady_since or time.monotonic()
            if time.monotonic() - steady_since >= STEADY_SECONDS:
                return found
        else:
            steady_since = None
        time.sleep(0.05)
    pytest.fail(f"{host} did not answer {want_status} with {want_text!r} in {seconds:.0f} s; last: {found}")


class CountingApi:
    """Docker's low-level API client, counting the calls made through it."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._api, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attribute(*args, **kwargs)

        return counted


class CountingClient:
    def __init__(self, client: docker.DockerClient) -> None:
        self.api = CountingApi(client.api)
        self.containers = client.containers


@dataclass
class Stack:
    settings: Settings
    client: docker.DockerClient
    files: SiteFiles
    services: SiteServices
    routes: SiteRoutes
    # The services' picture of the Swarm; no events trigger runs here: a test marks what it changed stale.
    cache: SwarmCache

    def ctx(self, site: Site, seconds: float = 60.0) -> ReconcileContext:
        """A context as the controller gives the service: with what the files reconciler provided."""
        return context(seconds, given={"files": {"uid": self.files.uid_of(site.name)}})

    async def converge(self, site: Site, seconds: float = 60.0) -> dict[str, Outcome]:
        """One reconcile of each concern, in the controller's order: files, service, routes."""
        files = await self.files.reconcile(site, context(seconds))
        ctx = context(seconds, given={"files": dict(files.provides)})
        return {
            "files": files,
            "service": await self.services.reconcile(site, ctx),
            "routes": await self.routes.reconcile(site, ctx),
        }

    async def until_ready(self, site: Site, seconds: float = 180.0) -> Outcome:
        return await self.until(site, lambda outcome: outcome.ready, seconds)

    async def until(self, site: Site, wanted: Callable[[Outcome], bool], seconds: float = 180.0) -> Outcome:
        """The service reconciler's outcome once `wanted` holds, or its last one at the deadline."""
        deadline = time.monotonic() + seconds
        while True:
            outcome = await self.services.reconcile(
                site, self.ctx(site, max(1.0, deadline - time.monotonic()))
            )
            if wanted(outcome) or time.monotonic() > deadline:
                return outcome
            await asyncio.sleep(0.5)

    async def finalize(self, name: str) -> dict[str, Outcome]:
        ctx = context()
        return {
            "service": await self.services.finalize(name, ctx),
            "routes": await self.routes.finalize(name, ctx),
            "files": await self.files.finalize(name, ctx),
        }


def edge_settings(test_run: Any, directory: Path, image: str) -> Settings:
    return Settings(
        instance=test_run.new_instance(),
        state_dir=directory,
        http_port=free_port(),
        edge_image=image,
        site_image=image,
    )
