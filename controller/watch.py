"""The record store's watch as a trigger: which changes of a record deserve a reconcile, and how urgently.

The controller writes a status after reconciles, and a watch that woke on those would reconcile forever:
it watches the spec records alone (the store then neither wakes it nor parses anything on a status
write). A spec record changes for more than its spec, so each record's metadata is remembered as a
fingerprint and only a change of it wakes the controller; the controller also records the fingerprints
of its own metadata writes (the finalizer) so those do not wake it either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.types import Request
from specs.models import RECONCILE_REQUEST_ANNOTATION, Resource
from store.records import RecordStore, WatchEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    uid: str | None
    generation: int | None
    deleting: bool
    finalizers: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, record: Resource) -> Fingerprint:
        meta = record.metadata
        return cls(
            uid=meta.uid,
            generation=meta.generation,
            deleting=meta.deletion_timestamp is not None,
            finalizers=tuple(meta.finalizers),
            labels=tuple(sorted(meta.labels.items())),
            annotations=tuple(sorted(meta.annotations.items())),
        )

    @property
    def reconcile_request(self) -> str | None:
        return dict(self.annotations).get(RECONCILE_REQUEST_ANNOTATION)


@dataclass(frozen=True)
class Wake:
    trigger: str
    # Bypasses backoff and lifts a stall: spec, identity or deletion changed, or a person asked.
    urgent: bool


def classify(previous: Fingerprint | None, current: Fingerprint) -> Wake | None:
    """Why a record that now has `current` metadata needs a reconcile, or None for a status-only change."""
    if previous is None:
        return Wake("watch: record added", urgent=False)
    if previous == current:
        return None
    if previous.uid != current.uid:
        return Wake("watch: record re-created", urgent=True)
    if current.deleting and not previous.deleting:
        return Wake("watch: deletion requested", urgent=True)
    if previous.generation != current.generation:
        return Wake(f"watch: spec changed to generation {current.generation}", urgent=True)
    if current.reconcile_request != previous.reconcile_request and current.reconcile_request is not None:
        return Wake(f"manual request at {current.reconcile_request}", urgent=True)
    return Wake("watch: metadata changed", urgent=False)


class FingerprintCache:
    """The last metadata seen of each record of one kind."""

    def __init__(self) -> None:
        self._fingerprints: dict[str, Fingerprint] = {}

    def swap(self, record: Resource) -> tuple[Fingerprint | None, Fingerprint]:
        """Remember the record's fingerprint; return the one remembered before and the new one."""
        previous = self._fingerprints.get(record.name)
        current = Fingerprint.of(record)
        self._fingerprints[record.name] = current
        return previous, current

    def remember(self, record: Resource) -> None:
        self._fingerprints[record.name] = Fingerprint.of(record)

    def forget(self, name: str) -> None:
        self._fingerprints.pop(name, None)


UrgentEnqueue = Callable[[Request, str, bool], None]


class StoreWatch:
    """Follows one kind's records and enqueues what changed. The controller restarts it if it fails; each
    start relists every record, and the fingerprints make that relist wake only what changed meanwhile."""

    def __init__(self, store: RecordStore[Any], cache: FingerprintCache) -> None:
        self._store = store
        self._cache = cache
        self._kind = store.kind.kind
        self.name = f"watch-{store.kind.plural}"

    async def run(self, enqueue: UrgentEnqueue) -> None:
        # The records come as the store shares them: only their metadata is read here.
        async for event in self._store.watch(initial=True, statuses=False):
            self._handle(event, enqueue)

    def _handle(self, event: WatchEvent[Any], enqueue: UrgentEnqueue) -> None:
        request = Request(self._kind, event.name)
        if event.type == "ERROR":
            # A broken record is reported, never acted on: finalizing it would take a live site down.
            reason = event.error.message if event.error is not None else "unknown error"
            log.warning("%s %s: its record cannot be read: %s", self._kind, event.name, reason)
            return
        if event.type == "DELETED" or event.site is None:
            self._cache.forget(event.name)
            enqueue(request, "watch: record removed", False)
            return
        previous, current = self._cache.swap(event.site)
        wake = classify(previous, current)
        if wake is not None:
            enqueue(request, wake.trigger, wake.urgent)
