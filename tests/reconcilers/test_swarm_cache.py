"""The shared Swarm cache: what it trusts, and what it stops trusting when Docker's events may have been lost.

The dockerd-restart scenario is simulated at the cache level (dockerd is shared: nothing restarts it here):
a service the cache believes absent exists, and the event stream breaks and comes back with its history gone.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import docker
import pytest
import requests
from reconciler_helpers import CountingClient, context, make_site

from controller.types import Request
from reconcilers.docker_events import (
    MISSED,
    RETRY_JITTER,
    RETRY_MAX_SECONDS,
    DockerEvents,
    is_edge_name,
    mark_stale,
)
from reconcilers.images import ImageResolver
from reconcilers.service import SiteServices
from reconcilers.swarm_cache import SwarmCache
from specs.config import Settings
from specs.platform import PLATFORM_NAME
from store.events import EventLog

# Dynamic, with its service at 0 replicas: converged the moment it exists.
PAUSED_DYNAMIC = {"type": "dynamic", "image": "director-local/site:latest", "availability": "not-served"}


async def _until(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:.0f} s")
        await asyncio.sleep(0.05)


def _services_of(stack: Any, cache: SwarmCache) -> SiteServices:
    return SiteServices(stack.settings, cache, ImageResolver(stack.client, stack.settings))


@pytest.mark.swarm
@pytest.mark.slow
async def test_a_service_the_cache_believes_absent_is_updated_instead_of_failing_with_409(stack):
    site = make_site("adopted", env={"GREETING": "new"}, **PAUSED_DYNAMIC)
    await stack.files.reconcile(site, context())
    service_name = stack.settings.service_name("adopted")
    counting = CountingClient(stack.client)
    cache = SwarmCache(stack.settings, counting)
    services = _services_of(stack, cache)
    await services.observe()
    assert await cache.service(service_name, time.monotonic() + 30) is None
    assert cache.is_trusted("service", service_name)

    # The service appears from an older spec without this cache hearing of it, as when its events are lost
    # across a dockerd restart.
    older = make_site("adopted", env={"GREETING": "old"}, **PAUSED_DYNAMIC)
    assert (await stack.services.reconcile(older, stack.ctx(older))).steps[0].result == "created"

    outcome = await services.reconcile(site, stack.ctx(site))
    assert [(step.step, step.result) for step in outcome.steps] == [("service", "updated")]
    assert counting.api.calls["create_service"] == 1, "the create was tried, answered 409, and not repeated"
    assert counting.api.calls["update_service"] == 1
    container = stack.client.api.inspect_service(service_name)["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert "GREETING=new" in container["Env"]

    # The cache holds what Docker answered: the next reconcile asks Docker nothing and changes nothing.
    calls = dict(counting.api.calls)
    assert (await services.reconcile(site, stack.ctx(site))).steps[0].result == "unchanged"
    assert dict(counting.api.calls) == calls


class RestartingEvents:
    """The real Docker client, whose event stream the test cuts as a dockerd restart would: the stream ends,
    reconnecting is refused until the test lets it, and nothing from before the return is replayed."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client
        self.api = client.api
        self.containers = client.containers
        self._streams: list[Any] = []
        self._lock = threading.Lock()
        self._refusing = False
        self._back_at = 0.0

    def events(self, **options: Any) -> Any:
        with self._lock:
            if self._refusing:
                raise requests.exceptions.ConnectionError("dockerd is restarting")
            # A restarted daemon has no events from before it came back.
            options["since"] = max(options["since"], int(self._back_at) + 1)
        stream = self._client.events(**options)
        with self._lock:
            self._streams.append(stream)
        return stream

    def go_down(self) -> None:
        with self._lock:
            self._refusing = True
            streams, self._streams = self._streams, []
        for stream in streams:
            stream.close()

    def come_back(self) -> None:
        with self._lock:
            self._refusing = False
            self._back_at = time.time()


def _add_env(service_name: str, assignment: str) -> None:
    command = ["docker", "service", "update", "--detach", "--env-add", assignment, service_name]
    subprocess.run(command, check=True, capture_output=True)


@pytest.mark.swarm
@pytest.mark.slow
async def test_a_broken_event_stream_distrusts_the_cache_and_its_return_lists_again(stack):
    steady = make_site("steady", **PAUSED_DYNAMIC)
    await stack.converge(steady)
    appearing = make_site("appearing", **PAUSED_DYNAMIC)
    await stack.files.reconcile(appearing, context())
    steady_service = stack.settings.service_name("steady")
    appearing_service = stack.settings.service_name("appearing")

    docker_client = RestartingEvents(stack.client)
    cache = SwarmCache(stack.settings, docker_client)
    services = _services_of(stack, cache)
    woken: list[tuple[Request, str]] = []
    trigger = DockerEvents(stack.settings, docker_client, cache, stream_seconds=1.0)
    running = asyncio.create_task(trigger.run(lambda request, why: woken.append((request, why))))
    try:
        # Once a second stream is open the first one's replay is in: the listing after it is trusted.
        await _until(lambda: trigger.streams_opened >= 2, "a second event stream")
        await services.observe()
        assert await cache.service(appearing_service, time.monotonic() + 30) is None
        assert cache.is_trusted("service", steady_service) and cache.is_trusted("service", appearing_service)

        docker_client.go_down()
        await _until(lambda: not cache.is_trusted("service", steady_service), "the cache distrusted")
        assert not cache.is_trusted("service", appearing_service), "an absence is not trusted either"

        # While the stream is down (its events lost), one service changes and another appears.
        await asyncio.to_thread(_add_env, steady_service, "CHANGED=1")
        assert (await stack.services.reconcile(appearing, stack.ctx(appearing))).steps[0].result == "created"
        # The cache does not answer from what it believed: it lists again, and wakes what changed.
        found = await cache.service(appearing_service, time.monotonic() + 30)
        assert found is not None and found.name == appearing_service
        adopted = await services.reconcile(appearing, stack.ctx(appearing))
        assert [(step.step, step.result) for step in adopted.steps] == [("service", "unchanged")]
        assert (Request("Site", "steady"), MISSED) in woken
        assert (Request("Site", "appearing"), MISSED) in woken

        # Another change while still down, then the stream returns: everything is listed again at once.
        await asyncio.to_thread(_add_env, steady_service, "CHANGED=2")
        woken.clear()
        listings, opened = cache.listings, trigger.streams_opened
        docker_client.come_back()
        await _until(lambda: trigger.streams_opened > opened and cache.listings > listings, "the return")
        await _until(lambda: (Request("Site", "steady"), MISSED) in woken, "steady woken by the listing")
        assert cache.is_trusted("service", steady_service)
        current = await cache.service(steady_service, time.monotonic() + 30)
        assert current is not None
        assert "CHANGED=2" in current.service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


# -- the bookkeeping, against a Docker API whose listing the test holds back --------------------------


class HeldListing:
    """A low-level Docker API answering from `services`, whose service listing waits for `release`."""

    def __init__(self) -> None:
        self.services_by_name: dict[str, dict[str, Any]] = {}
        self.listing_started = threading.Event()
        self.release = threading.Event()

    def add(self, name: str, version: int) -> None:
        self.services_by_name[name] = {
            "ID": f"id-{name}",
            "Version": {"Index": version},
            "Spec": {"Name": name, "Labels": {}},
        }

    def services(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        snapshot = list(self.services_by_name.values())
        self.listing_started.set()
        if not self.release.wait(30):
            raise TimeoutError("the test never released the listing")
        return snapshot

    def tasks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return []

    def networks(self, names: list[str]) -> list[dict[str, Any]]:
        return []

    def inspect_service(self, name: str) -> dict[str, Any]:
        if name not in self.services_by_name:
            raise docker.errors.NotFound(f"service {name} not found")
        return self.services_by_name[name]


class HeldClient:
    def __init__(self) -> None:
        self.api = HeldListing()


async def test_an_event_during_a_listing_outlives_it_and_a_read_begun_after_it_wins(tmp_path):
    client = HeldClient()
    client.api.add("marked", version=1)
    client.api.add("reread", version=1)
    cache = SwarmCache(Settings(state_dir=tmp_path, instance="held"), client)
    listing = asyncio.create_task(cache.refresh(time.monotonic() + 30))
    await asyncio.to_thread(client.api.listing_started.wait, 30)

    # While the listing (of version 1) is under way: an event about one, and a newer read of the other.
    cache.forget_service("marked")
    client.api.add("reread", version=2)
    read = await cache.read_service("reread", time.monotonic() + 30)
    assert read is not None and read.service["Version"]["Index"] == 2
    client.api.release.set()
    await listing

    assert not cache.is_trusted("service", "marked"), "the listing may predate the event"
    assert cache.is_trusted("service", "reread")
    kept = await cache.service("reread", time.monotonic() + 30)
    assert kept is not None and kept.service["Version"]["Index"] == 2, "the older listing did not win"
    client.api.add("marked", version=3)
    marked = await cache.service("marked", time.monotonic() + 30)
    assert marked is not None and marked.service["Version"]["Index"] == 3
    assert cache.is_trusted("service", "marked")


class HeldRead:
    """A Docker API whose first inspect waits for the test's word, counting every call."""

    def __init__(self, names: list[str]) -> None:
        self.services_by_name = {name: {"ID": f"id-{name}", "Spec": {"Name": name}} for name in names}
        self.tasks_by_service = {
            f"id-{name}": [{"ID": f"task-{name}", "ServiceID": f"id-{name}"}] for name in names
        }
        self.calls: Counter[str] = Counter()
        # Removed after the listing of services, before their tasks are asked for.
        self.removed: set[str] = set()
        self.inspect_started = threading.Event()
        self.release = threading.Event()

    def inspect_service(self, name: str) -> dict[str, Any]:
        self.calls["inspect_service"] += 1
        self.inspect_started.set()
        if not self.release.wait(30):
            raise TimeoutError("the test never released the read")
        if name in self.removed:
            raise docker.errors.NotFound(f"service {name} not found")
        return self.services_by_name[name]

    def services(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls["services"] += 1
        # As Docker's name filter: the beginnings of names match.
        return [
            service
            for name, service in self.services_by_name.items()
            if any(name.startswith(asked) for asked in filters["name"])
        ]

    def tasks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls["tasks"] += 1
        # One id or a list of them, as docker-py passes either.
        asked = filters["service"]
        ids = [asked] if isinstance(asked, str) else asked
        if any(service_id.removeprefix("id-") in self.removed for service_id in ids):
            raise docker.errors.NotFound("service not found")
        return [task for service_id in ids for task in self.tasks_by_service[service_id]]


async def test_reads_asked_while_one_is_under_way_are_answered_together_in_two_calls(tmp_path):
    api = HeldRead(["first", "web", "web-shop"])
    client = type("HeldReadClient", (), {"api": api})()
    cache = SwarmCache(Settings(state_dir=tmp_path, instance="batched"), client)
    deadline = time.monotonic() + 30
    first = asyncio.create_task(cache.read_service("first", deadline))
    await asyncio.to_thread(api.inspect_started.wait, 30)

    # Asked while the first read is under way: one batch, whatever the number of sites polling.
    later = [asyncio.create_task(cache.read_service(name, deadline)) for name in ("web", "web", "gone")]
    # One turn of the loop: each asks for its read while the first is still under way.
    await asyncio.sleep(0)
    api.release.set()
    read_first = await first
    web, web_again, gone = await asyncio.gather(*later)

    assert read_first is not None and read_first.name == "first"
    assert web is not None and web.name == "web", "a longer name the filter also matched is not the one asked"
    assert [task["ID"] for task in web.tasks] == ["task-web"]
    assert web_again is web
    assert gone is None
    assert api.calls == Counter(inspect_service=1, tasks=2, services=1)
    assert cache.is_trusted("service", "web") and cache.is_trusted("service", "gone")


async def test_a_service_removed_during_a_batch_of_reads_is_read_as_gone_and_the_others_as_they_are(tmp_path):
    api = HeldRead(["first", "kept", "removed"])
    api.removed.add("removed")
    client = type("HeldReadClient", (), {"api": api})()
    cache = SwarmCache(Settings(state_dir=tmp_path, instance="batched"), client)
    deadline = time.monotonic() + 30
    first = asyncio.create_task(cache.read_service("first", deadline))
    await asyncio.to_thread(api.inspect_started.wait, 30)
    later = [asyncio.create_task(cache.read_service(name, deadline)) for name in ("kept", "removed")]
    # One turn of the loop: each asks for its read while the first is still under way.
    await asyncio.sleep(0)
    api.release.set()
    await first
    kept, removed = await asyncio.gather(*later)

    assert kept is not None and kept.name == "kept"
    assert removed is None


@pytest.mark.swarm
async def test_edges_are_listed_when_first_asked_for_and_again_only_after_an_edge_event(stack):
    counting = CountingClient(stack.client)
    cache = SwarmCache(stack.settings, counting)
    await cache.refresh(time.monotonic() + 30)
    listed = counting.api.calls["services"]
    edges = await cache.edges(time.monotonic() + 30)
    assert all(edge["Spec"]["Labels"]["io.director.role"] == "edge" for edge in edges)
    await cache.edges(time.monotonic() + 30)
    await cache.refresh(time.monotonic() + 30)
    await cache.edges(time.monotonic() + 30)
    # One listing of the edges; the refreshes list this instance's services only.
    assert counting.api.calls["services"] == listed * 2 + 1

    # Any instance's edge, by its name: service events carry no labels.
    assert is_edge_name("someone-else-edge") and not is_edge_name(stack.settings.service_name("blog"))
    mark_stale({"Type": "service", "Action": "update", "Actor": {"Attributes": {"name": "x-edge"}}}, cache)
    await cache.edges(time.monotonic() + 30)
    assert counting.api.calls["services"] == listed * 2 + 2


@pytest.mark.swarm
async def test_nodes_are_listed_when_first_asked_for_and_again_only_after_a_node_event(stack):
    counting = CountingClient(stack.client)
    cache = SwarmCache(stack.settings, counting)
    await cache.refresh(time.monotonic() + 30)
    assert counting.api.calls["nodes"] == 0, "the resync's listing leaves the nodes out"
    nodes = await cache.nodes(time.monotonic() + 30)
    assert any(node["Status"]["State"] == "ready" for node in nodes)
    await cache.nodes(time.monotonic() + 30)
    assert counting.api.calls["nodes"] == 1

    mark_stale({"Type": "node", "Action": "update", "Actor": {"ID": nodes[0]["ID"], "Attributes": {}}}, cache)
    assert [node["ID"] for node in await cache.nodes(time.monotonic() + 30)] == [node["ID"] for node in nodes]
    assert counting.api.calls["nodes"] == 2


@pytest.mark.swarm
async def test_a_lost_event_stream_is_reopened_in_seconds_and_said_in_the_edges_events_without_a_traceback(
    stack, tmp_path, caplog: pytest.LogCaptureFixture
):
    docker_client = RestartingEvents(stack.client)
    cache = SwarmCache(stack.settings, docker_client)
    events = EventLog(tmp_path / "events.db")
    returned: list[str] = []
    trigger = DockerEvents(
        stack.settings, docker_client, cache, stream_seconds=1.0, events=events, on_return=returned.append
    )
    running = asyncio.create_task(trigger.run(lambda request, why: None))

    def stream_events() -> list[tuple[str, str]]:
        return [
            (event.result, event.message)
            for event in reversed(events.query(PLATFORM_NAME))
            if event.step == "docker-events"
        ]

    try:
        await _until(lambda: trigger.streams_opened >= 1, "the event stream")
        docker_client.go_down()
        await _until(lambda: len(stream_events()) == 1, "an event of the lost stream")
        [(result, message)] = stream_events()
        assert result == "failed" and "Docker's event stream was lost" in message, message
        opened = trigger.streams_opened
        docker_client.come_back()
        back = time.monotonic()
        await _until(lambda: trigger.streams_opened > opened, "the stream reopened")
        assert time.monotonic() - back < RETRY_MAX_SECONDS + RETRY_JITTER + 5
        await _until(lambda: len(stream_events()) == 2, "an event of the stream's return")
        assert stream_events()[1][0] == "updated" and "reopened after" in stream_events()[1][1]
        assert len(trigger.outages) == 1
        # What failed while the engine was away is retried once Swarm is listed again, not after its backoff.
        await _until(lambda: len(returned) == 1, "on_return told")
        assert "answers again" in returned[0]
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"
