"""Routes that Nginx refuses, availability, upload limits, finalize and a quiet resync, on the real Swarm."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from reconciler_helpers import CountingClient, context, http_get, make_site, wait_for_http

from controller.types import PermanentError, Request
from reconcilers import nginx_config
from reconcilers.docker_events import DockerEvents
from reconcilers.edge import live_files, live_routes
from reconcilers.images import ImageResolver
from reconcilers.platform import PLATFORM
from reconcilers.routes import SiteRoutes
from reconcilers.service import SiteServices
from reconcilers.swarm_cache import SwarmCache
from store.records import SiteStore

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

BROKEN_LIMIT = "7Mi"
# Dynamic, with its service at 0 replicas: converged the moment it exists.
PAUSED_DYNAMIC = {"type": "dynamic", "image": "director-local/site:latest", "availability": "not-served"}


@pytest.fixture
def broken_templates(tmp_path):
    """The real templates, plus a directive Nginx does not know in the server of any site limited to 7Mi."""
    templates = tmp_path / "templates"
    shutil.copytree(nginx_config.TEMPLATES_DIR, templates)
    server = templates / "site_server.conf.j2"
    server.write_text(
        server.read_text().replace(
            "    include site_locations.conf;",
            "    include site_locations.conf;\n"
            "{% if upload_limit == 7340032 %}    no_such_directive on;\n{% endif %}",
        )
    )
    return templates


async def test_a_route_nginx_refuses_keeps_the_last_good_config(stack, broken_templates, write_site_file):
    routes = SiteRoutes(stack.settings, stack.client, templates_dir=broken_templates)
    neighbour = make_site("good-neighbour")
    turns_bad = make_site("turns-bad")
    for site in (neighbour, turns_bad):
        await stack.files.reconcile(site, context())
        await routes.reconcile(site, context())
    write_site_file("turns-bad", "public/index.html", "last good")
    wait_for_http(stack.settings, f"turns-bad.{stack.settings.sites_domain}", 200, "last good")

    created = turns_bad.metadata.creation_timestamp
    bad = make_site("turns-bad", created=created, resources={"uploadLimit": BROKEN_LIMIT})
    with pytest.raises(PermanentError, match='unknown directive "no_such_directive"') as refused:
        await routes.reconcile(bad, context())
    assert "turns-bad" in str(refused.value)
    live = "".join(live_files(stack.settings.edge_dir).values())
    assert "no_such_directive" not in live and "turns-bad" in live
    assert list((stack.settings.edge_dir / "staging").iterdir()) == []
    kept = live_routes(stack.settings.edge_dir)["turns-bad"]
    assert kept.upload_limit == nginx_config.DEFAULT_UPLOAD_LIMIT_BYTES
    assert http_get(stack.settings, f"turns-bad.{stack.settings.sites_domain}") == (200, "last good")

    # A bad change and a good one in the same burst: the good one is served, the bad one refused.
    newcomer = make_site("newcomer")
    brand_new_bad = make_site("new-and-bad", resources={"uploadLimit": BROKEN_LIMIT})
    for site in (newcomer, brand_new_bad):
        await stack.files.reconcile(site, context())
    results = await asyncio.gather(
        routes.reconcile(newcomer, context()),
        routes.reconcile(brand_new_bad, context()),
        return_exceptions=True,
    )
    assert results[0].steps[0].result == "updated"
    assert isinstance(results[1], PermanentError)
    wait_for_http(stack.settings, f"newcomer.{stack.settings.sites_domain}", 200, "This site is new")
    assert http_get(stack.settings, f"new-and-bad.{stack.settings.sites_domain}")[0] == 404

    # After a restart of the controller, the last good fragments are what is served, and the bad spec
    # is refused again; fixing the spec is accepted.
    restarted = SiteRoutes(stack.settings, stack.client, templates_dir=broken_templates)
    assert (await restarted.reconcile(turns_bad, context())).steps[0].result == "unchanged"
    with pytest.raises(PermanentError):
        await restarted.reconcile(bad, context())
    fixed = make_site("turns-bad", created=created, resources={"uploadLimit": "8Mi"})
    assert (await restarted.reconcile(fixed, context())).steps[0].result == "updated"


async def test_availability_and_upload_limits(stack):
    domain = stack.settings.sites_domain
    sites = [
        make_site("paused-site", availability="not-served"),
        make_site("off-site", availability="disabled"),
        make_site("small-uploads"),
        make_site("big-uploads", resources={"uploadLimit": "8Mi"}),
    ]
    for site in sites:
        await stack.converge(site)
    wait_for_http(stack.settings, f"big-uploads.{domain}", 200, "This site is new")
    assert "not being served" in http_get(stack.settings, f"paused-site.{domain}")[1]
    assert http_get(stack.settings, f"off-site.{domain}")[0] == 404
    assert http_get(stack.settings, "unknown.example.org")[0] == 404

    # A dynamic site that is disabled loses its service, not only its routes.
    switched_off = make_site("switched-off", **PAUSED_DYNAMIC)
    assert (await stack.converge(switched_off))["service"].steps[0].result == "created"
    disabled = make_site("switched-off", **{**PAUSED_DYNAMIC, "availability": "disabled"})
    outcomes = await stack.converge(disabled)
    assert outcomes["service"].steps[0].result == "deleted"
    assert "disabled" in outcomes["service"].steps[0].message
    assert outcomes["routes"].steps[0].result == "deleted"
    wait_for_http(stack.settings, f"switched-off.{domain}", 404)

    three_mib = b"x" * (3 * 1024 * 1024)
    assert _post(stack.settings, f"small-uploads.{domain}", three_mib) == 413
    # Static files refuse POST (405) once the body is accepted: what matters is that it is not 413.
    assert _post(stack.settings, f"big-uploads.{domain}", three_mib) == 405


async def test_finalize_removes_service_routes_and_archives_files(stack, write_site_file):
    site = make_site("going-away", **PAUSED_DYNAMIC)
    await stack.converge(site)
    host = f"going-away.{stack.settings.sites_domain}"
    wait_for_http(stack.settings, host, 403)

    outcomes = await stack.finalize("going-away")
    assert {name: o.steps[0].result for name, o in outcomes.items()} == {
        "service": "deleted",
        "routes": "deleted",
        "files": "deleted",
    }
    assert stack.client.services.list(filters={"name": stack.settings.service_name("going-away")}) == []
    wait_for_http(stack.settings, host, 404)
    assert not (stack.settings.sites_dir / "going-away").exists()
    archived = [p.name for p in stack.settings.trash_dir.iterdir() if p.name.startswith("going-away-")]
    assert len(archived) == 1
    again = await stack.finalize("going-away")
    assert {o.steps[0].result for o in again.values()} == {"unchanged"}


async def test_a_resync_of_converged_sites_writes_nothing(stack):
    sites = [make_site(f"quiet-{i}", **PAUSED_DYNAMIC) for i in range(12)]
    sites += [make_site(f"quiet-static-{i}") for i in range(4)]
    for site in sites:
        await stack.converge(site)
        assert (await stack.until_ready(site)).ready
    routes_before = live_files(stack.settings.edge_dir)

    counting = CountingClient(stack.client)
    images = ImageResolver(stack.client, stack.settings)
    services = SiteServices(stack.settings, SwarmCache(stack.settings, counting), images)
    await services.observe()
    await stack.files.observe()
    await stack.routes.observe()
    for site in sites:
        assert (await services.reconcile(site, stack.ctx(site))).steps[0].result == "unchanged"
        assert (await stack.routes.reconcile(site, context())).steps[0].result == "unchanged"
        assert (await stack.files.reconcile(site, context())).steps[0].result == "unchanged"
    assert dict(counting.api.calls) == {"services": 1, "tasks": 1, "networks": 1}
    assert {f"quiet-{i}" for i in range(12)} <= services.owned_names()
    assert live_files(stack.settings.edge_dir) == routes_before


async def test_observe_puts_back_a_routes_file_edited_by_hand(stack):
    site = make_site("hand-edited")
    await stack.converge(site)
    host = f"hand-edited.{stack.settings.sites_domain}"
    wait_for_http(stack.settings, host, 200, "This site is new")
    host_entry = f'    "\\\\{host}" "hand-edited";\n'
    [shard] = [
        stack.settings.edge_dir / path
        for path, text in live_files(stack.settings.edge_dir).items()
        if host_entry in text
    ]
    shard.write_text(shard.read_text().replace(host_entry, ""))
    await stack.routes.observe()
    assert any(host_entry in text for text in live_files(stack.settings.edge_dir).values())
    assert (await stack.routes.reconcile(site, context())).steps[0].result == "unchanged"


async def test_docker_events_wake_the_site_and_the_edge(stack):
    site = make_site("eventful", **PAUSED_DYNAMIC)
    await stack.converge(site)
    woken: list[tuple[Request, str]] = []
    trigger = DockerEvents(stack.settings, stack.client, stack.cache, stream_seconds=1.0)
    running = asyncio.create_task(trigger.run(lambda request, why: woken.append((request, why))))
    service_name = stack.settings.service_name("eventful")
    edge_service = stack.settings.edge_service
    try:
        # The first stream replays the converge's own events; once a second one is open they are all in.
        deadline = time.monotonic() + 30
        while trigger.streams_opened < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for name in (service_name, edge_service):
            await stack.cache.read_service(name, time.monotonic() + 30)
            assert stack.cache.is_trusted("service", name)
        await asyncio.to_thread(
            subprocess.run,
            ["docker", "service", "update", "--detach", "--env-add", "WOKEN=1", service_name],
            check=True,
            capture_output=True,
        )
        edge = stack.client.containers.list(
            filters={"label": f"com.docker.swarm.service.name={stack.settings.edge_service}"}
        )[0]
        await asyncio.to_thread(edge.kill, signal="SIGWINCH")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            seen_site = (Request("Site", "eventful"), "docker:service/update") in woken
            if seen_site and (PLATFORM, "docker:container/kill") in woken and trigger.streams_opened >= 3:
                break
            await asyncio.sleep(0.2)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert (Request("Site", "eventful"), "docker:service/update") in woken
    assert (PLATFORM, "docker:container/kill") in woken
    # Each event made the cache distrust what it was about before it woke anyone.
    assert not stack.cache.is_trusted("service", service_name)
    assert not stack.cache.is_trusted("service", edge_service)
    assert trigger.streams_opened >= 3, "the stream is reopened with since= every stream_seconds"


def _post(settings, host: str, body: bytes) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", settings.http_port, timeout=10)
    try:
        connection.request("POST", "/", body=body, headers={"Host": host})
        return connection.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        # Nginx may answer 413 and close before the whole body is sent.
        return 413
    finally:
        connection.close()


class _CountingReloads:
    """A Docker client whose containers.list (the edge lookup every reload starts with) is counted."""

    def __init__(self, client) -> None:
        self._client = client
        self.reloads = 0
        self.containers = self
        self.api = client.api

    def list(self, **kwargs):
        self.reloads += 1
        return self._client.containers.list(**kwargs)


async def test_a_burst_of_route_changes_is_one_validation_and_one_reload(stack):
    counting = _CountingReloads(stack.client)
    routes = SiteRoutes(stack.settings, counting)
    sites = [make_site(f"burst-{i}") for i in range(20)]
    for site in sites:
        await stack.files.reconcile(site, context())
    outcomes = await asyncio.gather(*(routes.reconcile(site, context()) for site in sites))
    assert {o.steps[0].result for o in outcomes} == {"updated"}
    assert all(o.ready for o in outcomes)
    assert counting.reloads == 1
    # Ready means served: every site of the burst answers at once, without waiting.
    for site in sites:
        assert http_get(stack.settings, f"{site.name}.{stack.settings.sites_domain}")[0] == 200


async def test_without_claims_the_site_serving_a_domain_keeps_it_whichever_is_older(stack):
    yesterday = datetime.now(UTC) - timedelta(days=1)
    newer = make_site("newer-claim", domains=["contested.example.org"])
    older = make_site("older-claim", created=yesterday, domains=["contested.example.org"])
    for site in (newer, older):
        await stack.files.reconcile(site, context())
    await stack.routes.reconcile(newer, context())
    wait_for_http(stack.settings, "contested.example.org", 200, "newer-claim")

    taken = r"contested\.example\.org is already served by site newer-claim, which had it first"
    with pytest.raises(PermanentError, match=taken):
        await stack.routes.reconcile(older, context())
    assert "newer-claim" in http_get(stack.settings, "contested.example.org")[1]


def _name_domains_by_hand(store: SiteStore, name: str, domains: list[str]) -> None:
    """What an earlier version (or an edit by hand) could leave: a record naming a domain it does not hold."""
    record = store.spec_path(name)
    document = yaml.safe_load(record.read_text())
    document["spec"]["domains"] = domains
    record.write_text(yaml.safe_dump(document))


async def test_the_store_s_holder_keeps_its_domain_and_a_freed_domain_wakes_the_site_waiting(stack, tmp_path):
    store = SiteStore(tmp_path / "records")
    woken: list[tuple[Request, str]] = []
    routes = SiteRoutes(stack.settings, stack.client, host_holders=store.host_holders)
    waking = asyncio.create_task(routes.run(lambda request, why: woken.append((request, why))))
    try:
        store.create(make_site("attacker"))
        store.create(make_site("victim", domains=["victim.example.org"]))
        _name_domains_by_hand(store, "attacker", ["victim.example.org"])
        for name in ("victim", "attacker"):
            await stack.files.reconcile(store.get(name), context())

        # The attacker is reconciled first, and is older: the domain stays the victim's all the same.
        refused = await routes.reconcile(store.get("attacker"), context())
        assert not refused.ready
        assert "victim.example.org is served by site victim, which claimed it first" in refused.message
        assert http_get(stack.settings, "victim.example.org")[0] == 404
        wait_for_http(stack.settings, f"attacker.{stack.settings.sites_domain}", 200, "attacker")
        assert (await routes.reconcile(store.get("victim"), context())).ready
        wait_for_http(stack.settings, "victim.example.org", 200, "<h1>victim</h1>")
        assert not (await routes.reconcile(store.get("attacker"), context())).ready
        assert http_get(stack.settings, "victim.example.org")[1].count("<h1>victim</h1>") == 1

        # The victim lets go: the attacker, waiting for the domain, is woken at once and gets it.
        victim = store.get("victim")
        victim.spec.domains = []
        store.update(victim)
        assert (await routes.reconcile(store.get("victim"), context())).ready
        assert [request.name for request, _ in woken] == ["attacker"]
        assert (await routes.reconcile(store.get("attacker"), context())).ready
        wait_for_http(stack.settings, "victim.example.org", 200, "<h1>attacker</h1>")
    finally:
        waking.cancel()


@pytest.mark.parametrize("host", ["127.0.0.1", "sites-of-others.example.org.sites.localhost", "me.localhost"])
async def test_a_record_naming_a_host_no_site_may_have_is_not_routed_for_it(stack, host):
    host = host.replace("sites.localhost", stack.settings.sites_domain)
    name = f"greedy-{abs(hash(host)) % 1000}"
    fine = f"fine.{name}.example.org"
    site = make_site(name, domains=[host, fine])
    await stack.files.reconcile(site, context())
    outcome = await stack.routes.reconcile(site, context())
    assert not outcome.ready and host in outcome.message
    wait_for_http(stack.settings, fine, 200, name)
    assert http_get(stack.settings, host)[0] == 404


async def test_in_one_burst_the_holder_gets_its_domain_whichever_reconcile_comes_first(stack, tmp_path):
    store = SiteStore(tmp_path / "records")
    routes = SiteRoutes(stack.settings, stack.client, host_holders=store.host_holders)
    store.create(make_site("burst-victim", domains=["burst-victim.example.org"]))
    store.create(make_site("burst-attacker"))
    _name_domains_by_hand(store, "burst-attacker", ["burst-victim.example.org"])
    for name in ("burst-attacker", "burst-victim"):
        await stack.files.reconcile(store.get(name), context())
    for first, second in (("burst-attacker", "burst-victim"), ("burst-victim", "burst-attacker")):
        outcomes = dict(
            zip(
                (first, second),
                await asyncio.gather(
                    routes.reconcile(store.get(first), context()),
                    routes.reconcile(store.get(second), context()),
                ),
                strict=True,
            )
        )
        assert outcomes["burst-victim"].ready
        assert not outcomes["burst-attacker"].ready
        assert "served by site burst-victim, which claimed it first" in outcomes["burst-attacker"].message
        wait_for_http(stack.settings, "burst-victim.example.org", 200, "<h1>burst-victim</h1>")
