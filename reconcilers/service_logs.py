"""A site's service logs from Docker, for the API's `/logs` (registered by orchestrator/api_server.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator

import docker
from docker.errors import NotFound
from docker.types.daemon import CancellableStream

from reconcilers.docker_calls import engine_unreachable, make_client
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

    def logs(self, site: str, *, follow: bool, tail: int | None) -> _ServiceLogLines:
        try:
            return self._logs(site, follow=follow, tail=tail)
        except Exception as error:
            if engine_unreachable(error):
                raise ConnectionError("the Docker engine is not reachable; try again in a moment") from None
            raise

    def _logs(self, site: str, *, follow: bool, tail: int | None) -> _ServiceLogLines:
        name = self._settings.service_name(site)
        api = self._docker().api
        # docker-py's service_logs hands back a bare generator, which cannot be ended from another thread
        # while one waits in it for the next line: its own request and stream helper, kept with the response
        # (CancellableStream, as docker-py wraps a container's followed logs), can.
        params = {
            "details": False,
            "follow": follow,
            "stdout": True,
            "stderr": True,
            "since": 0,
            "timestamps": False,
            "tail": "all" if tail is None else tail,
        }
        response = api._get(api._url("/services/{0}/logs", name), params=params, stream=True)
        try:
            api._raise_for_status(response)
        except NotFound:
            response.close()
            raise LookupError(f"no service {name} is running") from None
        chunks = api._multiplexed_response_stream_helper(response)
        return _ServiceLogLines(CancellableStream(chunks, response))


class _ServiceLogLines:
    """A service's log as lines; close() shuts the connection to Docker, ending a read that waits for more."""

    def __init__(self, chunks: CancellableStream) -> None:
        self._chunks = chunks
        self._lines = _lines(chunks)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._lines)

    def close(self) -> None:
        self._chunks.close()
        # A generator no thread is running is closed here; one running ends with the connection.
        with contextlib.suppress(ValueError):
            self._lines.close()


def _lines(chunks: Iterator[bytes]) -> Generator[str, None, None]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace") + "\n"
    if pending:
        yield pending.decode(errors="replace") + "\n"
