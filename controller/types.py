"""The contract between the controller runtime and the reconcilers it drives.

Modelled on controller-runtime's `Reconcile(request) -> result`: each of a kind's reconcilers is handed one
record, reads the actual world itself, converges it, and says what it did in an Outcome. The runtime turns
a pass's outcomes into one Result for the work queue and into the record's status; it never learns how a
reconciler works, nor what kind of world (Swarm, Nginx, files) it works on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from specs.models import Model, Resource

StepResult = Literal["created", "updated", "unchanged", "deleted", "failed", "skipped"]

FINALIZER = "director.io/cleanup"

R_contra = TypeVar("R_contra", bound=Resource, contravariant=True)


@dataclass(frozen=True, order=True, slots=True)
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
    # Come back after this long as a matter of routine (a source's poll interval): unlike requeue_after,
    # nothing is converging, so the record is not shown as Reconciling meanwhile.
    recheck_after: float | None = None
    # One CamelCase word for the Ready condition's reason (FetchFailed, DocumentsRefused...), when the
    # runtime's own words (Ready, NotReady) would say less.
    reason: str | None = None
    # This reconciler's part of the record's status, kept under its own name (status.<reconciler name>);
    # None leaves the part written last in place.
    status: Model | None = None
    # What the reconcilers after this one in the same pass may read (ReconcileContext.given).
    provides: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ReconcileContext:
    reconcile_id: str
    trigger: str
    # Monotonic deadline (time.monotonic()) for the whole reconcile; a reconciler's own waits stop there.
    deadline: float
    # What the reconcilers declared in `after` provided in this pass, by reconciler name.
    given: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def needs(self, reconciler: str, key: str) -> object:
        """A value an earlier reconciler of the pass provided; the runtime runs that one first."""
        try:
            return self.given[reconciler][key]
        except KeyError:
            raise RuntimeError(
                f"{reconciler} provided no {key!r} in this pass (is it declared in `after`?)"
            ) from None


class PermanentError(Exception):
    """A problem only a change of the spec can fix: the record is Stalled and not retried until then."""


class Reconciler(Protocol[R_contra]):
    """One concern (files, service, routes, the edge...) for every record of a kind."""

    name: str
    # The reconcilers of the same kind whose outcome this one needs: they run before it in every pass, and
    # what they provide is in ctx.given.
    after: tuple[str, ...]

    async def observe(self) -> None:
        """Refresh this concern's picture of the world in bulk (a few list calls, not one per record)."""

    async def reconcile(self, record: R_contra, ctx: ReconcileContext) -> Outcome:
        """Converge this concern for one record. Raise PermanentError for what only a spec change fixes."""

    async def finalize(self, name: str, ctx: ReconcileContext) -> Outcome:
        """Remove what this concern made for a record that is being deleted or no longer exists."""

    def owned_names(self) -> set[str]:
        """Records this concern found something of at the last observe: the controller finalizes orphans."""


Enqueue = Callable[[Request, str], None]


class Trigger(Protocol):
    """A source of wake-ups (record watch, Docker events, a timer). It only wakes; it never decides."""

    name: str

    def run(self, enqueue: Enqueue) -> Awaitable[None]:
        """Run until cancelled, calling enqueue(request, trigger_description) for every record to look at."""
