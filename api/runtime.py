"""The records and the event log this server process works on, opened once from the settings."""

from __future__ import annotations

import threading

from django.conf import settings

from api.auth import Principal
from api.listcache import ListingCache
from api.logsource import LogSource, registered_log_source
from api.sites import SiteService
from store.events import EventLog
from store.records import PlatformStore, SiteStore

_lock = threading.RLock()
_opened: dict[str, SiteStore | PlatformStore | EventLog | ListingCache] = {}


def site_store() -> SiteStore:
    store = _opened.get("store")
    if not isinstance(store, SiteStore):
        with _lock:
            store = _opened.get("store")
            if not isinstance(store, SiteStore):
                store = _opened["store"] = SiteStore(settings.STATE_DIR)
    return store


def platform_store() -> PlatformStore:
    store = _opened.get("platforms")
    if not isinstance(store, PlatformStore):
        with _lock:
            store = _opened.get("platforms")
            if not isinstance(store, PlatformStore):
                store = _opened["platforms"] = PlatformStore(settings.STATE_DIR)
    return store


def event_log() -> EventLog:
    log = _opened.get("events")
    if not isinstance(log, EventLog):
        with _lock:
            log = _opened.get("events")
            if not isinstance(log, EventLog):
                log = _opened["events"] = EventLog(settings.DIRECTOR.events_db)
    return log


def listing_cache() -> ListingCache:
    cache = _opened.get("listing")
    if not isinstance(cache, ListingCache):
        with _lock:
            cache = _opened.get("listing")
            if not isinstance(cache, ListingCache):
                cache = _opened["listing"] = ListingCache(site_store())
    return cache


def site_service(principal: Principal) -> SiteService:
    return SiteService(site_store(), principal, listing_cache())


def log_source() -> LogSource | None:
    return registered_log_source()


def warm_caches() -> None:
    """Parse every record once at start-up, so the first `dirctl get sites` is as fast as the next ones."""
    listing_cache().sites()
