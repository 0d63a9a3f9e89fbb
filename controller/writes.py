"""The controller's own writes to a kind's records (statuses, its finalizer), group-committed.

Every write to the store takes the state directory's write lock and waits for its file to reach the disk;
one at a time, a burst of reconciles (a controller starting over thousands of records) queues on that lock
and pays a whole journal commit per record. Here the writes that arrive together, or while the previous
group is being written, go to the store as one locked write: one counter advance, their files synced
together. A caller still hears only of its own record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import partial
from typing import Generic, TypeVar

from controller.batcher import Batcher
from specs.models import Model, Resource
from store.records import RecordStore, StoreError

R = TypeVar("R", bound=Resource)


class RecordWrites(Generic[R]):
    def __init__(self, records: RecordStore[R], finalizer: str, *, timeout: float) -> None:
        self._records = records
        self._finalizer = finalizer
        self._timeout = timeout
        self._statuses: Batcher[str, Model, StoreError | None] = Batcher(self._write_statuses, 0.0)
        self._finalizers: Batcher[str, None, R | StoreError] = Batcher(self._add_finalizers, 0.0)

    async def write_status(self, name: str, status: Model) -> None:
        """Write the record's status; raises what the store said of this record (NotFound, OSError...)."""
        failed = await self._statuses.submit(name, status, self._timeout)
        if failed is not None:
            raise failed

    async def add_finalizer(self, name: str) -> R:
        """The record with the controller's finalizer; raises NotFound or BeingDeleted as the store does."""
        added = await self._finalizers.submit(name, None, self._timeout)
        if isinstance(added, StoreError):
            raise added
        return added

    async def _write_statuses(self, batch: dict[str, Model]) -> Mapping[str, StoreError | None]:
        # The runtime makes each status from validated parts and never changes one afterwards: validating it
        # again in the store would be a second validation of every status.
        return await asyncio.to_thread(partial(self._records.write_statuses, batch, handed_over=True))

    async def _add_finalizers(self, batch: dict[str, None]) -> Mapping[str, R | StoreError]:
        return await asyncio.to_thread(self._records.add_finalizers, list(batch), self._finalizer)
