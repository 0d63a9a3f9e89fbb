"""A listing of every site, reused while the record directories are unchanged.

Listing 10,000 records costs the store 20,000 stat calls (about 50 ms); a busy API lists often. Every
write of a spec or status record renames a file into its directory, which moves the directory's mtime, so
an unchanged pair of directory mtimes means an unchanged listing. Two guards keep it exact: a directory
changed in the last moments is not trusted (file times are coarse, a change in the same tick would look
like none), and a listing is reused for a couple of seconds at most (a hand edit in place, which moves no
directory time, is seen after that).
"""

from __future__ import annotations

import os
import threading
import time

from specs.models import Site
from store.records import SiteStore

_MAX_AGE_SECONDS = 2.0
_SETTLED_SECONDS = 0.05


class ListingCache:
    def __init__(self, store: SiteStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._taken = 0.0
        self._sites: list[Site] = []

    def _directory_times(self) -> tuple[int, int] | None:
        try:
            return (os.stat(self._store.specs_dir).st_mtime_ns, os.stat(self._store.status_dir).st_mtime_ns)
        except FileNotFoundError:
            return None

    def sites(self) -> list[Site]:
        """Every readable site, sorted by name. The Site objects are shared: callers must not change them."""
        key = self._directory_times()
        with self._lock:
            if key is not None and key == self._key and time.monotonic() - self._taken < _MAX_AGE_SECONDS:
                return self._sites
        taken = time.monotonic()
        sites, _errors = self._store.list()
        settled = key is not None and all(time.time() - ns / 1e9 > _SETTLED_SECONDS for ns in key)
        with self._lock:
            self._key, self._taken, self._sites = (key, taken, sites) if settled else (None, 0.0, [])
        return sites
