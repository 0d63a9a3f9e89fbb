"""The Docker client the reconcilers share, and the bridge keeping its blocking calls off the event loop."""

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
SWARM_SERVICE_NAME_LABEL = "com.docker.swarm.service.name"


class DeadlineExceeded(TimeoutError):
    """The reconcile's deadline passed while a Docker or Nginx call was still running."""


def make_client() -> docker.DockerClient:
    # Service create/update answer in milliseconds; a call still running after 60 s is a hung daemon.
    return docker.from_env(timeout=60)


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
