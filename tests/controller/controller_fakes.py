"""In-process reconcilers that record what the runtime asks of them.

They stand in for Docker and Nginx only in the tests of the runtime's own logic (queue, status, events,
finalizers, deadlines); the real reconcilers are exercised by tests/controller/test_e2e_swarm.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from controller.kinds import Kind
from controller.types import Outcome, PermanentError, ReconcileContext, Step
from specs.config import Settings
from specs.models import ServiceStatus, Site
from specs.platform import Platform, PlatformMeta
from store.records import PlatformStore, SiteStore

Behaviour = Callable[[Site, int], Awaitable[Outcome]]


@dataclass
class Journal:
    """Every call any recording reconciler received, in order: (reconciler, action, site name)."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    # Also appended here, one call a line, when the reconcilers run in another process.
    path: Path | None = None

    def add(self, reconciler: str, action: str, site: str) -> None:
        self.calls.append((reconciler, action, site))
        if self.path is not None:
            with self.path.open("a") as lines:
                lines.write(f"{reconciler} {action} {site}\n")

    def of(self, action: str, site: str) -> list[str]:
        return [r for r, a, s in self.calls if a == action and s == site]

    def count(self, reconciler: str, action: str, site: str) -> int:
        return sum(1 for call in self.calls if call == (reconciler, action, site))


async def converged(site: Site, attempt: int) -> Outcome:
    return Outcome(steps=[Step("apply", "created" if attempt == 1 else "unchanged")])


class RecordingReconciler:
    """Remembers what it made per site (owned_names) and behaves per site as the test says."""

    def __init__(self, name: str, journal: Journal, after: tuple[str, ...] = ()) -> None:
        self.name = name
        self.after = after
        self.journal = journal
        self.owned: set[str] = set()
        self.behaviours: dict[str, Behaviour] = {}
        self.default: Behaviour = converged
        self.attempts: dict[str, int] = {}
        self.finalize_failures: dict[str, int] = {}
        self.observed = 0

    async def observe(self) -> None:
        self.observed += 1
        self.journal.add(self.name, "observe", "")

    async def reconcile(self, site: Site, ctx: ReconcileContext) -> Outcome:
        attempt = self.attempts.get(site.name, 0) + 1
        self.attempts[site.name] = attempt
        self.journal.add(self.name, "reconcile", site.name)
        behaviour = self.behaviours.get(site.name, self.default)
        self.owned.add(site.name)
        return await behaviour(site, attempt)

    async def finalize(self, name: str, ctx: ReconcileContext) -> Outcome:
        self.journal.add(self.name, "finalize", name)
        if self.finalize_failures.get(name, 0) > 0:
            self.finalize_failures[name] -= 1
            raise RuntimeError(f"{self.name} could not remove {name}")
        if name not in self.owned:
            return Outcome(steps=[Step("remove", "unchanged")])
        self.owned.discard(name)
        return Outcome(steps=[Step("remove", "deleted", f"removed {name}")])

    def owned_names(self) -> set[str]:
        return set(self.owned)


def failing(times: int, message: str = "docker said no") -> Behaviour:
    async def behaviour(site: Site, attempt: int) -> Outcome:
        if attempt <= times:
            raise RuntimeError(message)
        return Outcome(steps=[Step("apply", "created")])

    return behaviour


def permanent(message: str) -> Behaviour:
    async def behaviour(site: Site, attempt: int) -> Outcome:
        raise PermanentError(message)

    return behaviour


def hanging_first(seconds: float) -> Behaviour:
    async def behaviour(site: Site, attempt: int) -> Outcome:
        if attempt == 1:
            await asyncio.sleep(seconds)
        return Outcome(steps=[Step("apply", "updated")])

    return behaviour


def starting(polls: int, requeue_after: float) -> Behaviour:
    """Tasks still starting for `polls` reconciles, then running."""

    async def behaviour(site: Site, attempt: int) -> Outcome:
        if attempt <= polls:
            return Outcome(
                steps=[Step("apply", "created" if attempt == 1 else "unchanged")],
                ready=False,
                message="0/1 tasks running",
                requeue_after=requeue_after,
                status=ServiceStatus(running_tasks=0, desired_tasks=1),
            )
        return Outcome(
            steps=[Step("apply", "unchanged")], status=ServiceStatus(running_tasks=1, desired_tasks=1)
        )

    return behaviour


class RecordingPlatform:
    """The platform's reconciler, recording that it ran."""

    name = "platform"
    after: tuple[str, ...] = ()

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.calls = 0

    async def observe(self) -> None:
        pass

    async def reconcile(self, record: Platform, ctx: ReconcileContext) -> Outcome:
        self.calls += 1
        self.journal.add(self.name, "platform", "")
        return Outcome(steps=[Step("network", "created" if self.calls == 1 else "unchanged")])

    async def finalize(self, name: str, ctx: ReconcileContext) -> Outcome:
        return Outcome(steps=[Step("network", "skipped")])

    def owned_names(self) -> set[str]:
        return set()


def site_and_platform(
    settings: Settings, sites: SiteStore, reconcilers: list[RecordingReconciler], platform: RecordingPlatform
) -> list[Kind]:
    """The two kinds the controller runs, with recording reconcilers: the platform first, then sites."""
    platforms = PlatformStore(settings.state_dir)
    if not platforms.list()[0]:
        platforms.create(Platform(metadata=PlatformMeta(name="edge")))
    return [
        Kind(records=platforms, reconcilers=[platform], first=True),
        Kind(
            records=sites,
            reconcilers=reconcilers,
            describe=lambda site: {"urls": settings.site_urls(site.name, list(site.spec.domains))},
        ),
    ]
