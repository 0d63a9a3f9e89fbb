from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

from store_helpers import make_site

from specs.models import Site, SiteStatus
from store.records import SiteStore, WatchEvent


async def next_event(events: AsyncIterator[WatchEvent]) -> WatchEvent:
    return await asyncio.wait_for(anext(events), timeout=60)


async def test_watch_sees_create_modify_status_error_and_delete(store: SiteStore):
    store.create(make_site("existing"))
    events = store.watch(initial=True)
    try:
        first = await next_event(events)
        assert (first.type, first.name) == ("ADDED", "existing")
        assert first.site is not None and first.site.metadata.generation == 1

        store.create(make_site("blog"))
        added = await next_event(events)
        assert (added.type, added.name) == ("ADDED", "blog")

        site = store.get("blog")
        site.spec.replicas = 3
        store.update(site)
        modified = await next_event(events)
        assert (modified.type, modified.name) == ("MODIFIED", "blog")
        assert modified.site is not None and modified.site.spec.replicas == 3

        store.update_status("blog", SiteStatus(observed_generation=2))
        status_changed = await next_event(events)
        assert status_changed.type == "MODIFIED"
        assert status_changed.site is not None and status_changed.site.status is not None

        store.spec_path("blog").write_text("metadata: [unclosed\n")
        broken = await next_event(events)
        assert (broken.type, broken.name, broken.site) == ("ERROR", "blog", None)
        assert broken.error is not None and "not valid YAML" in broken.error.message

        store.delete("blog")
        deleted = await next_event(events)
        assert (deleted.type, deleted.name, deleted.site) == ("DELETED", "blog", None)
    finally:
        await events.aclose()


async def test_watch_without_initial_reports_only_changes(store: SiteStore):
    store.create(make_site("existing"))
    events = store.watch(initial=False)
    try:
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.2)
        assert not pending.done()
        store.create(make_site("fresh"))
        event = await asyncio.wait_for(pending, timeout=60)
        assert (event.type, event.name) == ("ADDED", "fresh")
    finally:
        await events.aclose()


async def test_watch_resync_catches_what_notifications_missed(store: SiteStore, tmp_path):
    events = store.watch(initial=True, resync_seconds=0.3)
    try:
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.1)
        # Replace the (empty) watched directory wholesale, as a restore from backup would: the watcher
        # still follows the old directory and is told nothing about the record in the new one.
        other = SiteStore(tmp_path / "elsewhere")
        other.create(make_site("restored"))
        staged = store.specs_dir.with_name("sites.restored")
        staged.mkdir()
        (staged / "restored.yaml").write_bytes(other.spec_path("restored").read_bytes())
        staged.rename(store.specs_dir)
        event = await asyncio.wait_for(pending, timeout=60)
        assert (event.type, event.name) == ("ADDED", "restored")
    finally:
        await events.aclose()


async def test_initial_listing_reports_broken_records(store: SiteStore):
    store.create(make_site("good"))
    (store.specs_dir / "bad.yaml").write_text("kind: Site\n")
    events = store.watch()
    try:
        first, second = await next_event(events), await next_event(events)
        assert {(first.type, first.name), (second.type, second.name)} == {("ERROR", "bad"), ("ADDED", "good")}
    finally:
        await events.aclose()


async def test_watch_reports_a_broken_status_record_and_its_repair(store: SiteStore):
    store.create(make_site("blog"))
    store.update_status("blog", SiteStatus(observed_generation=1))
    events = store.watch(initial=True)
    try:
        assert (await next_event(events)).type == "ADDED"
        store.status_path("blog").write_text("status: [\n")
        broken = await next_event(events)
        assert broken.type == "ERROR" and broken.error is not None
        assert broken.error.path == store.status_path("blog")
        store.update_status("blog", SiteStatus(observed_generation=1))
        repaired = await next_event(events)
        assert repaired.type in ("ADDED", "MODIFIED") and repaired.site is not None
        assert repaired.site.status is not None and repaired.site.status.observed_generation == 1
    finally:
        await events.aclose()


async def test_watch_says_when_it_has_its_listing_and_reports_changes_against_it(store: SiteStore):
    store.create(make_site("existing"))
    store.spec_path("broken").write_text("metadata: [unclosed\n")
    listings: list[set[str]] = []
    events = store.watch(initial=False, on_listed=listings.append)
    try:
        pending = asyncio.ensure_future(anext(events))
        deadline = asyncio.get_running_loop().time() + 60
        while not listings:
            assert asyncio.get_running_loop().time() < deadline, "the watch never took its listing"
            await asyncio.sleep(0.01)
        assert listings == [{"existing", "broken"}]
        store.delete("existing")
        deleted = await asyncio.wait_for(pending, timeout=60)
        assert (deleted.type, deleted.name) == ("DELETED", "existing")
        assert len(listings) == 1
    finally:
        await events.aclose()


async def test_a_watch_of_specs_alone_wakes_on_spec_writes_never_on_status_writes(store: SiteStore):
    store.create(make_site("blog"))
    events = store.watch(initial=True, statuses=False)
    try:
        first = await next_event(events)
        assert (first.type, first.name) == ("ADDED", "blog")
        store.update_status("blog", SiteStatus(observed_generation=1))
        # A spec write after the status write: the next event must be its, the status write never showing.
        site = store.get("blog")
        site.spec.replicas = 2
        store.update(site)
        modified = await next_event(events)
        assert (modified.type, modified.name) == ("MODIFIED", "blog")
        assert modified.site is not None and modified.site.spec.replicas == 2
        assert modified.site.status is None
    finally:
        await events.aclose()


async def test_a_watch_waiting_for_quiet_reports_every_write_of_a_burst(store: SiteStore):
    events = store.watch(initial=False, quiet_ms=50)
    try:
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.2)  # the watch has its listing: the writes below are changes against it
        names = [f"burst-{index}" for index in range(20)]
        for name in names:
            store.create(make_site(name))
        seen = [await asyncio.wait_for(pending, timeout=60)]
        while len(seen) < len(names):
            seen.append(await next_event(events))
        assert sorted((event.type, event.name) for event in seen) == sorted(("ADDED", name) for name in names)
    finally:
        await events.aclose()


async def test_a_shared_watch_hands_out_the_records_list_shares_and_a_plain_one_copies(store: SiteStore):
    store.create(make_site("blog"))
    shared, copying = store.watch(initial=True, shared=True), store.watch(initial=True)
    try:
        from_shared, from_copying = await next_event(shared), await next_event(copying)
        listed = store.list()[0][0]
        assert from_shared.site is listed
        assert from_copying.site is not listed and from_copying.site == listed
    finally:
        await shared.aclose()
        await copying.aclose()


async def test_a_watch_keeps_no_record_it_has_handed_out(store: SiteStore):
    # The controller's watch lives as long as the controller: records it held on to would stay in memory
    # beside the store's current ones (the first listing alone is every record).
    names = ("one", "two")
    for name in names:
        store.create(make_site(name))
    events = store.watch(initial=True, statuses=False)
    try:
        assert sorted([(await next_event(events)).name for _ in names]) == sorted(names)
        for name in names:
            changed = store.get(name)
            changed.spec.replicas = 2
            store.update(changed)
        del changed
        assert {(await next_event(events)).type for _ in names} == {"MODIFIED"}
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, Site) and o.name in names]
        assert [site.metadata.generation for site in alive if site.metadata.generation == 1] == []
    finally:
        await events.aclose()
