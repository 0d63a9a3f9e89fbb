"""A Trigger that wakes the controller on Docker's events for Director's services and containers.

Docker's event stream is lossy (256 events kept, none across a daemon restart) and a connection can go
silent without closing, so the stream is only a way to wake early: it is reopened every
STREAM_SECONDS with `since` set to the last event seen, and after any error, and the periodic resync
remains the truth.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import docker

from controller.types import Enqueue, Request
from reconcilers.docker_calls import LABEL_INSTANCE, LABEL_SITE, SWARM_SERVICE_NAME_LABEL
from reconcilers.platform import PLATFORM
from specs.config import Settings
from specs.models import SITE_NAME_PATTERN

log = logging.getLogger(__name__)

STREAM_SECONDS = 60.0
# The daemon ends a stream at `until`; one still open well after that is a dead connection.
SILENCE_GRACE_SECONDS = 15.0
RETRY_SECONDS = 2.0
# What a container does that can change whether its site is served; exec_*, attach, resize... cannot.
CONTAINER_ACTIONS = frozenset({"create", "start", "die", "kill", "oom", "stop", "destroy", "health_status"})
_SITE_NAME = re.compile(SITE_NAME_PATTERN)


def request_for(event: dict[str, Any], settings: Settings) -> tuple[Request, str] | None:
    """The request an event asks for and how to describe it, or None when it is not one of ours."""
    kind = event.get("Type", "")
    action = str(event.get("Action", "")).split(":", 1)[0]
    attributes = event.get("Actor", {}).get("Attributes", {}) or {}
    description = f"docker:{kind}/{action}"
    if kind == "service":
        # Service events carry the service's name only, no labels: Director's names say whose it is.
        name = str(attributes.get("name", ""))
        if name == settings.edge_service:
            return PLATFORM, description
        prefix = settings.service_name("")
        site = name.removeprefix(prefix)
        if name.startswith(prefix) and _SITE_NAME.match(site):
            return Request("Site", site), description
        return None
    if kind == "container" and action in CONTAINER_ACTIONS:
        if attributes.get(LABEL_INSTANCE) != settings.instance:
            return None
        if attributes.get(SWARM_SERVICE_NAME_LABEL) == settings.edge_service:
            return PLATFORM, description
        labelled = attributes.get(LABEL_SITE)
        if labelled:
            return Request("Site", str(labelled)), description
    return None


class DockerEvents:
    """Trigger: Docker events -> enqueue(Request("Site", name), "docker:<type>/<action>")."""

    name = "docker-events"

    def __init__(
        self,
        settings: Settings,
        client: docker.DockerClient,
        listeners: Sequence[Callable[[str], None]] = (),
        stream_seconds: float = STREAM_SECONDS,
    ) -> None:
        self._settings = settings
        self._client = client
        # Told the site name before it is enqueued, e.g. SiteServices.forget to drop a cached picture.
        self._listeners = tuple(listeners)
        self._stream_seconds = stream_seconds
        self.streams_opened = 0

    async def run(self, enqueue: Enqueue) -> None:
        loop = asyncio.get_running_loop()

        def deliver(request: Request, description: str) -> None:
            if request.kind == "Site":
                for listener in self._listeners:
                    listener(request.name)
            enqueue(request, description)

        since = time.time()
        while True:
            until = time.time() + self._stream_seconds
            holder: list[Any] = []
            follow = asyncio.ensure_future(
                asyncio.to_thread(self._follow, since, until, holder, loop, deliver)
            )
            try:
                since = await asyncio.wait_for(
                    asyncio.shield(follow), self._stream_seconds + SILENCE_GRACE_SECONDS
                )
            except TimeoutError:
                log.warning("Docker's event stream went silent; reopening it")
                _close(holder)
            except asyncio.CancelledError:
                _close(holder)
                raise
            except Exception:
                log.exception("Docker's event stream failed; reopening it in %.0f s", RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)

    def _follow(
        self,
        since: float,
        until: float,
        holder: list[Any],
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Request, str], None],
    ) -> float:
        """Follow one stream until `until`; return where the next one starts. Runs in a worker thread."""
        stream = self._client.events(
            since=int(since),
            until=int(until) + 1,
            decode=True,
            filters={"type": ["service", "container"]},
        )
        holder.append(stream)
        self.streams_opened += 1
        last_seen = since
        for event in stream:
            last_seen = max(last_seen, float(event.get("timeNano", 0)) / 1e9 or float(event.get("time", 0)))
            found = request_for(event, self._settings)
            if found is not None:
                loop.call_soon_threadsafe(deliver, *found)
        # Whole seconds overlap by one: an event seen twice only wakes a reconcile twice.
        return max(last_seen, until - 1)


def _close(holder: list[Any]) -> None:
    for stream in holder:
        try:
            stream.close()
        except Exception:  # closing a broken stream may itself fail; the thread ends either way
            log.debug("closing the event stream failed", exc_info=True)
