"""A site's service logs from Docker, for the API's `/logs` (registered by orchestrator/api_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import docker
from docker.errors import NotFound

from reconcilers.docker_calls import make_client
from specs.config import Settings


class DockerServiceLogs:
    def __init__(self, settings: Settings, client: docker.DockerClient | None = None) -> None:
        self._settings = settings
        self._client = client

    def _docker(self) -> docker.DockerClient:
        # Made at the first request: the API starts without Docker, and only /logs needs it.
        if self._client is None:
            self._client = make_client()
        return self._client

    def logs(self, site: str, *, follow: bool, tail: int | None) -> Iterator[str]:
        name = self._settings.service_name(site)
        try:
            chunks = self._docker().api.service_logs(
                name, stdout=True, stderr=True, follow=follow, tail="all" if tail is None else tail
            )
        except NotFound:
            raise LookupError(f"no service {name} is running") from None
        return _lines(chunks)


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace") + "\n"
    if pending:
        yield pending.decode(errors="replace") + "\n"
