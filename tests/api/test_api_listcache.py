"""The listing cache: this process's own writes show at once, other processes' through the store's watch
within moments, and a cache that cannot follow the store lists from the store."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from api.listcache import Change, ListingCache, Subscriber
from specs.models import Condition, Site, SiteStatus
from store.records import SiteStore, WatchEvent


def test_every_write_is_seen_by_the_next_listing(tmp_path):
    store = SiteStore(tmp_path)
    with ListingCache(store) as cache:
        _every_write_is_seen(store, cache)


def _every_write_is_seen(store: SiteStore, cache: ListingCache) -> None:
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

    store = SiteStore(tmp_path)
    store.create(Site.model_validate({"metadata": {"name": "quiet"}}))
    old = time.time() - 10
    for directory in (store.specs_dir, store.status_dir):
        os.utime(directory, (old, old))
    with ListingCache(store) as cache:
        first = cache.sites()
        assert cache.sites() is first
        store.create(Site.model_validate({"metadata": {"name": "noisy"}}))
        assert [site.name for site in cache.sites()] == ["noisy", "quiet"]


def _until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.01)


def _following(store: SiteStore) -> ListingCache:
    """A cache that serves lists from what the watch told it, not from the store."""
    cache = ListingCache(store)
    cache.sites()
    # The watch's first event ends the cache's catching up; an empty store has none until a write.
    SiteStore(store.state_dir).create(Site.model_validate({"metadata": {"name": "first"}}))
    _until(
        lambda: cache.synced and "first" in {site.name for site in cache.sites()},
        "the cache follows the store's watch",
    )
    return cache


def test_a_write_of_another_process_is_listed_within_a_deadline(tmp_path):
    other = SiteStore(tmp_path)  # another writer: no listener tells this process's cache of its writes
    with _following(SiteStore(tmp_path)) as cache:
        other.create(Site.model_validate({"metadata": {"name": "elsewhere"}, "spec": {"replicas": 1}}))
        _until(lambda: "elsewhere" in {site.name for site in cache.sites()}, "the other's create is listed")

        site = other.get("elsewhere")
        site.spec.replicas = 3
        other.update(site)
        _until(lambda: _listed(cache, "elsewhere").spec.replicas == 3, "the other's change is listed")

        condition = Condition(
            type="Ready", status="True", reason="Serving", last_transition_time=datetime.now(UTC)
        )
        other.update_status("elsewhere", SiteStatus(conditions=[condition]))
        _until(lambda: _listed(cache, "elsewhere").status is not None, "the other's status write is listed")

        other.delete("elsewhere")
        _until(
            lambda: "elsewhere" not in {site.name for site in cache.sites()}, "the other's delete is listed"
        )
        assert cache.synced


def _listed(cache: ListingCache, name: str) -> Site:
    [site] = [site for site in cache.sites() if site.name == name]
    return site


def test_own_writes_are_listed_at_once_while_the_cache_follows_the_watch(tmp_path):
    store = SiteStore(tmp_path)
    with _following(store) as cache:
        for index in range(20):
            store.create(Site.model_validate({"metadata": {"name": f"own-{index}"}}))
            assert f"own-{index}" in {site.name for site in cache.sites()}
            site = store.get(f"own-{index}")
            site.spec.replicas = 2
            store.update(site)
            assert _listed(cache, f"own-{index}").spec.replicas == 2
            if index % 2:
                store.delete(f"own-{index}")
                assert f"own-{index}" not in {site.name for site in cache.sites()}
        assert cache.synced
        assert [site.name for site in cache.sites()] == [
            "first",
            *sorted(f"own-{i}" for i in range(0, 20, 2)),
        ]


def test_an_own_write_removed_at_once_by_another_process_leaves_the_listing(tmp_path):
    store = SiteStore(tmp_path)
    other = SiteStore(tmp_path)
    with _following(store) as cache:
        for index in range(10):
            # Both within one look of the watch, which then has nothing to report: it never saw the site.
            store.create(Site.model_validate({"metadata": {"name": f"fleeting-{index}"}}))
            other.delete(f"fleeting-{index}")
            _until(
                lambda index=index: f"fleeting-{index}" not in {site.name for site in cache.sites()},
                "the removed site leaves the listing",
            )
        assert cache.synced


def test_a_record_broken_by_hand_leaves_the_listing_and_comes_back_when_mended(tmp_path):
    store = SiteStore(tmp_path)
    with _following(store) as cache:
        store.create(Site.model_validate({"metadata": {"name": "fragile"}}))
        text = store.spec_path("fragile").read_text()
        store.spec_path("fragile").write_text("metadata: [unclosed\n")
        _until(lambda: "fragile" not in {site.name for site in cache.sites()}, "the broken record leaves")
        store.spec_path("fragile").write_text(text)
        _until(lambda: "fragile" in {site.name for site in cache.sites()}, "the mended record is back")


def test_when_the_watch_fails_lists_are_read_from_the_store(tmp_path):
    store = SiteStore(tmp_path)
    other = SiteStore(tmp_path)
    store.create(Site.model_validate({"metadata": {"name": "before"}}))
    fail_now = threading.Event()
    watches = 0

    async def failing_watch(
        on_listed: Callable[[set[str]], None], **_options: object
    ) -> AsyncIterator[WatchEvent]:
        nonlocal watches
        watches += 1
        if watches > 1:
            await asyncio.Event().wait()  # a watch that never gets going again
        on_listed({"before"})
        yield WatchEvent("MODIFIED", "before", None)
        await asyncio.to_thread(fail_now.wait)
        raise OSError("the watch lost its inotify descriptor")

    store.watch = failing_watch  # type: ignore[method-assign]
    with ListingCache(store) as cache:
        cache.sites()
        _until(lambda: cache.synced, "the cache follows the watch")
        fail_now.set()
        _until(lambda: not cache.synced, "the cache stops serving from itself")
        other.create(Site.model_validate({"metadata": {"name": "after"}}))
        assert [site.name for site in cache.sites()] == ["after", "before"]


def test_a_subscriber_gets_every_record_then_every_change_in_order(tmp_path):
    store = SiteStore(tmp_path)
    store.create(Site.model_validate({"metadata": {"name": "zz-last"}}))
    with _following(store) as cache:
        changes: list[Change | None] = []
        subscription = cache.subscribe(changes.append)
        assert subscription is not None
        key, snapshot = subscription
        assert [site.name for site in snapshot.sites] == ["first", "zz-last"]
        store.create(Site.model_validate({"metadata": {"name": "new"}}))
        site = store.get("new")
        site.spec.replicas = 2
        store.update(site)
        store.delete("new")
        cache.unsubscribe(key)
        store.delete("zz-last")
        assert [(change.type, change.name) for change in changes if change is not None] == [
            ("ADDED", "new"),
            ("MODIFIED", "new"),
            ("DELETED", "new"),
        ]


async def test_a_stream_that_cannot_send_holds_one_change_per_site_in_the_order_they_came():
    subscriber = Subscriber(asyncio.get_running_loop())
    one = Site.model_validate({"metadata": {"name": "one"}})
    two = Site.model_validate({"metadata": {"name": "two"}})
    changes = [
        Change("MODIFIED", "one", one),
        Change("ADDED", "two", two),
        *[Change("MODIFIED", "one", one.model_copy(update={"spec": one.spec})) for _ in range(1000)],
        Change("MODIFIED", "two", two),
        Change("ADDED", "gone", two),
        Change("DELETED", "gone", None),
    ]
    for change in changes:
        await asyncio.to_thread(subscriber.deliver, change)
    await asyncio.sleep(0)  # the loop takes the handed changes
    subscriber.deliver(None)
    received = []
    while (change := await asyncio.wait_for(subscriber.next(), 60)) is not None:
        received.append(change)
    # The site added and removed meanwhile was never there for this stream; "two" stays ADDED.
    assert [(change.type, change.name) for change in received] == [("MODIFIED", "one"), ("ADDED", "two")]
    assert received[0].site is changes[-4].site


async def test_a_site_removed_and_made_again_before_the_stream_sends_is_one_modification():
    subscriber = Subscriber(asyncio.get_running_loop())
    again = Site.model_validate({"metadata": {"name": "again"}})
    subscriber.deliver(Change("DELETED", "again", None))
    subscriber.deliver(Change("ADDED", "again", again))
    assert await asyncio.wait_for(subscriber.next(), 60) == Change("MODIFIED", "again", again)
