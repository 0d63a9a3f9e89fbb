"""Every site of the store, held by the API process and kept current by events, so that a list costs no disk.

Reading 10,000 records from the store costs 20,000 stat calls and a sort (about 50 ms), and a busy API lists
often. One cache per API process holds every record instead, and two feeds change it:
- the store's watch (SiteStore.watch, run by a thread of its own with its own event loop) reports what any
  process writes, hand edits included, within its debounce (about 50 ms);
- this process's own writes, applied before the write returns (SiteStore.add_write_listener), so a client
  that writes and then lists sees its write.

A report says only which record changed: the record is then read as it is on disk (the store's parse cache
makes that two stat calls), under the cache's lock. Two reports of one record applied in either order
therefore leave the newer state, and a report that arrives late can never bring back an older one.

The watch reports a change against what it knows (its listing, and what it has reported since), so it
never reports a record created and removed between two of its looks: one this process wrote and another
removed at once would stay listed. The names the cache holds and the watch does not know are therefore read
again before each list (they are this process's writes of the last moments: usually none).

The cache serves lists only once it is known to miss nothing: once the watch has taken its own listing of
the store (it says so, SiteStore.watch's on_listed), the cache loads every record anew, and from then on
every change reaches it as an event. Until then, and whenever the watch has failed (a new one is started),
a list is read from the store, as correct as ever and only slower.

Watch streams of the API (api/streams.py) subscribe here rather than each running a watch of the store: a
subscriber receives the records as they are now and then every change, in order, with nothing missed between
the two.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from specs.models import Site
from store.records import RecordError, SiteStore, WatchEvent

log = logging.getLogger("api")

# How soon a failed watch is started again; meanwhile lists are read from the store.
_RETRY_SECONDS = 1.0
# The watch reports what other processes wrote once the files have been quiet this long (and within 50 ms
# in any case): this process's own writes reach the cache at once through the write listener, so the
# watch need not hurry, and a busy API (every write of its own is reported by the watch too) then takes a
# burst of writes in one wake-up rather than one by one, about a tenth of an apply's CPU time.
_WATCH_QUIET_MS = 50

ChangeType = Literal["ADDED", "MODIFIED", "DELETED", "ERROR"]


@dataclass(frozen=True)
class Change:
    """One change of the cached records, as a watch stream reports it. `site` is the shared cached object
    (change a copy, never it); `error` says why a record that cannot be read cannot."""

    type: ChangeType
    name: str
    site: Site | None
    error: RecordError | None = None


@dataclass(frozen=True)
class Snapshot:
    """What a new subscriber starts from: every record as it is when the subscription begins."""

    sites: list[Site]
    errors: list[RecordError]


Deliver = Callable[[Change | None], None]
# A subscriber's key (to unsubscribe) and where it starts from.
Subscription = tuple[int, Snapshot]


class ListingCache:
    """Every site of one store for this process's lists and watch streams; see the module's docstring."""

    def __init__(self, store: SiteStore, *, resync_seconds: float = 10.0) -> None:
        self._store = store
        self._resync_seconds = resync_seconds
        self._lock = threading.Lock()
        self._sites: dict[str, Site] = {}
        self._errors: dict[str, RecordError] = {}
        # The names of _sites in order, kept sorted as names come and go: a list is then one pass.
        self._names: list[str] = []
        # The sorted list last handed out; None after a change. Callers share it and must not change it.
        self._ordered: list[Site] | None = []
        # True while every change of the store is known to reach the cache (see the module's docstring).
        self._synced = False
        # The names the running watch knows (its listing, and what it has reported since), and the cached
        # names it does not, read again before a list.
        self._watched: set[str] = set()
        self._unconfirmed: set[str] = set()
        self._subscribers: dict[int, Deliver] = {}
        self._next_subscriber = 0
        self._started = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._feed_loop: asyncio.AbstractEventLoop | None = None
        self._feed_task: asyncio.Task[None] | None = None
        store.add_write_listener(self._written)

    # ---- reading -------------------------------------------------------------------------------------

    def sites(self) -> list[Site]:
        """Every readable site, sorted by name. The list and its Sites are shared: callers must not change
        them."""
        self._start()
        with self._lock:
            self._confirm()
            if not self._synced:
                self._reload()
            if self._ordered is None:
                self._ordered = [self._sites[name] for name in self._names]
            return self._ordered

    @property
    def synced(self) -> bool:
        """Whether lists are served from the cache (rather than read from the store)."""
        with self._lock:
            return self._synced

    def subscribe(self, deliver: Deliver) -> Subscription | None:
        """Every record now, and from then on each change passed to `deliver`, in order; `deliver(None)`
        once when changes can no longer be followed (the store's watch failed), which ends the stream.
        `deliver` is called under the cache's lock: it must only hand the change on (a thread-safe queue).
        None when the cache is not following the store yet: the caller watches the store itself."""
        self._start()
        with self._lock:
            self._confirm()
            if not self._synced:
                return None
            key = self._next_subscriber
            self._next_subscriber += 1
            self._subscribers[key] = deliver
            if self._ordered is None:
                self._ordered = [self._sites[name] for name in self._names]
            return key, Snapshot(self._ordered, list(self._errors.values()))

    def unsubscribe(self, key: int) -> None:
        with self._lock:
            self._subscribers.pop(key, None)

    # ---- changing ------------------------------------------------------------------------------------

    def _reload(self) -> None:
        """Every record read from the store (under the lock)."""
        listed, errors = self._store.list()
        ordered = self._ordered
        unchanged = (
            ordered is not None
            and len(ordered) == len(listed)
            and all(old is new for old, new in zip(ordered, listed, strict=True))
        )
        self._sites = {site.name: site for site in listed}
        self._names = [site.name for site in listed]
        self._errors = {error.name: error for error in errors}
        if not unchanged:
            self._ordered = listed

    def _written(self, name: str) -> None:
        """A write of this process, reported by the store before the write returns."""
        with self._lock:
            if self._synced:
                self._refresh(name)

    def _listed(self, names: set[str]) -> None:
        """The watch has taken its listing (`names`), against which it reports every later change."""
        with self._lock:
            self._watched = names
            self._resync()

    def _watched_change(self, event: WatchEvent[Site]) -> None:
        with self._lock:
            if event.type == "DELETED":
                self._watched.discard(event.name)
            else:
                self._watched.add(event.name)
            if self._synced:
                self._refresh(event.name)
            else:
                self._resync()  # after a failed read: the watch still runs, and _watched is its memory

    def _resync(self) -> None:
        """Load every record anew and serve lists from the cache again (under the lock): what the watch
        reports from now on is every change after this listing."""
        self._reload()
        self._synced = True
        self._unconfirmed = (self._sites.keys() | self._errors.keys()) - self._watched

    def _confirm(self) -> None:
        """Read again the cached names the watch has not reported (under the lock)."""
        for name in list(self._unconfirmed):
            if not self._synced:
                return
            self._refresh(name)

    def _refresh(self, name: str) -> None:
        """Bring one record up to date from the disk (under the lock, while synced)."""
        try:
            entry = self._store.current(name)
        except FileNotFoundError:
            entry = None  # removed between the stat and the read: the removal is the news
        except Exception:
            # Whatever it is, a cache that may have missed a change must not serve lists.
            log.exception("the listing cache could not read site %r; listing from the store", name)
            self._unsync()
            return
        self._apply(name, entry)
        if entry is not None and name not in self._watched:
            self._unconfirmed.add(name)
        else:
            self._unconfirmed.discard(name)

    def _apply(self, name: str, entry: Site | RecordError | None) -> None:
        old = self._sites.get(name)
        if isinstance(entry, Site):
            if old is entry:
                return
            self._sites[name] = entry
            self._errors.pop(name, None)
            if old is None:
                bisect.insort(self._names, name)
            change = Change("MODIFIED" if old is not None else "ADDED", name, entry)
        else:
            if old is None and entry is self._errors.get(name):
                return
            if old is not None:
                del self._sites[name]
                del self._names[bisect.bisect_left(self._names, name)]
            if entry is None:
                self._errors.pop(name, None)
                change = Change("DELETED", name, None)
            else:
                self._errors[name] = entry
                change = Change("ERROR", name, None, entry)
        self._ordered = None
        for deliver in self._subscribers.values():
            deliver(change)

    def _unsync(self) -> None:
        """Stop serving lists from the cache (under the lock); subscribers' streams end."""
        self._synced = False
        self._unconfirmed.clear()
        for deliver in self._subscribers.values():
            deliver(None)
        self._subscribers.clear()

    # ---- the store's watch ---------------------------------------------------------------------------

    def _start(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started:
                return
            self._started = True
            self._thread = threading.Thread(target=self._follow_forever, name="listing-cache", daemon=True)
            self._thread.start()

    def _follow_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                asyncio.run(self._follow())
            except asyncio.CancelledError:
                pass  # close() stops the watch so
            except Exception:
                log.exception("the site watch of the listing cache failed; listing from the store meanwhile")
            with self._lock:
                self._unsync()
            self._stopping.wait(_RETRY_SECONDS)

    async def _follow(self) -> None:
        self._feed_loop = asyncio.get_running_loop()
        self._feed_task = asyncio.current_task()
        if self._stopping.is_set():
            return
        events = self._store.watch(
            initial=False,
            resync_seconds=self._resync_seconds,
            on_listed=self._listed,
            quiet_ms=_WATCH_QUIET_MS,
            shared=True,  # the cache reads each changed record from the store itself: no copy wanted
        )
        try:
            async for event in events:
                self._watched_change(event)
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stop following the store (tests; a server process simply exits)."""
        self._stopping.set()
        loop, task = self._feed_loop, self._feed_task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            self._unsync()

    def __enter__(self) -> ListingCache:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Subscriber:
    """The changes one watch stream has yet to send, handed from the cache's threads to the stream's loop.

    Changes of one site not sent yet are merged into one, as a watch of the store reports the difference
    between two looks: a stream that cannot send (a client that stopped reading) holds at most one change
    per site, never a growing backlog.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: dict[str, Change] = {}
        self._ended = False
        self._arrived = asyncio.Event()

    def deliver(self, change: Change | None) -> None:
        """Called by the cache, from any thread: hand the change to the loop, in the cache's order."""
        with contextlib.suppress(RuntimeError):  # the loop has ended, and the stream with it
            self._loop.call_soon_threadsafe(self._add, change)

    def _add(self, change: Change | None) -> None:
        if change is None:
            self._ended = True
        else:
            earlier = self._pending.pop(change.name, None)
            merged = _merged(earlier, change) if earlier is not None else change
            if merged is not None:
                self._pending[change.name] = merged
        self._arrived.set()

    async def next(self) -> Change | None:
        """The next change; None when the cache stopped following the store (the stream ends)."""
        while not self._pending:
            if self._ended:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        name = next(iter(self._pending))
        return self._pending.pop(name)


def _merged(earlier: Change, later: Change) -> Change | None:
    """Two changes of one site as one: what a look before the first and one after the second would tell."""
    if earlier.type == "ADDED" and later.type == "DELETED":
        return None  # came and went unseen
    if earlier.type == "ADDED" and later.type == "MODIFIED":
        return Change("ADDED", later.name, later.site)
    if earlier.type == "DELETED" and later.type == "ADDED":
        return Change("MODIFIED", later.name, later.site)
    return later
