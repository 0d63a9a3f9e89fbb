"""A route change is reported done only once the edge answers it, on the real Swarm and edge."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from reconciler_helpers import context, free_port, http_get, make_site, wait_for_http

from reconcilers import nginx_config, routes
from reconcilers.routes import SiteRoutes

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

FRESH_REQUESTS = 20


def _statuses(settings, host: str) -> list[int]:
    """The status of FRESH_REQUESTS requests, each on its own new connection."""
    return [http_get(settings, host)[0] for _ in range(FRESH_REQUESTS)]


async def test_a_reconcile_returns_once_the_edge_answers_the_new_availability(stack):
    host = f"flipping.{stack.settings.sites_domain}"
    served = make_site("flipping")
    not_served = make_site("flipping", created=served.metadata.creation_timestamp, availability="not-served")
    await stack.files.reconcile(served, context())
    first = await stack.routes.reconcile(served, context())
    assert first.ready and first.steps[0].result == "updated"
    assert await asyncio.to_thread(_statuses, stack.settings, host) == [200] * FRESH_REQUESTS

    for _ in range(3):
        paused = await stack.routes.reconcile(not_served, context())
        assert paused.ready and paused.steps[0].result == "updated"
        assert await asyncio.to_thread(_statuses, stack.settings, host) == [403] * FRESH_REQUESTS
        resumed = await stack.routes.reconcile(served, context())
        assert resumed.ready and resumed.steps[0].result == "updated"
        assert await asyncio.to_thread(_statuses, stack.settings, host) == [200] * FRESH_REQUESTS


async def test_the_edge_answers_the_revisions_of_the_files_it_loaded(stack):
    site = make_site("revisioned")
    await stack.files.reconcile(site, context())
    await stack.routes.reconcile(site, context())
    routes_conf = (stack.settings.edge_dir / nginx_config.ROUTES_CONF).read_text()
    static = nginx_config.render_static_files(nginx_config.template_environment(), stack.settings)

    served = await asyncio.to_thread(nginx_config.served_revisions, stack.settings.http_port)
    assert f'"routes={served["routes"]} ' in routes_conf
    assert served["edge"] == nginx_config.edge_revision(static)
    # Over HTTP/1.1 too: a host no site claims reaches the default server.
    path = nginx_config.REVISION_PATH
    answer = await asyncio.to_thread(http_get, stack.settings, "unknown.example.org", path)
    assert answer == (200, f"routes={served['routes']} edge={served['edge']}\n")


async def test_an_edge_that_does_not_answer_leaves_the_change_not_ready(stack, monkeypatch):
    monkeypatch.setattr(routes, "CONFIRM_SECONDS", 1.0)
    # Same edge directory, but the edge is looked for on a port nothing listens on.
    unreachable = dataclasses.replace(stack.settings, http_port=free_port())
    blind = SiteRoutes(unreachable, stack.client)
    site = make_site("unconfirmed")
    await stack.files.reconcile(site, context())

    outcome = await blind.reconcile(site, context())
    assert outcome.steps[0].result == "updated"
    assert not outcome.ready
    assert outcome.message.startswith("the edge has not loaded routes revision ")
    assert outcome.requeue_after == routes.CONFIRM_RETRY_SECONDS
    again = await blind.reconcile(site, context())
    assert again.steps[0].result == "unchanged" and not again.ready

    # The edge did load the change: a reconciler that can reach it finds the site unchanged and ready.
    wait_for_http(stack.settings, f"unconfirmed.{stack.settings.sites_domain}", 200, "This site is new")
    seeing = SiteRoutes(stack.settings, stack.client)
    confirmed = await seeing.reconcile(site, context())
    assert confirmed.steps[0].result == "unchanged" and confirmed.ready


async def test_a_site_whose_route_the_edge_answered_waits_for_no_newer_revision(stack, monkeypatch):
    answered = make_site("answered")
    newcomer = make_site("newcomer")
    for site in (answered, newcomer):
        await stack.files.reconcile(site, context())
    assert (await stack.routes.reconcile(answered, context())).ready

    # From now on the edge is never seen answering: the newcomer's revision stays unconfirmed.
    monkeypatch.setattr(routes, "CONFIRM_SECONDS", 0.2)
    monkeypatch.setattr(nginx_config, "wait_until_served", lambda *_args: False)
    added = await stack.routes.reconcile(newcomer, context())
    assert added.steps[0].result == "updated" and not added.ready

    # The answered site's route is in the unconfirmed revision as it was in the one the edge answered.
    again = await stack.routes.reconcile(answered, context())
    assert again.steps[0].result == "unchanged" and again.ready
    still = await stack.routes.reconcile(newcomer, context())
    assert still.steps[0].result == "unchanged" and not still.ready
