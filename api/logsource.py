"""Where `/logs` reads a site's service logs from.

The API never talks to Docker: the composition root (orchestrator/api_server.py) registers the
Docker-backed source from reconcilers/service_logs.py at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class LogLines(Iterator[str], Protocol):
    def close(self) -> None:
        """End the lines at once, from any thread and without blocking: a reader waiting on another thread
        for the next line gets none. A followed log of a quiet site would otherwise hold that thread (and
        the connection behind it) until the site printed again, long after its client left."""


class LogSource(Protocol):
    def logs(self, site: str, *, follow: bool, tail: int | None) -> LogLines:
        """Lines (each ending in a newline) of the site's service, oldest first; with follow, until closed.

        Raises LookupError when the site has no running service to read from, and ConnectionError (its
        message fit for a user) when the logs cannot be reached now.
        """


_registered: list[LogSource] = []


def register_log_source(source: LogSource | None) -> None:
    _registered.clear()
    if source is not None:
        _registered.append(source)


def registered_log_source() -> LogSource | None:
    return _registered[0] if _registered else None
