"""The edge's routes: every site's host names mapped to how it is served, validated before Nginx loads them.

A site with the default upload limit costs two map entries (host -> site, site -> route) feeding one shared
server; only a site with its own limit gets a small server block, because client_max_body_size takes no
variable. Each site's last good fragment is kept in memory and under edge/fragments/, so a site whose new
routes Nginx refuses keeps being served as it was, and every other site is untouched.

Changes arriving within DEBOUNCE_SECONDS of each other are validated and reloaded together. A change is
reported done only once the edge answers the new routes' revision (a hash of them, served by the default
server): for a moment after a reload Nginx's old workers still answer with the old routes.

A custom domain is routed to the site holding it: the first to claim it, as the record store records
(`host_holders`). A site naming a domain another holds is served on its other hosts and is not Ready; it
is woken (this reconciler is also a trigger) the moment the holder lets go, and a site that loses a domain
at the edge is woken too, so neither waits for a resync to be right. Without claims (a reconciler driven
without a store), the site serving a domain at the edge keeps it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import docker

from controller.types import Enqueue, Outcome, PermanentError, ReconcileContext, Request, Step
from reconcilers import nginx_config
from reconcilers.docker_calls import DeadlineExceeded, off_loop, seconds_left
from specs.config import Settings
from specs.hosts import custom_domain_problem
from specs.models import KIND_SITE, Site

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.05
NGINX_TEST_TIMEOUT_SECONDS = 60.0
# How long one confirmation waits for the edge to answer a new revision, and when an unconfirmed site is
# looked at again.
CONFIRM_SECONDS = 5.0
CONFIRM_RETRY_SECONDS = 1.0
RouteKind = Literal["static", "dynamic", "not-served"]


@dataclass(frozen=True)
class SiteRoute:
    name: str
    # The site's default host first, then the custom domains it is granted.
    hosts: tuple[str, ...]
    kind: RouteKind
    upload_limit: int
    # Custom domains the record store says this site holds: the edge moves them here from any other site.
    claimed: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, fields: dict[str, object]) -> SiteRoute:
        """A fragment saved on disk, by this version or an earlier one (which kept other fields)."""
        known = {key: fields[key] for key in ("name", "kind", "upload_limit") if key in fields}
        hosts = fields.get("hosts") or []
        claimed = fields.get("claimed") or []
        assert isinstance(hosts, list) and isinstance(claimed, list)
        return cls(**known, hosts=tuple(hosts), claimed=tuple(claimed))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Fragment:
    route: SiteRoute
    host_entries: str
    route_entry: str
    server: str


HostHolders = Callable[[str], Mapping[str, str]]


def _no_claims(_name: str) -> Mapping[str, str]:
    return {}


def desired_route(
    site: Site, settings: Settings, holders: Mapping[str, str] | None = None
) -> tuple[SiteRoute | None, dict[str, str]]:
    """The site's route (None when it must not be routed: disabled, its hosts answer 404), and the custom
    domains it names but may not have, each with the reason."""
    spec = site.spec
    if spec.availability == "disabled":
        return None, {}
    holders = holders or {}
    denied: dict[str, str] = {}
    for host in spec.domains:
        problem = custom_domain_problem(host, settings.sites_domain)
        holder = holders.get(host, site.name)
        if problem is not None:
            denied[host] = problem
        elif holder != site.name:
            denied[host] = f"{host} is served by site {holder}, which claimed it first"
    granted = tuple(host for host in spec.domains if host not in denied)
    route = SiteRoute(
        name=site.name,
        hosts=(f"{site.name}.{settings.sites_domain}", *granted),
        kind="not-served" if spec.availability == "not-served" else spec.type,
        upload_limit=spec.resources.upload_limit_bytes,
        claimed=tuple(host for host in granted if holders.get(host) == site.name),
    )
    return route, denied


Changes = Mapping[str, SiteRoute | None]


@dataclass
class _BatchResult:
    good: dict[str, Fragment]
    rejected: dict[str, str]
    reloaded: nginx_config.EdgeReload | None = None
    # Of `good`, when it differs from the routes the batch started from.
    revision: str | None = None


class SiteRoutes:
    """Reconciler for the edge's routes."""

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
        # Sites refused a custom domain, by domain: woken when it is free at the edge.
        self._waiting: dict[str, set[str]] = {}
        self._enqueue: Enqueue | None = None
        self._templates = nginx_config.template_environment(templates_dir)
        self._layout = nginx_config.EdgeLayout(settings.edge_dir)
        self._debounce = debounce_seconds
        self._good: dict[str, Fragment] | None = None
        # The revision of _good's routes, and the last one the edge was seen answering since its last reload.
        self._revision = ""
        self._served_revision: str | None = None
        # The last reload, and the revision it installed: its old workers must stop before that one counts.
        self._last_reload: tuple[str, nginx_config.EdgeReload] | None = None
        self._confirming: dict[str, asyncio.Task[bool]] = {}
        # Nginx's refusal of a route, remembered so an unchanged bad spec is not validated again and again.
        self._refused: dict[str, tuple[SiteRoute | None, str]] = {}
        self._pending: dict[str, tuple[SiteRoute | None, list[asyncio.Future[str | None]]]] = {}
        self._flush: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._load_lock = asyncio.Lock()

    async def observe(self) -> None:
        """Load the last good routes, and put the live routes.conf back if it is not what they make."""
        deadline = time.monotonic() + NGINX_TEST_TIMEOUT_SECONDS
        good = await self._loaded(deadline)
        async with self._flush_lock:
            reload = await off_loop(deadline, self._repair_live, self._good or good)
            if reload is not None:
                self._served_revision, self._last_reload = None, (self._revision, reload)

    def owned_names(self) -> set[str]:
        return set(self._good or {})

    async def run(self, enqueue: Enqueue) -> None:
        """As a trigger: wake sites whose domains were freed or taken, until cancelled."""
        self._enqueue = enqueue
        try:
            await asyncio.Event().wait()
        finally:
            self._enqueue = None

    def _wake(self, names: set[str], why: str) -> None:
        if self._enqueue is None:
            return
        for name in sorted(names):
            self._enqueue(Request(KIND_SITE, name), f"routes: {why}")

    async def reconcile(self, site: Site, ctx: ReconcileContext) -> Outcome:
        good = await self._loaded(ctx.deadline)
        holders = await off_loop(ctx.deadline, self._host_holders, site.name) if site.spec.domains else {}
        route, denied = desired_route(site, self._settings, holders)
        self._note_waiting(site.name, denied)
        outcome = await self._converge(site, route, good, ctx)
        if denied:
            outcome.ready = False
            outcome.message = "; ".join(denied.values()) + (
                ": it is served on its other hosts, and gets a domain the moment its holder lets go of it"
            )
        return outcome

    def _note_waiting(self, name: str, denied: Mapping[str, str]) -> None:
        for host in [host for host, names in self._waiting.items() if name in names and host not in denied]:
            self._waiting[host].discard(name)
            if not self._waiting[host]:
                del self._waiting[host]
        for host in denied:
            self._waiting.setdefault(host, set()).add(name)

    async def _converge(
        self, site: Site, route: SiteRoute | None, good: Mapping[str, Fragment], ctx: ReconcileContext
    ) -> Outcome:
        current = good.get(site.name)
        if (current.route if current else None) == route:
            message = f"{site.name} is routed as {route.kind}" if route else f"{site.name} is not routed"
            return await self._once_served(Step("routes", "unchanged", message), ctx)
        refused = self._refused.get(site.name)
        if refused is not None and refused[0] == route:
            raise PermanentError(refused[1])
        error = await self._submit(site.name, route, ctx)
        if error is not None:
            raise PermanentError(error)
        if route is None:
            message = f"{site.name} is disabled: its hosts answer 404"
            return await self._once_served(Step("routes", "deleted", message), ctx)
        hosts = ", ".join(route.hosts)
        step = Step("routes", "updated", f"validated and reloaded: {hosts} -> {route.kind}")
        return await self._once_served(step, ctx)

    async def finalize(self, name: str, ctx: ReconcileContext) -> Outcome:
        good = await self._loaded(ctx.deadline)
        self._refused.pop(name, None)
        if name not in good:
            return Outcome(steps=[Step("routes", "unchanged", f"{name} has no routes")])
        error = await self._submit(name, None, ctx)
        if error is not None:
            raise RuntimeError(f"removing the routes of {name} failed: {error}")
        message = f"removed the routes of {name}: its hosts answer 404"
        return await self._once_served(Step("routes", "deleted", message), ctx)

    async def _once_served(self, step: Step, ctx: ReconcileContext) -> Outcome:
        """The outcome of `step`: ready only once the edge answers the current routes' revision."""
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
        confirming = self._confirming.get(revision)
        if confirming is None:
            confirming = asyncio.create_task(self._confirm(revision))
            self._confirming[revision] = confirming
        # Shielded: a reconcile giving up at its deadline must not cancel what the others wait on.
        try:
            return await asyncio.wait_for(asyncio.shield(confirming), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return False

    async def _confirm(self, revision: str) -> bool:
        reload = self._last_reload[1] if self._last_reload and self._last_reload[0] == revision else None
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
        finally:
            del self._confirming[revision]
        if served and revision == self._revision:
            self._served_revision = revision
        return served

    async def _submit(self, name: str, route: SiteRoute | None, ctx: ReconcileContext) -> str | None:
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        _, waiting = self._pending.get(name, (None, []))
        self._pending[name] = (route, [*waiting, future])
        if self._flush is None:
            self._flush = asyncio.create_task(self._flush_soon())
        # Shielded: a reconcile giving up at its deadline must not cancel the batch other sites wait on.
        try:
            return await asyncio.wait_for(asyncio.shield(future), seconds_left(ctx.deadline))
        except TimeoutError:
            raise DeadlineExceeded(f"the routes of {name} were not validated before the deadline") from None

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self._debounce)
        async with self._flush_lock:
            batch, self._pending, self._flush = self._pending, {}, None
            changes = {name: route for name, (route, _) in batch.items()}
            try:
                result = await asyncio.to_thread(self._apply_batch, dict(self._good or {}), changes)
            except Exception as error:  # every waiter must hear of it, or it waits until its deadline
                for _, futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)
                return
            self._wake_after(self._good or {}, result.good)
            self._good = result.good
            if result.revision is not None:
                self._revision, self._served_revision = result.revision, None
            if result.reloaded is not None:
                self._last_reload = (self._revision, result.reloaded)
            if len(result.rejected) < len(changes):
                self._refused.clear()
            for name, (route, futures) in batch.items():
                message = result.rejected.get(name)
                if message is not None:
                    self._refused[name] = (route, message)
                for future in futures:
                    if not future.done():
                        future.set_result(message)
            # Held until the edge serves this batch (or gives up), so the next batch's reload cannot
            # replace the routes this one's reconciles are waiting to see answered.
            if result.revision is not None:
                await self._served(self._revision, time.monotonic() + CONFIRM_SECONDS)

    def _wake_after(self, before: Mapping[str, Fragment], after: Mapping[str, Fragment]) -> None:
        """Wake the sites waiting for a domain no site serves any more, and those that lost one."""
        served_before, served_after = _host_owners(before), _host_owners(after)
        freed = {host for host in self._waiting if host in served_before and host not in served_after}
        waiting = {name for host in freed for name in self._waiting.pop(host)}
        losers = {
            name
            for host, name in served_before.items()
            if served_after.get(host, name) != name and name in after
        }
        self._wake(waiting, "a domain it names was freed")
        self._wake(losers, "another site holds a domain it served")

    async def _loaded(self, deadline: float) -> dict[str, Fragment]:
        if self._good is not None:
            return self._good
        async with self._load_lock:
            if self._good is None:
                good, revision, reload = await off_loop(deadline, self._load)
                self._good, self._revision = good, revision
                if reload is not None:
                    self._last_reload = (revision, reload)
        return self._good

    # Everything below runs in a worker thread and touches no state the event loop reads.

    def _fragment(self, route: SiteRoute) -> Fragment:
        templates = self._templates
        server = ""
        if route.upload_limit != nginx_config.DEFAULT_UPLOAD_LIMIT_BYTES:
            server = templates.get_template("site_server.conf.j2").render(
                name=route.name, hosts=route.hosts, upload_limit=route.upload_limit
            )
        return Fragment(
            route=route,
            host_entries=templates.get_template("site_hosts.j2").render(name=route.name, hosts=route.hosts),
            route_entry=templates.get_template("site_route.j2").render(name=route.name, route=route.kind),
            server=server,
        )

    def _render(self, good: Mapping[str, Fragment]) -> str:
        return nginx_config.render_routes(self._templates, *_entries(good))

    def _load(self) -> tuple[dict[str, Fragment], str, nginx_config.EdgeReload | None]:
        """The last good fragments from disk, their revision, and the reload if the live file was not them."""
        good: dict[str, Fragment] = {}
        if self._layout.fragments_dir.is_dir():
            for path in sorted(self._layout.fragments_dir.glob("*.json")):
                route = SiteRoute.from_json(json.loads(path.read_text()))
                good[route.name] = self._fragment(route)
        reload = self._repair_live(good)
        return good, nginx_config.routes_revision(*_entries(good)), reload

    def _repair_live(self, good: Mapping[str, Fragment]) -> nginx_config.EdgeReload | None:
        text = self._render(good)
        live = self._settings.edge_dir / nginx_config.ROUTES_CONF
        if live.exists() and live.read_text() == text:
            return None
        deadline = time.monotonic() + NGINX_TEST_TIMEOUT_SECONDS
        return self._install_staged(self._validate(text, deadline), good, changed=set())

    def _apply_batch(self, good: dict[str, Fragment], changes: Changes) -> _BatchResult:
        deadline = time.monotonic() + NGINX_TEST_TIMEOUT_SECONDS
        rejected: dict[str, str] = {}
        candidate = dict(good)
        owners = _host_owners(candidate)
        changed: set[str] = set()
        for name, route in changes.items():
            conflict = self._claim(candidate, owners, name, route, changed)
            if conflict:
                rejected[name] = conflict
        if not changed:
            return _BatchResult(good, rejected)
        text = self._render(candidate)
        staged: Path | None
        try:
            staged = self._validate(text, deadline)
        except nginx_config.NginxRejected as whole_batch_refused:
            if len(changes) == 1:
                only = next(iter(changes))
                rejected[only] = f"the routes of {only} were refused by {whole_batch_refused}"
                return _BatchResult(good, rejected)
            candidate, changed, staged = self._apply_one_by_one(good, changes, rejected, deadline)
        if staged is None:
            return _BatchResult(good, rejected)
        reloaded = self._install_staged(staged, candidate, changed)
        return _BatchResult(candidate, rejected, reloaded, nginx_config.routes_revision(*_entries(candidate)))

    def _apply_one_by_one(
        self, good: dict[str, Fragment], changes: Changes, rejected: dict[str, str], deadline: float
    ) -> tuple[dict[str, Fragment], set[str], Path | None]:
        """Find which changes Nginx refuses: each is tried on top of the good ones accepted before it."""
        accepted = dict(good)
        accepted_changes: set[str] = set()
        staged: Path | None = None
        for name, route in changes.items():
            if name in rejected:
                continue
            trial = dict(accepted)
            changed: set[str] = set()
            if self._claim(trial, _host_owners(trial), name, route, changed):
                continue
            try:
                trial_staged = self._validate(self._render(trial), deadline)
            except nginx_config.NginxRejected as refused:
                rejected[name] = f"the routes of {name} were refused by {refused}"
                continue
            if staged is not None:
                nginx_config.discard_staged(staged)
            accepted, staged = trial, trial_staged
            accepted_changes |= changed
        return accepted, accepted_changes, staged

    def _claim(
        self,
        candidate: dict[str, Fragment],
        owners: dict[str, str],
        name: str,
        route: SiteRoute | None,
        changed: set[str],
    ) -> str:
        """Put `route` into `candidate` unless a host of it belongs to another site; return the conflict.

        A site's own default host and the domains its record holds are moved to it from whichever site
        serves them now; any other host stays with the site serving it. `owners` (host -> site) is kept
        in step with `candidate`.
        """
        taken_from: dict[str, list[str]] = {}
        hosts_wanted = route.hosts if route else ()
        for host in hosts_wanted:
            holder_name = owners.get(host)
            if holder_name is None or holder_name == name:
                continue
            holder = candidate[holder_name].route
            own_default = host == hosts_wanted[0]
            held = route is not None and host in route.claimed
            if host == holder.hosts[0] or not (own_default or held):
                return f"the domain {host} is already served by site {holder_name}, which had it first"
            taken_from.setdefault(holder_name, []).append(host)
        for holder_name, hosts in taken_from.items():
            holder = candidate[holder_name].route
            kept = tuple(host for host in holder.hosts if host not in hosts)
            candidate[holder_name] = self._fragment(replace(holder, hosts=kept))
            changed.add(holder_name)
        previous = candidate.pop(name, None)
        for host in previous.route.hosts if previous else ():
            if owners.get(host) == name:
                del owners[host]
        if route is not None:
            candidate[name] = self._fragment(route)
            owners.update(dict.fromkeys(route.hosts, name))
        changed.add(name)
        return ""

    def _validate(self, text: str, deadline: float) -> Path:
        return nginx_config.stage_and_validate(
            self._layout, {nginx_config.ROUTES_CONF: text}, max(0.1, deadline - time.monotonic())
        )

    def _install_staged(
        self, staged: Path, good: Mapping[str, Fragment], changed: set[str]
    ) -> nginx_config.EdgeReload:
        with nginx_config.edge_dir_lock(self._settings.edge_dir):
            self._persist(good, changed)
            nginx_config.install_staged(self._layout, staged, [nginx_config.ROUTES_CONF])
        return nginx_config.reload_edge(self._client, self._settings)

    def _persist(self, good: Mapping[str, Fragment], changed: set[str]) -> None:
        self._layout.fragments_dir.mkdir(parents=True, exist_ok=True)
        for name in changed:
            path = self._layout.fragments_dir / f"{name}.json"
            fragment = good.get(name)
            if fragment is None:
                path.unlink(missing_ok=True)
                continue
            temporary = path.with_suffix(".json.tmp")
            temporary.write_text(json.dumps(asdict(fragment.route)))
            os.replace(temporary, path)


def _host_owners(good: Mapping[str, Fragment]) -> dict[str, str]:
    return {host: name for name, fragment in good.items() for host in fragment.route.hosts}


def _entries(good: Mapping[str, Fragment]) -> tuple[str, str, str]:
    """The host entries, route entries and servers of routes.conf."""
    # Sorted, so the same routes always make the same file, whichever order they arrived in.
    fragments = [good[name] for name in sorted(good)]
    return (
        "".join(f.host_entries for f in fragments).rstrip("\n"),
        "".join(f.route_entry for f in fragments).rstrip("\n"),
        "".join(f.server for f in fragments),
    )
