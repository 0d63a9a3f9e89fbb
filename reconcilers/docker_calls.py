"""The one Docker client factory, the labels Director puts on what it creates, and the bridge keeping the
client's blocking calls off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import docker

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


def make_client(timeout: float = CALL_TIMEOUT_SECONDS, connections: int = CONNECTIONS) -> docker.DockerClient:
    """The Docker client of one process: made once by the composition root and handed to whatever talks to
    Docker (the Swarm cache, the reconcilers, the events trigger, the logs backend)."""
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}; it bounds every Docker call, in seconds")
    return docker.from_env(timeout=timeout, max_pool_size=connections)


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
