"""The controller's status and finalizer writes, group-committed over a real record store: what many
reconciles write at once reaches the store as few locked writes, and each caller hears of its own record."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from controller.types import FINALIZER
from controller.writes import RecordWrites
from specs.models import Model, ObjectMeta, Site, SiteSpec, SiteStatus
from store.records import NotFound, SiteStore, StoreError

DEADLINE = 30.0


class CountingStore(SiteStore):
    """A real store that counts its group writes."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.status_writes = 0
        self.finalizer_writes = 0

    def write_statuses(
        self, statuses: Mapping[str, Model], *, handed_over: bool = False
    ) -> dict[str, StoreError | None]:
        self.status_writes += 1
        return super().write_statuses(statuses, handed_over=handed_over)

    def add_finalizers(self, names: Sequence[str], finalizer: str) -> dict[str, Site | StoreError]:
        self.finalizer_writes += 1
        return super().add_finalizers(names, finalizer)


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    made = CountingStore(tmp_path / "state")
    for index in range(40):
        made.create(Site(metadata=ObjectMeta(name=f"site-{index}"), spec=SiteSpec()))
    return made


async def test_a_burst_of_status_writes_is_a_few_store_writes(store: CountingStore):
    writes = RecordWrites(store, FINALIZER, timeout=DEADLINE)
    names = [f"site-{index}" for index in range(40)]
    await asyncio.gather(
        *(writes.write_status(name, SiteStatus(observed_generation=1, urls=[name])) for name in names)
    )
    assert 1 <= store.status_writes <= 2
    for name in names:
        status = store.get(name).status
        assert status is not None and status.urls == [name]


async def test_a_burst_of_finalizers_is_a_few_store_writes(store: CountingStore):
    writes = RecordWrites(store, FINALIZER, timeout=DEADLINE)
    names = [f"site-{index}" for index in range(40)]
    records = await asyncio.gather(*(writes.add_finalizer(name) for name in names))
    assert 1 <= store.finalizer_writes <= 2
    assert [record.name for record in records] == names
    assert all(store.get(name).metadata.finalizers == [FINALIZER] for name in names)


async def test_each_caller_hears_of_its_own_record_only(store: CountingStore):
    writes = RecordWrites(store, FINALIZER, timeout=DEADLINE)
    written, missing = await asyncio.gather(
        writes.write_status("site-1", SiteStatus(observed_generation=1)),
        writes.write_status("no-such-site", SiteStatus(observed_generation=1)),
        return_exceptions=True,
    )
    assert written is None
    assert isinstance(missing, NotFound)
    added, gone = await asyncio.gather(
        writes.add_finalizer("site-2"), writes.add_finalizer("no-such-site"), return_exceptions=True
    )
    assert isinstance(added, Site) and FINALIZER in added.metadata.finalizers
    assert isinstance(gone, NotFound)
