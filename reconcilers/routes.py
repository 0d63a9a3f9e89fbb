"""The edge's routes: every site's host names mapped to how it is served, validated before Nginx loads them.

From a site's spec to the edge, in order:
1. What the spec asks (route_plan.wish_for), with the record store's word on who holds each custom domain it
   names (`host_holders`: the first to claim a domain keeps it).
2. A plan of that one change against the current table (route_plan.plan). When it changes nothing at the
   edge the reconcile is done at once: a resync of converged sites costs no I/O and no wait.
3. Otherwise the change joins a batch (controller.batcher): changes arriving together, or while the
   previous batch is being installed, are planned together. The plan decides who gets each host, from the
   data; it refuses a change that asks for a host another site keeps, and says which sites to wake.
4. The edge (reconcilers.edge) writes the shards the plan touches as a new generation, validates it with
   `nginx -t`, puts it in place and reloads. A change Nginx refuses is found (by the lines Nginx names, or
   else by halving the batch) and left out: that site keeps its last good route, the others go ahead.
5. The outcome is ready only once the edge answers the new generation's revision (for a moment after a
   reload Nginx's old workers still answer with the old routes). A site denied a custom domain is served on
   its other hosts and is not Ready; it is woken (this reconciler is also a trigger) the moment the domain
   is free, and a site that loses a domain at the edge is woken too, so neither waits for a resync.

A site with the default upload limit costs two map entries (host -> site, site -> route) feeding one shared
server; only a site with its own limit gets a small server block, because client_max_body_size takes no
variable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import docker

from controller.batcher import Batcher
from controller.types import Enqueue, Outcome, PermanentError, ReconcileContext, Request, Step
from reconcilers import nginx_config
from reconcilers.docker_calls import DeadlineExceeded, off_loop, seconds_left
from reconcilers.edge import Candidate, EdgeRoutes
from reconcilers.route_plan import (
    Plan,
    RouteKind,
    RouteTable,
    RouteWish,
    SiteRoute,
    decide_hosts,
    plan,
    route_for,
    wish_for,
)
from specs.config import Settings
from specs.models import KIND_SITE, Site

__all__ = ["RouteKind", "SiteRoute", "SiteRoutes", "desired_route"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Long enough for the reconciles of a burst to join one batch; changes arriving while a batch is being
# installed wait for the next one anyway.
DEBOUNCE_SECONDS = 0.01
NGINX_TEST_TIMEOUT_SECONDS = 60.0
# How long one confirmation waits for the edge to answer a new revision, and when an unconfirmed site is
# looked at again.
CONFIRM_SECONDS = 5.0
CONFIRM_RETRY_SECONDS = 1.0
DENIED_SUFFIX = ": it is served on its other hosts, and gets a domain the moment its holder lets go of it"

HostHolders = Callable[[str], Mapping[str, str]]


def _no_claims(_name: str) -> Mapping[str, str]:
    return {}


def desired_route(
    site: Site, settings: Settings, holders: Mapping[str, str] | None = None
) -> tuple[SiteRoute | None, dict[str, str]]:
    """The site's route on its own (None when it must not be routed: disabled, its hosts answer 404), and the
    custom domains it names but may not have, each with the reason. A domain `holders` says nothing about
    counts as the site's own here; against a table, route_plan.plan decides it."""
    wish = wish_for(site, settings.sites_domain)
    if wish is None:
        return None, {}
    decision = decide_hosts(wish, holders or {}, settings.sites_domain)
    return route_for(wish, [*decision.held, *decision.unclaimed], decision.held), dict(decision.denied)


@dataclass(frozen=True)
class _Change:
    wish: RouteWish | None
    holders: Mapping[str, str]


@dataclass(frozen=True)
class _Result:
    """What a batch did with one site's change."""

    refused: str | None = None
    route: SiteRoute | None = None
    changed: bool = False
    denied: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Prepared:
    """A batch planned without the changes Nginx refuses, and its generation staged (if the edge changes)."""

    plan: Plan
    refused_by_nginx: Mapping[str, str]
    candidate: Candidate | None


class SiteRoutes:
    """Reconciler for the edge's routes: a thin path from a site's wish through the plan to the edge."""

    name = "routes"
    # A static site is served from the directory the files reconciler makes.
    after: tuple[str, ...] = ("files",)

    def __init__(
        self,
        settings: Settings,
        client: docker.DockerClient,
        templates_dir: Path = nginx_config.TEMPLATES_DIR,
        debounce_seconds: float = DEBOUNCE_SECONDS,
        host_holders: HostHolders = _no_claims,
    ) -> None:
        self._settings = settings
        self._client = client
        self._host_holders = host_holders
        self._edge = EdgeRoutes(settings, client, templates_dir)
        self._batcher: Batcher[str, _Change, _Result] = Batcher(self._flush, debounce_seconds)
        self._enqueue: Enqueue | None = None
        self._table: RouteTable | None = None
        # The revision of the live routes, and the last one the edge was seen answering since its last reload.
        self._revision = ""
        self._served_revision: str | None = None
        # Installs of new revisions so far; the install that brought each site's current route (a site not
        # named has had its route since the install that wrote them all); the newest install the edge was seen
        # answering. A site whose route was answered needs no newer revision answered to be served: in a burst
        # the revision changes with every batch, and waiting for the newest one held every site's poll.
        self._installs = 0
        self._route_installs: dict[str, int] = {}
        self._all_routes_install = 0
        self._served_install = 0
        # The last reload, and the revision it installed: its old workers must stop before that one counts.
        self._last_reload: tuple[str, nginx_config.EdgeReload] | None = None
        self._confirming: dict[str, asyncio.Task[bool]] = {}
        # Nginx's refusal of a change, remembered so that an unchanged bad spec is not validated again.
        self._refused: dict[str, tuple[RouteWish | None, str]] = {}
        # The edge's files are written by one batch, load or repair at a time.
        self._edge_lock = asyncio.Lock()
        self._loading: asyncio.Task[RouteTable] | None = None

    # ---- the reconciler contract --------------------------------------------------------------------------

    async def observe(self) -> None:
        """Load the last good routes, and put the live files back if they are not what those routes make."""
        deadline = time.monotonic() + NGINX_TEST_TIMEOUT_SECONDS
        await self._loaded(deadline)
        await self._repaired(deadline)

    def owned_names(self) -> set[str]:
        return set(self._table.routes if self._table else ())

    async def run(self, enqueue: Enqueue) -> None:
        """As a trigger: wake sites whose domains were freed or taken, until cancelled."""
        self._enqueue = enqueue
        try:
            await asyncio.Event().wait()
        finally:
            self._enqueue = None

    async def reconcile(self, site: Site, ctx: ReconcileContext) -> Outcome:
        await self._loaded(ctx.deadline)
        holders: Mapping[str, str] = {}
        if site.spec.domains and self._host_holders is not _no_claims:
            holders = await off_loop(ctx.deadline, self._host_holders, site.name)
        wish = wish_for(site, self._settings.sites_domain)
        result = await self._change(site.name, wish, holders, ctx)
        if result.refused is not None:
            raise PermanentError(result.refused)
        if not result.changed:
            route = result.route
            message = f"{site.name} is routed as {route.kind}" if route else f"{site.name} is not routed"
            step = Step("routes", "unchanged", message)
        elif result.route is None:
            step = Step("routes", "deleted", f"{site.name} is disabled: its hosts answer 404")
        else:
            hosts = ", ".join(result.route.hosts)
            step = Step("routes", "updated", f"validated and reloaded: {hosts} -> {result.route.kind}")
        outcome = await self._once_served(site.name, step, ctx)
        if result.denied:
            outcome.ready = False
            outcome.message = "; ".join(result.denied.values()) + DENIED_SUFFIX
        return outcome

    async def finalize(self, name: str, ctx: ReconcileContext) -> Outcome:
        await self._loaded(ctx.deadline)
        self._refused.pop(name, None)
        result = await self._change(name, None, {}, ctx)
        if result.refused is not None:
            raise RuntimeError(f"removing the routes of {name} failed: {result.refused}")
        if not result.changed:
            return Outcome(steps=[Step("routes", "unchanged", f"{name} has no routes")])
        message = f"removed the routes of {name}: its hosts answer 404"
        return await self._once_served(name, Step("routes", "deleted", message), ctx)

    # ---- one change: planned on its own first, batched only when the edge must change ----------------------

    async def _change(
        self, name: str, wish: RouteWish | None, holders: Mapping[str, str], ctx: ReconcileContext
    ) -> _Result:
        table = self._table
        assert table is not None
        alone = plan(table, {name: wish}, holders, self._settings.sites_domain)
        # A change of this site still waiting in a batch must be overridden by this one, not left to land.
        if not alone.routes and not self._batcher.holds(name):
            self._table = table.updated(alone)
            self._wake(alone.wake)
            if name in alone.refused:
                return _Result(refused=alone.refused[name])
            self._refused.pop(name, None)
            return _Result(route=table.routes.get(name), denied=alone.denied.get(name, {}))
        refused = self._refused.get(name)
        if refused is not None and refused[0] == wish:
            return _Result(refused=refused[1])
        try:
            return await self._batcher.submit(name, _Change(wish, holders), seconds_left(ctx.deadline))
        except TimeoutError:
            raise DeadlineExceeded(f"the routes of {name} were not validated before the deadline") from None

    async def _flush(self, batch: dict[str, _Change]) -> dict[str, _Result]:
        """Plan a batch, stage and validate it, install it and reload the edge; each site's result."""
        holders: dict[str, str] = {}
        # In the order submitted: the newest word of the store on a domain wins.
        for change in batch.values():
            holders.update(change.holders)
        changes = {name: change.wish for name, change in batch.items()}
        started = time.monotonic()
        deadline = started + NGINX_TEST_TIMEOUT_SECONDS
        async with self._edge_lock:
            locked = time.monotonic()
            table = self._table
            assert table is not None
            prepared = await asyncio.to_thread(self._prepare, table, changes, holders, deadline)
            the_plan = prepared.plan
            staged = settled = time.monotonic()
            if prepared.candidate is not None:
                # The edge must have loaded the previous batch (or given up) before this one replaces it.
                await self._settled()
                settled = time.monotonic()
                await asyncio.to_thread(self._edge.install, prepared.candidate)
            # Onto the table as it is now: other sites' waits may have changed meanwhile, never a route.
            self._table = (self._table or table).updated(the_plan)
            if prepared.candidate is not None:
                self._installed(self._edge.revision, the_plan.routes)
                await self._reload(self._edge.revision)
                await asyncio.to_thread(self._edge.collect)
                log.debug(
                    "routes revision %s: %d change(s) of %d routes; waited %.3fs for the edge lock, "
                    "planned and validated in %.3fs, waited %.3fs for the previous revision, installed and "
                    "reloaded in %.3fs",
                    self._edge.revision,
                    len(the_plan.routes),
                    len(self._table.routes),
                    locked - started,
                    staged - locked,
                    settled - staged,
                    time.monotonic() - settled,
                )
            self._wake(the_plan.wake)
            for name, why in prepared.refused_by_nginx.items():
                self._refused[name] = (changes[name], why)
        results: dict[str, _Result] = {}
        routes = self._table.routes
        for name in batch:
            refusal = prepared.refused_by_nginx.get(name) or the_plan.refused.get(name)
            if refusal is not None:
                results[name] = _Result(refused=refusal)
                continue
            self._refused.pop(name, None)
            results[name] = _Result(
                route=routes.get(name),
                changed=name in the_plan.routes,
                denied=the_plan.denied.get(name, {}),
            )
        return results

    # Everything from here to the confirmation runs in a worker thread, under the edge lock.

    def _prepare(
        self,
        table: RouteTable,
        changes: Mapping[str, RouteWish | None],
        holders: Mapping[str, str],
        deadline: float,
    ) -> _Prepared:
        """The plan of `changes` without those Nginx refuses, and its generation staged and validated."""
        refused: dict[str, str] = {}
        while True:
            kept = {name: wish for name, wish in changes.items() if name not in refused}
            the_plan = plan(table, kept, holders, self._settings.sites_domain)
            if not the_plan.routes:
                return _Prepared(the_plan, refused, None)
            try:
                candidate = self._edge.stage(the_plan.routes, deadline)
            except nginx_config.NginxRejected as rejected:
                name, why = self._refused_change(table, kept, holders, the_plan.routes, rejected, deadline)
                refused[name] = why
                continue
            return _Prepared(the_plan, refused, candidate)

    def _refused_change(
        self,
        table: RouteTable,
        changes: Mapping[str, RouteWish | None],
        holders: Mapping[str, str],
        routes: Mapping[str, SiteRoute | None],
        rejected: nginx_config.NginxRejected,
        deadline: float,
    ) -> tuple[str, str]:
        """One change Nginx refuses, with its message: the one whose lines Nginx named, or else the last
        of the shortest run of changes (by name) that Nginx refuses on top of the live routes."""
        culprit = self._edge.culprit(rejected, routes)
        if culprit is not None and culprit in changes:
            return culprit, f"the routes of {culprit} were refused by {rejected}"
        names = sorted(changes)

        def refusal(count: int) -> nginx_config.NginxRejected | None:
            first = plan(
                table, {name: changes[name] for name in names[:count]}, holders, self._settings.sites_domain
            )
            try:
                candidate = self._edge.stage(first.routes, deadline)
            except nginx_config.NginxRejected as refused:
                return refused
            self._edge.discard(candidate)
            return None

        as_live = refusal(0)
        if as_live is not None:
            raise RuntimeError(f"Nginx refuses the edge's live routes even without any change: {as_live}")
        passes, fails = 0, len(names)
        while fails - passes > 1:
            middle = (passes + fails) // 2
            refused = refusal(middle)
            if refused is None:
                passes = middle
            else:
                fails, rejected = middle, refused
        culprit = names[fails - 1]
        return culprit, f"the routes of {culprit} were refused by {rejected}"

    def _load(self, deadline: float) -> tuple[RouteTable, nginx_config.EdgeReload | None]:
        table, _ = RouteTable.of(self._edge.load(), self._settings.sites_domain)
        self._edge.adopt(table.routes.values())
        repaired = self._repair(deadline)
        return table, repaired[1] if repaired is not None else None

    def _repair(self, deadline: float) -> tuple[str, nginx_config.EdgeReload] | None:
        """Put the live files back as the routes make them, if they are not (edited by hand, or written by
        an earlier version); what was wrong and the reload sent, if one was."""
        problem = self._edge.live_problem()
        if problem is None:
            return None
        candidate = self._edge.stage_all(deadline)
        self._edge.install(candidate)
        reload = self._edge.reload()
        self._edge.collect()
        return problem, reload

    # ---- loading and edge work, shielded from the deadlines of the reconciles that wait on them ----------

    async def _loaded(self, deadline: float) -> RouteTable:
        if self._table is not None:
            return self._table
        if self._loading is None:
            self._loading = asyncio.create_task(self._load_once())
        try:
            return await asyncio.wait_for(asyncio.shield(self._loading), seconds_left(deadline))
        except TimeoutError:
            raise DeadlineExceeded("the last good routes were not loaded before the deadline") from None

    async def _load_once(self) -> RouteTable:
        try:
            async with self._edge_lock:
                table, reload = await asyncio.to_thread(
                    self._load, time.monotonic() + NGINX_TEST_TIMEOUT_SECONDS
                )
                self._table = table
                self._installed(self._edge.revision)
                if reload is not None:
                    self._last_reload = (self._revision, reload)
            return table
        finally:
            self._loading = None

    async def repair(self, deadline: float) -> Step | None:
        """Put the edge's route files back as the records' routes make them when they are not (removed or
        edited by hand): the step saying what was wrong and what was done, None when they were intact. The
        platform's reconcile calls this, so that the repair is an event of the edge."""
        await self._loaded(deadline)
        problem = await self._repaired(deadline)
        if problem is None:
            return None
        count = len(self._table.routes) if self._table is not None else 0
        message = f"{problem}: rebuilt the routes of {count} site(s) from the records, validated and reloaded"
        log.warning("the edge's routes: %s", message)
        return Step("edge-routes", "updated", message)

    async def _repaired(self, deadline: float) -> str | None:
        async def locked() -> tuple[str, nginx_config.EdgeReload] | None:
            async with self._edge_lock:
                return await asyncio.to_thread(self._repair, deadline)

        work = asyncio.create_task(locked())
        try:
            repaired = await asyncio.wait_for(asyncio.shield(work), seconds_left(deadline))
        except TimeoutError:
            raise DeadlineExceeded("the edge's routes were not repaired before the deadline") from None
        if repaired is None:
            return None
        problem, reload = repaired
        self._installed(self._edge.revision)
        self._last_reload = (self._revision, reload)
        return problem

    # ---- the edge serving what was installed ---------------------------------------------------------------

    def _installed(self, revision: str, routes: Iterable[str] | None = None) -> None:
        """`revision` is live now, the routes of `routes` new in it (None: all of them were written)."""
        if revision != self._revision:
            self._revision, self._served_revision = revision, None
            self._installs += 1
        if routes is None:
            self._route_installs.clear()
            self._all_routes_install = self._installs
        else:
            for name in routes:
                self._route_installs[name] = self._installs

    async def _reload(self, revision: str, *, confirm: bool = True) -> None:
        try:
            reload = await asyncio.to_thread(self._edge.reload)
        except Exception as error:
            # Installed all the same: the confirmation sends the reload again if the edge does not answer.
            log.warning("reloading the edge for routes revision %s failed: %s", revision, error)
            return
        self._last_reload = (revision, reload)
        if confirm:
            # Started now, so that the next batch's install waits for the edge to load this one.
            self._confirmation(revision)

    async def _settled(self) -> None:
        confirming = self._confirming.get(self._revision)
        if confirming is not None:
            await asyncio.wait({confirming})

    def _confirmation(self, revision: str) -> asyncio.Task[bool]:
        confirming = self._confirming.get(revision)
        if confirming is None:
            install = self._installs if revision == self._revision else 0
            confirming = asyncio.create_task(self._confirm(revision, install))
            self._confirming[revision] = confirming
        return confirming

    async def _once_served(self, name: str, step: Step, ctx: ReconcileContext) -> Outcome:
        """The outcome of `step`: ready only once the edge answers a revision with the site's current route
        (the current revision, unless the edge answered one since the route was installed)."""
        if self._served_install >= self._route_installs.get(name, self._all_routes_install):
            return Outcome(steps=[step])
        while True:
            revision = self._revision
            if await self._served(revision, ctx.deadline):
                return Outcome(steps=[step])
            # Newer routes (which keep this site's) were installed meanwhile: it is those that must be served.
            if revision == self._revision:
                break
        return Outcome(
            steps=[step],
            ready=False,
            message=f"the edge has not loaded routes revision {revision} yet",
            requeue_after=CONFIRM_RETRY_SECONDS,
        )

    async def _served(self, revision: str, deadline: float) -> bool:
        """Whether the edge answers `revision`, asked once for all the reconciles waiting on it."""
        if revision == self._served_revision:
            return True
        confirming = self._confirmation(revision)
        # Shielded: a reconcile giving up at its deadline must not cancel what the others wait on.
        try:
            return await asyncio.wait_for(asyncio.shield(confirming), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return False

    async def _confirm(self, revision: str, install: int) -> bool:
        reload = self._last_reload[1] if self._last_reload and self._last_reload[0] == revision else None
        try:
            try:
                served = await asyncio.to_thread(
                    nginx_config.wait_until_served,
                    self._settings,
                    "routes",
                    revision,
                    CONFIRM_SECONDS,
                    self._client,
                    reload,
                )
            except Exception as error:
                # Asking Docker about the old workers failed (dockerd restarting): not confirmed yet. Every
                # reconcile waiting here comes back; nobody may be left with an exception to retrieve.
                log.warning("confirming routes revision %s failed: %s", revision, error)
                served = False
            if not served and reload is None and revision == self._revision:
                # Never reloaded for these routes by this process (its reload failed, or they were live when
                # it started and the edge lost them): the next confirmation waits for this reload.
                await self._reload(revision, confirm=False)
        finally:
            del self._confirming[revision]
        log.debug("routes revision %s: %s", revision, "served" if served else "not served yet")
        if served and revision == self._revision:
            self._served_revision = revision
        if served:
            self._served_install = max(self._served_install, install)
        return served

    def _wake(self, names: Mapping[str, str]) -> None:
        if self._enqueue is None:
            return
        for name in sorted(names):
            self._enqueue(Request(KIND_SITE, name), f"routes: {names[name]}")
