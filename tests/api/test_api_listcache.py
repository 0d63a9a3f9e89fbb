"""The reused listing never hides a write: every create, change, status write and delete shows at once."""

from __future__ import annotations

from datetime import UTC, datetime

from api.listcache import ListingCache
from specs.models import Condition, Site, SiteStatus
from store.records import SiteStore


def test_every_write_is_seen_by_the_next_listing(tmp_path):
    store = SiteStore(tmp_path)
    cache = ListingCache(store)
    for index in range(60):
        name = f"site-{index % 7}"
        names = {site.name for site in cache.sites()}
        if name in names and index % 3 == 0:
            store.delete(name)
            assert name not in {site.name for site in cache.sites()}
        elif name in names:
            condition = Condition(
                type="Ready", status="True", reason=f"Step{index}", last_transition_time=datetime.now(UTC)
            )
            store.update_status(name, SiteStatus(conditions=[condition]))
            [listed] = [site for site in cache.sites() if site.name == name]
            assert listed.status is not None and listed.status.conditions[0].reason == f"Step{index}"
        else:
            store.create(Site.model_validate({"metadata": {"name": name}, "spec": {"replicas": index % 3}}))
            assert name in {site.name for site in cache.sites()}


def test_an_unchanged_listing_is_reused(tmp_path):
    import os
    import time

    store = SiteStore(tmp_path)
    store.create(Site.model_validate({"metadata": {"name": "quiet"}}))
    old = time.time() - 10
    for directory in (store.specs_dir, store.status_dir):
        os.utime(directory, (old, old))
    cache = ListingCache(store)
    first = cache.sites()
    assert cache.sites() is first
    store.create(Site.model_validate({"metadata": {"name": "noisy"}}))
    assert [site.name for site in cache.sites()] == ["noisy", "quiet"]
