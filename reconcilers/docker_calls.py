"""The one Docker client factory, the labels Director puts on what it creates, and the bridge keeping the
client's blocking calls off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.transport.unixconn import UnixHTTPAdapter

T = TypeVar("T")

LABEL_MANAGED = "io.director.managed"
LABEL_INSTANCE = "io.director.instance"
LABEL_SITE = "io.director.site"
LABEL_GENERATION = "io.director.generation"
LABEL_SPEC_HASH = "io.director.spec-hash"
LABEL_ROLE = "io.director.role"
EDGE_ROLE = "edge"
SWARM_SERVICE_NAME_LABEL = "com.docker.swarm.service.name"


class DeadlineExceeded(TimeoutError):
    """The reconcile's deadline passed while a Docker or Nginx call was still running."""


# Service create/update answer in milliseconds; a call still waiting for its answer after this is a hung
# daemon. Streams (events, logs) are exempt: docker-py lifts the timeout on them; their readers watch silence.
CALL_TIMEOUT_SECONDS = 60.0
# Connections kept open to the daemon: as many as calls run at once (workers, the events stream, the edge
# probes), so that none is opened and thrown away per call (urllib3 warns "Connection pool is full").
CONNECTIONS = 32
# The one key the Unix socket adapter's connections are pooled under.
_SOCKET_POOL_KEY = "http+docker://localhost"


def make_client(timeout: float = CALL_TIMEOUT_SECONDS, connections: int = CONNECTIONS) -> docker.DockerClient:
    """The Docker client of one process: made once by the composition root and handed to whatever talks to
    Docker (the Swarm cache, the reconcilers, the events trigger, the logs backend)."""
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}; it bounds every Docker call, in seconds")
    client = docker.from_env(timeout=timeout, max_pool_size=connections)
    adapter = getattr(client.api, "_custom_adapter", None)
    if isinstance(adapter, UnixHTTPAdapter):
        _one_pool_per_socket(adapter)
    return client


def engine_unreachable(error: BaseException) -> bool:
    """Whether a Docker call failed for want of an engine to answer (not running, its socket gone), rather
    than with the engine's own refusal (an APIError)."""
    if isinstance(error, requests.exceptions.ConnectionError):
        return True
    return isinstance(error, docker.errors.DockerException) and not isinstance(error, docker.errors.APIError)


def _one_pool_per_socket(adapter: UnixHTTPAdapter) -> None:
    """Make the Unix socket adapter keep its connections in one pool. docker-py keys its pools by the whole
    URL, query included, and keeps ten: each call about one service (its inspect, its tasks) opened a new
    connection to dockerd and closed an older pool's, so a burst of sites cost a connect per Docker call."""
    pool_of = adapter.get_connection

    def get_connection(url: str | bytes, proxies: Any = None) -> Any:
        # Every pool of this adapter speaks to the same socket; the path goes with each request, not the pool.
        return pool_of(_SOCKET_POOL_KEY, proxies)

    adapter.get_connection = get_connection


def seconds_left(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlineExceeded("the reconcile deadline has passed")
    return remaining


async def off_loop(deadline: float, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call in a worker thread, giving up (not the thread) when the deadline passes."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(call, *args, **kwargs), seconds_left(deadline))
    except TimeoutError:
        name = getattr(call, "__qualname__", repr(call))
        raise DeadlineExceeded(f"{name} did not finish before the reconcile deadline") from None


def instance_filter(instance: str) -> dict[str, list[str]]:
    return {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={instance}"]}
