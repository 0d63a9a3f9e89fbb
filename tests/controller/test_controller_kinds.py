"""A kind the runtime has never heard of, registered by this test alone: reconciled, retried, stalled and
finalized by the same runtime, with nothing in controller/ written for it. And a stalled site stays stalled
across a controller restart until its generation changes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

from controller_fakes import Journal, RecordingPlatform, RecordingReconciler, permanent, site_and_platform
from pydantic import Field

from controller.backoff import Backoff
from controller.kinds import Kind
from controller.runtime import Controller, ControllerOptions
from controller.types import Outcome, PermanentError, ReconcileContext, Step
from specs.config import Settings
from specs.models import Condition, LastReconcile, Model, ObjectMeta, Resource, Site
from store.events import EventLog
from store.records import NotFound, RecordKind, RecordStore, SiteStore


class WidgetSpec(Model):
    size: int = 1


class Polish(Model):
    """The polisher's part of a widget's status."""

    shine: int = 0


class WidgetStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    polisher: Polish | None = None
    last_reconcile: LastReconcile | None = None


class Widget(Resource):
    kind: Literal["Widget"] = "Widget"
    metadata: ObjectMeta
    spec: WidgetSpec = Field(default_factory=WidgetSpec)
    status: WidgetStatus | None = None


WIDGETS = RecordKind(Widget, WidgetStatus, "widgets")


class Polisher:
    """A reconciler of widgets: fails twice for `flaky`, refuses a size of 0 for good, polishes the rest."""

    name = "polisher"
    after: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.made: set[str] = set()

    async def observe(self) -> None:
        self.calls.append(("observe", ""))

    async def reconcile(self, widget: Widget, ctx: ReconcileContext) -> Outcome:
        self.calls.append(("reconcile", widget.name))
        if widget.spec.size == 0:
            raise PermanentError("a widget of size 0 cannot be polished")
        if widget.name == "flaky" and self.calls.count(("reconcile", "flaky")) <= 2:
            raise RuntimeError("the polish ran out")
        self.made.add(widget.name)
        return Outcome(steps=[Step("polish", "updated")], status=Polish(shine=widget.spec.size * 10))

    async def finalize(self, name: str, ctx: ReconcileContext) -> Outcome:
        self.calls.append(("finalize", name))
        self.made.discard(name)
        return Outcome(steps=[Step("polish", "deleted")])

    def owned_names(self) -> set[str]:
        return set(self.made)


def _options() -> ControllerOptions:
    return ControllerOptions(
        workers=2,
        step_timeout=2.0,
        resync_seconds=3600.0,
        shutdown_grace=2.0,
        backoff=Backoff(base=0.05, cap=0.5, jitter=0.0),
    )


@contextlib.asynccontextmanager
async def running(controller: Controller) -> AsyncIterator[None]:
    task = asyncio.create_task(controller.run())
    try:
        yield
    finally:
        controller.stop()
        async with asyncio.timeout(10):
            await task


async def eventually(check: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(NotFound):
            if check():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def _condition(store: RecordStore[Widget], name: str, type_: str) -> str | None:
    status = store.get(name).status
    found = next((c for c in status.conditions if c.type == type_), None) if status else None
    return found.status if found else None


async def test_a_kind_registered_by_a_test_is_reconciled_retried_stalled_and_finalized(tmp_path):
    widgets: RecordStore[Widget] = RecordStore(tmp_path, WIDGETS)
    polisher = Polisher()
    events = EventLog(tmp_path / "events.db")
    controller = Controller(
        kinds=[Kind(records=widgets, reconcilers=[polisher])],
        events=events,
        state_dir=tmp_path,
        options=_options(),
    )
    async with running(controller):
        widgets.create(Widget(metadata=ObjectMeta(name="shiny"), spec=WidgetSpec(size=3)))
        widgets.create(Widget(metadata=ObjectMeta(name="flaky")))
        widgets.create(Widget(metadata=ObjectMeta(name="broken"), spec=WidgetSpec(size=0)))
        await eventually(lambda: _condition(widgets, "shiny", "Ready") == "True", "shiny Ready")
        await eventually(lambda: _condition(widgets, "flaky", "Ready") == "True", "flaky Ready after retries")
        await eventually(lambda: _condition(widgets, "broken", "Stalled") == "True", "broken Stalled")
        shiny = widgets.get("shiny")
        assert shiny.status is not None and shiny.status.polisher == Polish(shine=30)
        assert polisher.calls.count(("reconcile", "flaky")) == 3

        widgets.delete("shiny")
        await eventually(lambda: ("finalize", "shiny") in polisher.calls, "shiny finalized")
        await eventually(lambda: "shiny" not in {w.name for w in widgets.list()[0]}, "shiny's record removed")
        broken = widgets.get("broken")
        broken.spec.size = 2
        widgets.update(broken)
        await eventually(lambda: _condition(widgets, "broken", "Ready") == "True", "broken Ready once mended")
    assert [e.step for e in events.query("flaky") if e.result == "failed"] == ["polisher.reconcile"]
    events.close()


async def test_a_stalled_site_stays_stalled_across_a_restart_until_its_generation_changes(tmp_path):
    settings = Settings(state_dir=tmp_path / "state")
    sites = SiteStore(settings.state_dir)
    events = EventLog(settings.events_db)
    journal = Journal()
    files, service = RecordingReconciler("files", journal), RecordingReconciler("service", journal)
    service.behaviours["stuck"] = permanent("image does not exist")

    def controller() -> Controller:
        kinds = site_and_platform(settings, sites, [files, service], RecordingPlatform(journal))
        # One worker: the queue is first in, first out, so once "zzz" (queued after "stuck") is
        # reconciled, "stuck" has been looked at.
        options = ControllerOptions(**{**_options().__dict__, "workers": 1})
        return Controller(kinds=kinds, events=events, state_dir=settings.state_dir, options=options)

    def stalled() -> bool:
        status = sites.get("stuck").status
        found = status.condition("Stalled") if status is not None else None
        return found is not None and found.status == "True"

    sites.create(Site(metadata=ObjectMeta(name="stuck")))
    sites.create(Site(metadata=ObjectMeta(name="zzz")))
    async with running(controller()):
        await eventually(stalled, "stuck Stalled")
        await eventually(lambda: journal.count("files", "reconcile", "zzz") == 1, "zzz reconciled")
    assert journal.count("service", "reconcile", "stuck") == 1

    # A new controller (a restart) resyncs every site at start: the stalled one is not tried again.
    async with running(controller()):
        await eventually(lambda: journal.count("files", "reconcile", "zzz") == 2, "the restart's resync")
        assert journal.count("service", "reconcile", "stuck") == 1
        assert stalled()
        stuck = sites.get("stuck")
        stuck.spec.replicas = 2
        sites.update(stuck)
        await eventually(
            lambda: journal.count("service", "reconcile", "stuck") == 2, "the new generation tried"
        )
    events.close()
