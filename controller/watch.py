"""The record store's watch as a trigger: which changes of a record deserve a reconcile, and how urgently.

The store reports status writes too, and the controller writes status after every reconcile: a watch
that woke on those would reconcile forever. So each record's metadata is remembered as a fingerprint and
only a change of it wakes the controller; the controller also records the fingerprints of its own
metadata writes (the finalizer) so those do not wake it either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from controller.types import Request
from specs.models import KIND_SITE, RECONCILE_REQUEST_ANNOTATION, Site
from store.records import SiteStore, WatchEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fingerprint:
    uid: str | None
    generation: int | None
    deleting: bool
    finalizers: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, site: Site) -> Fingerprint:
        meta = site.metadata
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
        return Wake("watch: site added", urgent=False)
    if previous == current:
        return None
    if previous.uid != current.uid:
        return Wake("watch: site re-created", urgent=True)
    if current.deleting and not previous.deleting:
        return Wake("watch: deletion requested", urgent=True)
    if previous.generation != current.generation:
        return Wake(f"watch: spec changed to generation {current.generation}", urgent=True)
    if current.reconcile_request != previous.reconcile_request and current.reconcile_request is not None:
        return Wake(f"manual request at {current.reconcile_request}", urgent=True)
    return Wake("watch: metadata changed", urgent=False)


class FingerprintCache:
    def __init__(self) -> None:
        self._fingerprints: dict[str, Fingerprint] = {}

    def swap(self, site: Site) -> tuple[Fingerprint | None, Fingerprint]:
        """Remember the site's fingerprint; return the one remembered before and the new one."""
        previous = self._fingerprints.get(site.name)
        current = Fingerprint.of(site)
        self._fingerprints[site.name] = current
        return previous, current

    def remember(self, site: Site) -> None:
        self._fingerprints[site.name] = Fingerprint.of(site)

    def forget(self, name: str) -> None:
        self._fingerprints.pop(name, None)


UrgentEnqueue = Callable[[Request, str, bool], None]


class StoreWatch:
    """Follows the store and enqueues what changed. The controller restarts it if it fails; each start
    relists every record, and the fingerprints make that relist wake only what changed meanwhile."""

    name = "store-watch"

    def __init__(self, store: SiteStore, cache: FingerprintCache) -> None:
        self._store = store
        self._cache = cache

    async def run(self, enqueue: UrgentEnqueue) -> None:
        async for event in self._store.watch(initial=True):
            self._handle(event, enqueue)

    def _handle(self, event: WatchEvent[Site], enqueue: UrgentEnqueue) -> None:
        request = Request(KIND_SITE, event.name)
        if event.type == "ERROR":
            # A broken record is reported, never acted on: finalizing it would take a live site down.
            reason = event.error.message if event.error is not None else "unknown error"
            log.warning("site %s: its record cannot be read: %s", event.name, reason)
            return
        if event.type == "DELETED" or event.site is None:
            self._cache.forget(event.name)
            enqueue(request, "watch: record removed", False)
            return
        previous, current = self._cache.swap(event.site)
        wake = classify(previous, current)
        if wake is not None:
            enqueue(request, wake.trigger, wake.urgent)
