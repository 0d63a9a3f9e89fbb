"""The edge's route table and what a batch of changes makes of it: pure data and functions, no I/O.

The table maps each routed site to its route: the host names it answers (its default host first) and how it
is served. A change is what a site's spec now asks of the edge (a RouteWish), or None when the site must not
be routed (disabled, or gone). `plan` takes the table, a batch of changes and what the record store says
about who holds the custom domains they name, and says what the table becomes: the sites whose route
changes, the changes refused (each with its reason), the hosts each site is denied (each with its reason),
the hosts sites wait for, and the sites to wake.

Who gets a host:
- a site's default host, `<name>.<sites domain>`, is always its own;
- a host no site may have (specs.hosts.custom_domain_problem: IP literals, localhost, the sites domain and
  every name under it) is never routed;
- a custom domain the store says a site holds (its claim: the first to name it keeps it) goes to that site,
  taken from any site serving it now; any other site naming it is denied it, is served on its other hosts,
  and waits for it;
- a custom domain the store says nothing about (a reconciler driven without a store) stays with the site
  serving it now, and a change asking for it is refused whole (the site keeps its last route); of changes
  asking at the same time for such a host nobody serves, the first by name gets it.

The result depends on the data alone, never on the order in which changes arrived within a batch. Each call
costs in proportion to the changes and their hosts (plus the sites waiting for a host), never to the size of
the table: the table is read, not copied, and the new one is made by `RouteTable.updated`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from specs.hosts import custom_domain_problem
from specs.models import Site

RouteKind = Literal["static", "dynamic", "not-served"]

WHY_LOST = "another site holds a domain it served"
WHY_FREED = "a domain it names was freed"


@dataclass(frozen=True, slots=True)
class SiteRoute:
    """How the edge serves one site: the host names it answers (its default host first), and as what."""

    name: str
    hosts: tuple[str, ...]
    kind: RouteKind
    upload_limit: int
    # The custom domains among `hosts` the record store says this site holds (the others it has because it
    # served them first, without claim data).
    claimed: tuple[str, ...] = ()
    # A dynamic site's cache at the edge (spec.cache): how long a page is kept after it was last asked for,
    # and the most its pages may take; 0 when it has none.
    stale_seconds: int = 0
    cache_bytes: int = 0

    @classmethod
    def from_json(cls, fields: Mapping[str, object]) -> SiteRoute:
        """A route saved on disk, by this version or an earlier one (which kept other fields)."""
        hosts = fields.get("hosts") or []
        claimed = fields.get("claimed") or []
        name, kind, upload_limit = fields["name"], fields["kind"], fields["upload_limit"]
        stale_seconds, cache_bytes = fields.get("stale_seconds", 0), fields.get("cache_bytes", 0)
        if not (
            isinstance(hosts, list)
            and isinstance(claimed, list)
            and isinstance(name, str)
            and kind in ("static", "dynamic", "not-served")
            and isinstance(upload_limit, int)
            and isinstance(stale_seconds, int)
            and isinstance(cache_bytes, int)
        ):
            raise ValueError(f"not a saved route: {dict(fields)!r}")
        return cls(
            name=name,
            hosts=tuple(str(host) for host in hosts),
            kind=kind,
            upload_limit=upload_limit,
            claimed=tuple(str(host) for host in claimed),
            stale_seconds=stale_seconds,
            cache_bytes=cache_bytes,
        )

    def to_json(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "name": self.name,
            "hosts": list(self.hosts),
            "kind": self.kind,
            "upload_limit": self.upload_limit,
            "claimed": list(self.claimed),
        }
        if self.stale_seconds:
            fields.update(stale_seconds=self.stale_seconds, cache_bytes=self.cache_bytes)
        return fields


@dataclass(frozen=True)
class RouteWish:
    """What a site's spec asks of the edge: every custom domain it names, granted or not."""

    name: str
    default_host: str
    domains: tuple[str, ...]
    kind: RouteKind
    upload_limit: int
    stale_seconds: int = 0
    cache_bytes: int = 0


def default_host(name: str, sites_domain: str) -> str:
    return f"{name}.{sites_domain}"


def wish_for(site: Site, sites_domain: str) -> RouteWish | None:
    """What `site` asks of the edge; None when it must not be routed (disabled: its hosts answer 404)."""
    spec = site.spec
    if spec.availability == "disabled":
        return None
    return RouteWish(
        name=site.name,
        default_host=default_host(site.name, sites_domain),
        domains=tuple(dict.fromkeys(spec.domains)),
        kind="not-served" if spec.availability == "not-served" else spec.type,
        upload_limit=spec.resources.upload_limit_bytes,
        stale_seconds=spec.cache.stale_seconds if spec.cache else 0,
        cache_bytes=spec.cache.max_size_bytes if spec.cache else 0,
    )


@dataclass(frozen=True)
class HostDecision:
    """What one wish gets of its custom domains, before the table is looked at."""

    # Held by the site, as the store says: taken from whoever serves them.
    held: tuple[str, ...]
    # Nobody holds them as far as the data says: the site gets them if no other site serves them.
    unclaimed: tuple[str, ...]
    # host -> why the site may not have it.
    denied: Mapping[str, str]
    # Of `denied`: host -> the site holding it, which the denied site waits on.
    holders: Mapping[str, str]


def decide_hosts(wish: RouteWish, holders: Mapping[str, str], sites_domain: str) -> HostDecision:
    held: list[str] = []
    unclaimed: list[str] = []
    denied: dict[str, str] = {}
    waits: dict[str, str] = {}
    for host in wish.domains:
        problem = custom_domain_problem(host, sites_domain)
        holder = holders.get(host)
        if problem is not None:
            denied[host] = problem
        elif holder is None:
            unclaimed.append(host)
        elif holder == wish.name:
            held.append(host)
        else:
            denied[host] = f"{host} is served by site {holder}, which claimed it first"
            waits[host] = holder
    return HostDecision(tuple(held), tuple(unclaimed), denied, waits)


def route_for(wish: RouteWish, granted: Iterable[str], held: Iterable[str]) -> SiteRoute:
    """The route of `wish` with the custom domains in `granted` (in the order the spec names them)."""
    granted_set, held_set = set(granted), set(held)
    hosts = tuple(host for host in wish.domains if host in granted_set)
    return SiteRoute(
        name=wish.name,
        hosts=(wish.default_host, *hosts),
        kind=wish.kind,
        upload_limit=wish.upload_limit,
        claimed=tuple(host for host in hosts if host in held_set),
        stale_seconds=wish.stale_seconds,
        cache_bytes=wish.cache_bytes,
    )


@dataclass(frozen=True)
class RouteTable:
    """The routes the edge serves, and the hosts that sites wait for."""

    routes: Mapping[str, SiteRoute] = field(default_factory=dict)
    # host -> the site serving it, for every host of every route.
    owners: Mapping[str, str] = field(default_factory=dict)
    # site -> {host it is denied: the site it waits on (the holder, or the site serving it)}.
    waits: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # The same by host, and by the site waited on: host -> sites, waited-on site -> sites.
    waiting_for: Mapping[str, frozenset[str]] = field(default_factory=dict)
    waiting_on: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, routes: Iterable[SiteRoute], sites_domain: str) -> tuple[RouteTable, frozenset[str]]:
        """A table of routes read back from disk, made to hold the rules; and the sites that had to change.

        A host no site may have is dropped, and so is a host listed by two routes (from the site that comes
        later by name), or another site's default host.
        """
        by_name = {route.name: route for route in routes}
        owners: dict[str, str] = {}
        for route in by_name.values():
            owners[route.hosts[0]] = route.name
        kept: dict[str, SiteRoute] = {}
        changed: set[str] = set()
        for name in sorted(by_name):
            route = by_name[name]
            custom = []
            for host in route.hosts[1:]:
                if (
                    custom_domain_problem(host, sites_domain) is None
                    and owners.setdefault(host, name) == name
                ):
                    custom.append(host)
            if len(custom) != len(route.hosts) - 1:
                route = replace(
                    route,
                    hosts=(route.hosts[0], *custom),
                    claimed=tuple(host for host in route.claimed if host in custom),
                )
                changed.add(name)
            kept[name] = route
        return cls(routes=kept, owners=owners), frozenset(changed)

    def updated(self, plan: Plan) -> RouteTable:
        """This table with `plan` applied; copies the routes only when some route changed."""
        routes, owners = self.routes, self.owners
        if plan.routes:
            routes, owners = dict(self.routes), dict(self.owners)
            for name, route in plan.routes.items():
                previous = routes.pop(name, None)
                for host in previous.hosts if previous else ():
                    if owners.get(host) == name:
                        del owners[host]
                if route is not None:
                    routes[name] = route
            for name, route in plan.routes.items():
                for host in route.hosts if route else ():
                    owners[host] = name
        if not any(self.waits.get(name) or plan.waits.get(name) for name in plan.changes):
            return replace(self, routes=routes, owners=owners)
        waits = dict(self.waits)
        waiting_for = {host: set(names) for host, names in self.waiting_for.items()}
        waiting_on = {site: set(names) for site, names in self.waiting_on.items()}
        for name in plan.changes:
            for host, site in waits.pop(name, {}).items():
                waiting_for[host].discard(name)
                waiting_on[site].discard(name)
            hosts = plan.waits.get(name)
            if hosts:
                waits[name] = hosts
                for host, site in hosts.items():
                    waiting_for.setdefault(host, set()).add(name)
                    waiting_on.setdefault(site, set()).add(name)
        return RouteTable(
            routes=routes,
            owners=owners,
            waits=waits,
            waiting_for={host: frozenset(names) for host, names in waiting_for.items() if names},
            waiting_on={site: frozenset(names) for site, names in waiting_on.items() if names},
        )


@dataclass(frozen=True)
class Plan:
    """What a batch of changes makes of a table."""

    # The sites of the batch.
    changes: frozenset[str]
    # Every site whose route changes (of the batch, or losing a host to one): its new route, None to remove.
    routes: Mapping[str, SiteRoute | None]
    # Changes not applied, each with why: the site keeps its last route.
    refused: Mapping[str, str]
    # Per site of the batch (applied changes only): host -> why it is not routed to the site.
    denied: Mapping[str, Mapping[str, str]]
    # Per site of the batch: host -> the site it waits on for it (empty: waits for nothing).
    waits: Mapping[str, Mapping[str, str]]
    # Sites to look at again, each with why: they lost a host, or a host they wait for is free.
    wake: Mapping[str, str]

    @property
    def changed(self) -> frozenset[str]:
        return frozenset(self.routes)


def plan(
    table: RouteTable,
    changes: Mapping[str, RouteWish | None],
    holders: Mapping[str, str],
    sites_domain: str,
) -> Plan:
    """What `changes` make of `table`, given `holders` (custom domain -> the site the store says holds it)."""
    names = sorted(changes)
    decisions = {
        name: decide_hosts(wish, holders, sites_domain)
        for name in names
        if (wish := changes[name]) is not None
    }
    # A site's default host and the domains it holds are its own, whoever serves them now.
    taken: dict[str, str] = {}
    for name, decision in decisions.items():
        wish = changes[name]
        assert wish is not None
        taken[wish.default_host] = name
        for host in decision.held:
            taken.setdefault(host, name)

    # Hosts nobody holds stay with the site serving them; a change asking for one another keeps is refused
    # whole. Refusing a change keeps that site's last route, which may keep a host another change counted
    # on: so again, until no new refusal.
    asked: dict[str, list[str]] = {}
    for name, decision in decisions.items():
        for host in decision.unclaimed:
            asked.setdefault(host, []).append(name)
    refused: dict[str, str] = {}
    refused_waits: dict[str, dict[str, str]] = {}
    winners: dict[str, str] = {}
    while True:
        winners, newly = _settle_unclaimed(table, changes, asked, refused)
        if not newly:
            break
        for name, (host, server, reason) in newly.items():
            refused[name] = reason
            refused_waits[name] = {host: server}

    routes: dict[str, SiteRoute | None] = {}
    denied: dict[str, Mapping[str, str]] = {}
    waits: dict[str, Mapping[str, str]] = {}
    for name in names:
        wish = changes[name]
        if name in refused:
            waits[name] = refused_waits[name]
            continue
        if wish is None:
            routes[name] = None
            waits[name] = {}
            continue
        decision = decisions[name]
        granted = [*decision.held, *(host for host in decision.unclaimed if winners.get(host) == name)]
        routes[name] = route_for(wish, granted, decision.held)
        denied[name] = decision.denied
        waits[name] = decision.holders

    # What the sites outside the batch (and the refused ones, which keep their last route) lose.
    lost: dict[str, set[str]] = {}
    for host, name in taken.items():
        if name in refused:
            continue
        serving = table.owners.get(host)
        if serving is not None and serving != name and (serving not in changes or serving in refused):
            lost.setdefault(serving, set()).add(host)
    for loser, hosts in lost.items():
        current = table.routes[loser]
        routes[loser] = replace(
            current,
            hosts=tuple(host for host in current.hosts if host not in hosts),
            claimed=tuple(host for host in current.claimed if host not in hosts),
        )
    routes = {name: route for name, route in routes.items() if table.routes.get(name) != route}

    wake = _wake(table, changes, routes, waits, lost)
    return Plan(
        changes=frozenset(names),
        routes=routes,
        refused=refused,
        denied=denied,
        waits=waits,
        wake=wake,
    )


def _settle_unclaimed(
    table: RouteTable,
    changes: Mapping[str, RouteWish | None],
    asked: Mapping[str, list[str]],
    refused: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, tuple[str, str, str]]]:
    """Who gets each host nobody holds (host -> site), and the changes newly refused for one."""
    winners: dict[str, str] = {}
    newly: dict[str, tuple[str, str, str]] = {}
    for host in sorted(asked):
        askers = [name for name in asked[host] if name not in refused]
        if not askers:
            continue
        server = table.owners.get(host)
        keeps = server is not None and (server not in changes or server in refused or server in askers)
        if keeps:
            assert server is not None
            winner = server
            why = f"the domain {host} is already served by site {server}, which had it first"
        else:
            winner = min(askers)
            why = f"the domain {host} is asked for at the same moment by site {winner}, first by name"
        if winner in askers:
            winners[host] = winner
        for name in askers:
            if name != winner and name not in newly:
                newly[name] = (host, winner, why)
    return winners, newly


def _wake(
    table: RouteTable,
    changes: Mapping[str, RouteWish | None],
    routes: Mapping[str, SiteRoute | None],
    waits: Mapping[str, Mapping[str, str]],
    lost: Mapping[str, set[str]],
) -> dict[str, str]:
    """Sites that lost a host to a change, and those waiting for a host that no site serves any more.

    A host a site waits for counts as free when nobody serves it after the batch and either somebody
    served it before or the site it was waited on for is in the batch (it may have let go without ever
    being served there: disabled, or deleted before it was routed).
    """
    wake = {name: WHY_LOST for name in lost if name not in changes}
    after_owner: dict[str, str] = {}
    hosts: set[str] = set()
    for name, route in routes.items():
        previous = table.routes.get(name)
        hosts.update(previous.hosts if previous else ())
        for host in route.hosts if route else ():
            after_owner[host] = name
    for name in changes:
        hosts.update(waits.get(name, {}))
        for waiter in table.waiting_on.get(name, ()):
            hosts.update(host for host, site in table.waits[waiter].items() if site == name)
    for host in sorted(hosts):
        waiters = {
            name: table.waits[name][host] for name in table.waiting_for.get(host, ()) if name not in changes
        }
        waiters.update((name, wanted[host]) for name, wanted in waits.items() if host in wanted)
        if not waiters or host in after_owner:
            continue
        before = table.owners.get(host)
        if before is not None and before not in routes:
            continue  # still served by a site the batch leaves alone
        if before is None and not any(site in changes for site in waiters.values()):
            continue
        for name in waiters:
            wake.setdefault(name, WHY_FREED)
    return wake
