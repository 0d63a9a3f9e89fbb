"""The route plan on its own (pure, no Nginx, no Docker): who gets each host, in any order of changes."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from reconcilers.route_plan import (
    WHY_FREED,
    WHY_LOST,
    RouteTable,
    RouteWish,
    SiteRoute,
    default_host,
    plan,
)
from specs.hosts import custom_domain_problem

DOMAIN = "sites.localhost"
NAMES = ["ann", "bob", "cat", "dan", "eve"]
# A few hosts many sites fight over, and some no site may have.
HOSTS = ["x.example.org", "y.example.org", "z.example.org", "10.0.0.1", "me.localhost", f"bob.{DOMAIN}"]
ALLOWED = [host for host in HOSTS if custom_domain_problem(host, DOMAIN) is None]


def wish(name: str, *domains: str, kind: str = "static", upload_limit: int = 2097152) -> RouteWish:
    return RouteWish(name, default_host(name, DOMAIN), tuple(domains), kind, upload_limit)


wishes = st.builds(
    lambda name, domains, kind: wish(name, *domains, kind=kind),
    st.sampled_from(NAMES),
    st.lists(st.sampled_from(HOSTS), unique=True, max_size=4),
    st.sampled_from(["static", "dynamic", "not-served"]),
)
# One change per site: its wish, or None (disabled, or deleted).
batches = st.dictionaries(st.sampled_from(NAMES), st.one_of(st.none(), wishes), max_size=len(NAMES)).map(
    lambda batch: {name: wish(name, *w.domains, kind=w.kind) if w else None for name, w in batch.items()}
)
# Who the store says holds each allowed host; hosts left out have no claim data.
holder_maps = st.dictionaries(st.sampled_from(ALLOWED), st.sampled_from(NAMES))
complete_holders = st.fixed_dictionaries({host: st.sampled_from(NAMES) for host in ALLOWED})


def apply(table: RouteTable, batch: Mapping[str, RouteWish | None], holders: Mapping[str, str]) -> RouteTable:
    return table.updated(plan(table, batch, holders, DOMAIN))


def assert_rules_hold(table: RouteTable, holders: Mapping[str, str]) -> None:
    served: dict[str, str] = {}
    for name, route in table.routes.items():
        assert route.name == name and route.hosts[0] == default_host(name, DOMAIN)
        for host in route.hosts:
            assert host not in served, f"{host} routed to {served[host]} and {name}"
            served[host] = name
        for host in route.hosts[1:]:
            assert custom_domain_problem(host, DOMAIN) is None, f"{host} may not be routed"
            assert holders.get(host, name) == name, f"{host} is held by {holders[host]}, routed to {name}"
    assert served == dict(table.owners)


@given(
    before=st.lists(batches, max_size=4),
    batch=st.lists(
        st.tuples(st.sampled_from(NAMES), st.one_of(st.none(), wishes)), unique_by=lambda change: change[0]
    ),
    holders=holder_maps,
    order=st.randoms(),
)
@settings(max_examples=300, deadline=None)
def test_the_plan_does_not_depend_on_the_order_changes_arrived_in(before, batch, holders, order):
    table = RouteTable()
    for earlier in before:
        table = apply(table, earlier, holders)
    changes = [(name, wish(name, *w.domains, kind=w.kind) if w else None) for name, w in batch]
    shuffled = list(changes)
    order.shuffle(shuffled)
    assert plan(table, dict(changes), holders, DOMAIN) == plan(table, dict(shuffled), holders, DOMAIN)


@given(holders=holder_maps, sequence=st.lists(batches, min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_no_host_is_ever_routed_away_from_its_holder_nor_to_two_sites(holders, sequence):
    table = RouteTable()
    for batch in sequence:
        table = apply(table, batch, holders)
        assert_rules_hold(table, holders)


@given(sequence=st.lists(st.tuples(batches, holder_maps), min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_a_host_changing_hands_goes_to_its_new_holder_alone(sequence):
    """Claims move (a holder lets go, another claims): a batch's holder gets the host, from any other."""
    table = RouteTable()
    for batch, holders in sequence:
        result = plan(table, batch, holders, DOMAIN)
        table = table.updated(result)
        # (A change is refused whole only for a host without claim data that another site keeps.)
        taken = {
            host: name
            for name, change in batch.items()
            for host in (change.domains if change else ())
            if holders.get(host) == name and name not in result.refused
        }
        assert_rules_hold(table, taken)
        for host, name in taken.items():
            assert table.owners.get(host) == name


@given(holders=complete_holders, sequence=st.lists(batches, min_size=1, max_size=8), cuts=st.randoms())
@settings(max_examples=300, deadline=None)
def test_when_the_store_knows_every_holder_batching_changes_nothing(holders, sequence, cuts):
    """However changes are grouped and ordered, the table is what the last wishes and the holders make."""
    changes = [change for batch in sequence for change in batch.items()]
    table = RouteTable()
    batch: dict[str, RouteWish | None] = {}
    for name, change in changes:
        if name in batch or cuts.random() < 0.3:
            table = apply(table, batch, holders)
            batch = {}
        batch[name] = change
    table = apply(table, batch, holders)

    last = dict(changes)
    expected = {
        name: (default_host(name, DOMAIN), *(host for host in w.domains if holders.get(host) == name))
        for name, w in last.items()
        if w is not None
    }
    assert {name: route.hosts for name, route in table.routes.items()} == expected


@given(before=st.lists(batches, max_size=5), batch=batches)
@settings(max_examples=300, deadline=None)
def test_without_claims_the_site_serving_a_host_keeps_it(before, batch):
    table = RouteTable()
    for earlier in before:
        table = apply(table, earlier, {})
    result = plan(table, batch, {}, DOMAIN)
    after = table.updated(result)
    for host, name in table.owners.items():
        stays = name not in batch or name in result.refused
        wanted = name in batch and batch[name] is not None and host in batch[name].domains
        if stays or wanted:
            assert after.owners.get(host) == name, f"{host} moved from {name}"
    for name, why in result.refused.items():
        assert "already served by site" in why or "first by name" in why
        assert after.routes.get(name) == table.routes.get(name), "a refused change keeps the last route"
    assert_rules_hold(after, {})


@given(before=st.lists(batches, max_size=5), holders=holder_maps, batch=batches)
@settings(max_examples=300, deadline=None)
def test_only_the_batch_and_the_sites_that_lose_a_host_change_and_those_are_woken(before, holders, batch):
    table = RouteTable()
    for earlier in before:
        table = apply(table, earlier, holders)
    result = plan(table, batch, holders, DOMAIN)
    for name, route in result.routes.items():
        if name in batch and name not in result.refused:
            continue
        previous = table.routes[name]
        assert route is not None and set(route.hosts) < set(previous.hosts), "only losses outside the batch"
        if name not in batch:
            assert result.wake.get(name) == WHY_LOST


def test_a_host_goes_to_its_holder_and_the_site_serving_it_loses_it_and_is_woken():
    table = apply(RouteTable(), {"ann": wish("ann", "x.example.org")}, {})
    assert table.routes["ann"].hosts == (f"ann.{DOMAIN}", "x.example.org")

    result = plan(table, {"bob": wish("bob", "x.example.org")}, {"x.example.org": "bob"}, DOMAIN)
    assert result.routes == {
        "bob": SiteRoute("bob", (f"bob.{DOMAIN}", "x.example.org"), "static", 2097152, ("x.example.org",)),
        "ann": SiteRoute("ann", (f"ann.{DOMAIN}",), "static", 2097152),
    }
    assert result.wake == {"ann": WHY_LOST}

    # ann, reconciled, hears why it is not Ready and waits; bob lets go, and ann is woken.
    table = table.updated(result)
    ann_again = plan(table, {"ann": wish("ann", "x.example.org")}, {"x.example.org": "bob"}, DOMAIN)
    assert ann_again.routes == {}
    assert ann_again.denied["ann"] == {
        "x.example.org": "x.example.org is served by site bob, which claimed it first"
    }
    table = table.updated(ann_again)
    assert table.waiting_for == {"x.example.org": frozenset({"ann"})}
    released = plan(table, {"bob": wish("bob")}, {}, DOMAIN)
    assert released.wake == {"ann": WHY_FREED}


def test_a_holder_that_never_served_its_host_wakes_the_sites_waiting_when_it_goes():
    # bob holds x but is disabled (not routed); ann waits for x. bob is deleted: ann is woken.
    table = apply(RouteTable(), {"ann": wish("ann", "x.example.org")}, {"x.example.org": "bob"})
    assert table.routes["ann"].hosts == (f"ann.{DOMAIN}",)
    assert plan(table, {"bob": None}, {}, DOMAIN).wake == {"ann": WHY_FREED}
    assert plan(table, {"cat": None}, {}, DOMAIN).wake == {}


def test_without_claims_a_change_asking_for_a_served_host_is_refused_whole():
    table = apply(RouteTable(), {"ann": wish("ann", "x.example.org")}, {})
    result = plan(table, {"bob": wish("bob", "y.example.org", "x.example.org")}, {}, DOMAIN)
    assert result.refused == {
        "bob": "the domain x.example.org is already served by site ann, which had it first"
    }
    assert result.routes == {}
    # Two new sites asking at once for a host nobody serves: the first by name gets it, whichever came first.
    both = {"dan": wish("dan", "z.example.org"), "cat": wish("cat", "z.example.org")}
    result = plan(table, both, {}, DOMAIN)
    assert set(result.refused) == {"dan"} and result.routes["cat"].hosts[1:] == ("z.example.org",)


def test_a_route_read_back_from_disk_is_made_to_hold_the_rules():
    routes = [
        SiteRoute("ann", (f"ann.{DOMAIN}", "x.example.org", "127.0.0.1", f"bob.{DOMAIN}"), "static", 1),
        SiteRoute("bob", (f"bob.{DOMAIN}", "x.example.org", "y.example.org"), "static", 1),
    ]
    table, changed = RouteTable.of(routes, DOMAIN)
    assert changed == {"ann", "bob"}
    assert table.routes["ann"].hosts == (f"ann.{DOMAIN}", "x.example.org")
    assert table.routes["bob"].hosts == (f"bob.{DOMAIN}", "y.example.org")
    assert_rules_hold(table, {})
