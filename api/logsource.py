"""Where `/logs` reads a site's service logs from.

The API never talks to Docker: the composition root (orchestrator/api_server.py) registers the
Docker-backed source from reconcilers/service_logs.py at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class LogSource(Protocol):
    def logs(self, site: str, *, follow: bool, tail: int | None) -> Iterator[str]:
        """Lines (each ending in a newline) of the site's service, oldest first; with follow, until closed.

        Raises LookupError when the site has no running service to read from.
        """


_registered: list[LogSource] = []


def register_log_source(source: LogSource | None) -> None:
    _registered.clear()
    if source is not None:
        _registered.append(source)


def registered_log_source() -> LogSource | None:
    return _registered[0] if _registered else None
