"""The contract between the controller runtime and the reconcilers it drives.

Modelled on controller-runtime's `Reconcile(request) -> result`: a reconciler is handed the desired Site,
reads the actual world itself, converges it, and says what it did. The runtime never learns how.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from specs.models import ServiceStatus, Site

StepResult = Literal["created", "updated", "unchanged", "deleted", "failed", "skipped"]

FINALIZER = "director.io/cleanup"


@dataclass(frozen=True, order=True)
class Request:
    kind: str
    name: str


@dataclass(frozen=True)
class Step:
    """One thing a reconciler found and did, recorded as one reconcile event."""

    step: str
    result: StepResult
    message: str = ""


@dataclass
class Outcome:
    steps: list[Step] = field(default_factory=list)
    # True when this concern is served as the spec asks, judged from what is running, not what was sent.
    ready: bool = True
    message: str = ""
    # Ask to be called again (tasks still starting, an update rolling) without it counting as a failure.
    requeue_after: float | None = None
    service: ServiceStatus | None = None


@dataclass(frozen=True)
class ReconcileContext:
    reconcile_id: str
    trigger: str
    # Monotonic deadline (time.monotonic()) for the whole reconcile; a reconciler's own waits stop there.
    deadline: float


class PermanentError(Exception):
    """A problem only a change of the spec can fix: the site is Stalled and not retried until then."""


class Reconciler(Protocol):
    """One concern (service, routes, files...) for every site."""

    name: str

    async def observe(self) -> None:
        """Refresh this concern's picture of the world in bulk (a few list calls, not one per site)."""

    async def reconcile(self, site: Site, ctx: ReconcileContext) -> Outcome:
        """Converge this concern for one site. Raise PermanentError for what only a spec change fixes."""

    async def finalize(self, name: str, ctx: ReconcileContext) -> Outcome:
        """Remove what this concern made for a site that is being deleted or no longer exists."""

    def owned_names(self) -> set[str]:
        """Sites this concern found something of at the last observe: the controller finalizes orphans."""


Enqueue = Callable[[Request, str], None]


class Trigger(Protocol):
    """A source of wake-ups (record watch, Docker events, a timer). It only wakes; it never decides."""

    name: str

    def run(self, enqueue: Enqueue) -> Awaitable[None]:
        """Run until cancelled, calling enqueue(request, trigger_description) for every site to look at."""


PLATFORM = Request("Platform", "edge")


class PlatformReconciler(Protocol):
    """What every site stands on (the network, the edge): reconciled under the key PLATFORM, before sites."""

    name: str

    async def reconcile_platform(self, ctx: ReconcileContext) -> Outcome:
        """Create what is missing and repair what drifted; say what was done."""
