"""A Trigger that follows Docker's events for Director's services, containers, network and nodes: each one
marks what it concerns stale in the Swarm cache, then wakes the site (or the platform) it is about.

Docker's event stream is lossy (256 events kept, none across a daemon restart) and a connection can go
silent without closing, so the stream is only a way to wake early and to keep the cache current: it is
reopened every STREAM_SECONDS with `since` set to the last event seen, and after any error (at growing
intervals up to a few seconds, while dockerd is away). When it breaks, and again when it reconnects, the
cache trusts nothing until it has listed everything again (done at once on reconnecting); what that listing
finds changed without an event wakes what it concerns. The periodic resync remains the truth. The edge's
events say when the stream was lost and when it came back.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import docker
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from controller.steps import describe
from controller.types import Enqueue, Request
from reconcilers.docker_calls import LABEL_INSTANCE, LABEL_SITE, SWARM_SERVICE_NAME_LABEL
from reconcilers.platform import PLATFORM
from reconcilers.swarm_cache import Entry, SwarmCache
from specs.config import EDGE_SERVICE_SUFFIX, Settings
from specs.models import SITE_NAME_PATTERN
from store.events import EventLog, EventResult, NewEvent

log = logging.getLogger(__name__)

STREAM_SECONDS = 60.0
# The daemon ends a stream at `until`; one still open well after that is a dead connection.
SILENCE_GRACE_SECONDS = 15.0
# A broken stream is reopened after RETRY_SECONDS, then twice as long each time up to RETRY_MAX_SECONDS,
# plus up to RETRY_JITTER.
RETRY_SECONDS = 0.25
RETRY_MAX_SECONDS = 3.0
RETRY_JITTER = 0.5
# A stream ending more than this before `until` (sent rounded up to whole seconds) was cut off.
EARLY_END_SECONDS = 1.0
# How long the listing made on reconnecting may take.
RELIST_SECONDS = 60.0
# What a container does that can change whether its site is served; exec_*, attach, resize... cannot.
CONTAINER_ACTIONS = frozenset({"create", "start", "die", "kill", "oom", "stop", "destroy", "health_status"})
# What happens to a network that changes what the cache holds; (dis)connect happens with every container.
NETWORK_ACTIONS = frozenset({"create", "destroy", "remove", "update"})
EVENT_TYPES = ["service", "container", "network", "node"]
MISSED = "resync: a change no Docker event told of"
_SITE_NAME = re.compile(SITE_NAME_PATTERN)


class StreamBroken(ConnectionError):
    """Docker's event stream ended before the time it was asked to end at."""


class StreamSilent(ConnectionError):
    """Docker's event stream stayed open past the time it was asked to end at: a dead connection."""


def _parts(event: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    kind = str(event.get("Type", ""))
    action = str(event.get("Action", "")).split(":", 1)[0]
    attributes = event.get("Actor", {}).get("Attributes", {}) or {}
    return kind, action, attributes


def request_for_service(name: str, settings: Settings) -> Request | None:
    """Whose a service is, by its name alone (service events carry no labels)."""
    if name == settings.edge_service:
        return PLATFORM
    prefix = settings.service_name("")
    site = name.removeprefix(prefix)
    if name.startswith(prefix) and _SITE_NAME.match(site):
        return Request("Site", site)
    return None


def request_for(event: dict[str, Any], settings: Settings) -> tuple[Request, str] | None:
    """The request an event asks for and how to describe it, or None when it is not one of ours."""
    kind, action, attributes = _parts(event)
    description = f"docker:{kind}/{action}"
    if kind == "service":
        found = request_for_service(str(attributes.get("name", "")), settings)
        return None if found is None else (found, description)
    if kind == "container" and action in CONTAINER_ACTIONS:
        if attributes.get(LABEL_INSTANCE) != settings.instance:
            return None
        if attributes.get(SWARM_SERVICE_NAME_LABEL) == settings.edge_service:
            return PLATFORM, description
        labelled = attributes.get(LABEL_SITE)
        if labelled:
            return Request("Site", str(labelled)), description
    if kind == "network" and action in NETWORK_ACTIONS and attributes.get("name") == settings.network:
        return PLATFORM, description
    if kind == "node":
        # The edge runs on every node: one joining, leaving or changing state is the platform's concern.
        return PLATFORM, description
    return None


def mark_stale(event: dict[str, Any], cache: SwarmCache) -> None:
    """Mark what one of this instance's events (see request_for) changed stale in the cache."""
    kind, action, attributes = _parts(event)
    if kind == "service":
        name = attributes.get("name")
        if name:
            cache.forget_service(str(name))
            if is_edge_name(str(name)):
                cache.forget_edges()
        else:
            cache.forget_service_id(str(event.get("Actor", {}).get("ID", "")))
    elif kind == "container" and action in CONTAINER_ACTIONS:
        service = attributes.get(SWARM_SERVICE_NAME_LABEL)
        if service:
            cache.forget_service(str(service))
    elif kind == "network" and action in NETWORK_ACTIONS and attributes.get("name"):
        cache.forget_network(str(attributes["name"]))
    elif kind == "node":
        cache.forget_nodes()


def is_edge_name(name: str) -> bool:
    """Whether a service may be an edge, of any instance, by its name (service events carry no labels)."""
    return name.endswith(EDGE_SERVICE_SUFFIX)


def _is_edge_event(event: dict[str, Any]) -> bool:
    kind, _, attributes = _parts(event)
    return kind == "service" and is_edge_name(str(attributes.get("name", "")))


def request_for_entry(entry: Entry, settings: Settings) -> Request | None:
    kind, name = entry
    if kind == "service":
        return request_for_service(name, settings)
    return PLATFORM


class DockerEvents:
    """Trigger: Docker events -> what they changed marked stale in the cache, then
    enqueue(request, "docker:<type>/<action>")."""

    name = "docker-events"

    def __init__(
        self,
        settings: Settings,
        client: docker.DockerClient,
        cache: SwarmCache,
        stream_seconds: float = STREAM_SECONDS,
        events: EventLog | None = None,
        on_return: Callable[[str], object] | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._cache = cache
        self._stream_seconds = stream_seconds
        self._relisting: asyncio.Task[None] | None = None
        self._events = events
        # Told when the stream is back after an outage: what failed while Docker was away may go again now.
        self._on_return = on_return
        # Said to on_return once the Swarm has been listed again after the outage it ended.
        self._return: str | None = None
        self._recording: set[asyncio.Future[None]] = set()
        # When the stream broke, while it stays broken; how long each outage lasted, for those who measure.
        self._lost_at: float | None = None
        self.outages: list[float] = []
        self.streams_opened = 0

    async def run(self, enqueue: Enqueue) -> None:
        loop = asyncio.get_running_loop()

        def deliver(event: dict[str, Any], request: Request, description: str) -> None:
            # Stale first: the reconcile the request wakes must not read the picture from before the event.
            mark_stale(event, self._cache)
            enqueue(request, description)

        def missed(entry: Entry) -> None:
            request = request_for_entry(entry, self._settings)
            if request is not None:
                enqueue(request, MISSED)

        stop_watching = self._cache.watch(missed)
        # From where the cache's picture was listed: what happened since then is replayed, not lost.
        since = self._cache.trusted_since() or time.time()
        # A broken stream is opened again soon, then less and less often while dockerd is away, never more
        # than RETRY_MAX_SECONDS apart: once it is back, it is seen within that.
        reopening = AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=RETRY_SECONDS, max=RETRY_MAX_SECONDS)
            + wait_random(0, RETRY_JITTER),
            before_sleep=self._lost,
        )
        try:
            while True:
                since = await reopening(self._follow_one, since, loop, deliver)
        finally:
            stop_watching()
            if self._relisting is not None:
                self._relisting.cancel()

    async def _follow_one(
        self,
        since: float,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[dict[str, Any], Request, str], None],
    ) -> float:
        """One stream followed to its end; where the next one starts. Raises when it broke or went silent."""
        until = time.time() + self._stream_seconds
        holder: list[Any] = []
        follow = asyncio.ensure_future(
            asyncio.to_thread(self._follow, since, until, holder, loop, deliver, self._lost_at is not None)
        )
        # A stream given up on (silent, or the trigger cancelled) ends in an error nobody awaits.
        follow.add_done_callback(_retrieve)
        patience = self._stream_seconds + SILENCE_GRACE_SECONDS
        try:
            return await asyncio.wait_for(asyncio.shield(follow), patience)
        except TimeoutError:
            _close(holder)
            raise StreamSilent(f"Docker's event stream went silent for {patience:.0f} s") from None
        except asyncio.CancelledError:
            _close(holder)
            raise

    def _lost(self, attempt: RetryCallState) -> None:
        """A stream failed: nothing the cache holds is trusted until it lists again, and the first failure of
        a run of them is said once in the log and in the edge's events (no traceback: this is expected when
        dockerd restarts)."""
        error = attempt.outcome.exception() if attempt.outcome is not None else None
        why = describe(error) if error is not None else "unknown"
        # Events may be lost from here: nothing the cache holds is trusted until it lists again.
        self._cache.distrust_all()
        wait = attempt.upcoming_sleep
        if self._lost_at is not None:
            log.debug("Docker's event stream is still down (%s); next try in %.1f s", why, wait)
            return
        self._lost_at = time.monotonic()
        message = (
            f"Docker's event stream was lost ({why}); reopening it (next try in {wait:.1f} s): until then, "
            "changes in Swarm are found by listing it"
        )
        log.warning("%s", message)
        self._record("failed", message)

    def _reconnected(self) -> None:
        """Events were lost while the stream was down (all of them if dockerd restarted): list everything
        again now, so what changed meanwhile wakes what it concerns without waiting for the resync."""
        self._cache.distrust_all()
        if self._lost_at is not None:
            seconds = time.monotonic() - self._lost_at
            self._lost_at = None
            self.outages.append(seconds)
            message = (
                f"Docker's event stream reopened after {seconds:.1f} s without it: Swarm is listed again, "
                "and what changed meanwhile is reconciled"
            )
            log.info("%s", message)
            self._record("updated", message)
            self._return = f"docker-events: the engine answers again after {seconds:.1f} s"
        if self._relisting is None or self._relisting.done():
            self._relisting = asyncio.create_task(self._relist())

    def _record(self, result: EventResult, message: str) -> None:
        """An event of the platform (the edge's record) saying what happened to the stream, written off the
        loop; the event log failing (a full disk) costs the event, never the trigger."""
        if self._events is None:
            return
        events = self._events
        event = NewEvent(
            site=PLATFORM.name,
            generation=None,
            reconcile_id=f"docker-events-{self.streams_opened}",
            trigger=self.name,
            step="docker-events",
            result=result,
            duration_seconds=0.0,
            message=message,
        )

        def write() -> None:
            try:
                events.record_many([event])
            except Exception as error:
                log.error("the event %r was not recorded: %s", message, error)

        self._recording.add(task := asyncio.ensure_future(asyncio.to_thread(write)))
        task.add_done_callback(self._recording.discard)

    async def _relist(self) -> None:
        """List the Swarm again until it answers (a restarted engine's Swarm takes a moment), then tell
        on_return of an outage that ended: what failed meanwhile is retried once Swarm can serve it."""
        relisting = AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=RETRY_SECONDS, max=RETRY_MAX_SECONDS),
            stop=stop_after_delay(RELIST_SECONDS),
            reraise=True,
        )

        async def list_all() -> None:
            await self._cache.refresh(time.monotonic() + RELIST_SECONDS)

        try:
            await relisting(list_all)
        except Exception as error:
            # The next read lists again, and the resync after it: nothing is trusted meanwhile.
            log.warning("listing the Swarm after the event stream reconnected failed: %s", error)
        returned, self._return = self._return, None
        if returned is not None and self._on_return is not None:
            self._on_return(returned)

    def _follow(
        self,
        since: float,
        until: float,
        holder: list[Any],
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[dict[str, Any], Request, str], None],
        reconnecting: bool,
    ) -> float:
        """Follow one stream until `until`; return where the next one starts. Runs in a worker thread."""
        stream = self._client.events(
            since=int(since),
            until=int(until) + 1,
            decode=True,
            filters={"type": EVENT_TYPES},
        )
        holder.append(stream)
        self.streams_opened += 1
        if reconnecting:
            loop.call_soon_threadsafe(self._reconnected)
        last_seen = since
        for event in stream:
            last_seen = max(last_seen, float(event.get("timeNano", 0)) / 1e9 or float(event.get("time", 0)))
            found = request_for(event, self._settings)
            if found is not None:
                loop.call_soon_threadsafe(deliver, event, *found)
            elif _is_edge_event(event):
                # Another instance's edge: its published ports are open to sites here too.
                loop.call_soon_threadsafe(self._cache.forget_edges)
        if time.time() < until - EARLY_END_SECONDS:
            # The daemon ends a stream at `until`; one ending sooner lost its connection (dockerd restarted?).
            raise StreamBroken(f"Docker's event stream ended {until - time.time():.0f} s before its end")
        # Whole seconds overlap by one: an event seen twice only marks stale and wakes twice.
        return max(last_seen, until - 1)


def _retrieve(follow: asyncio.Future[float]) -> None:
    if not follow.cancelled():
        follow.exception()


def _close(holder: list[Any]) -> None:
    for stream in holder:
        try:
            stream.close()
        except Exception:  # closing a broken stream may itself fail; the thread ends either way
            log.debug("closing the event stream failed", exc_info=True)
