"""The API server process the tests talk to: the real ASGI app under uvicorn over HTTPS (the certificate the
API server makes in the state dir; plain HTTP where DIRECTOR_API_TLS=off), with a log source that reads
`<state>/test-logs/<site>.log` instead of Docker (the Docker one is tested in test_service_logs.py)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path


class FileLogSource:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def logs(self, site: str, *, follow: bool, tail: int | None) -> FileLogLines:
        path = self.directory / f"{site}.log"
        if not path.exists():
            raise LookupError(f"no log file for {site}")
        return FileLogLines(path, follow, tail)


class FileLogLines:
    """A log file's lines, followed until closed; close() from any thread ends a wait for the next line."""

    def __init__(self, path: Path, follow: bool, tail: int | None) -> None:
        self._closed = threading.Event()
        self._lines = self._read(path, follow, tail)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._lines)

    def close(self) -> None:
        self._closed.set()
        # A generator no thread is running is closed here; one running ends at the event.
        with contextlib.suppress(ValueError):
            self._lines.close()

    def _read(self, path: Path, follow: bool, tail: int | None) -> Iterator[str]:
        with path.open() as handle:
            lines = handle.readlines()
            yield from lines[-tail:] if tail else lines
            while follow and not self._closed.is_set():
                line = handle.readline()
                if line:
                    yield line
                else:
                    self._closed.wait(0.05)


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")
    import django

    django.setup()
    import uvicorn

    from api.logsource import register_log_source
    from orchestrator.api_server import uvicorn_options
    from orchestrator.tls import server_tls
    from ui.asgi import application

    state_dir = Path(os.environ["DIRECTOR_STATE_DIR"])
    register_log_source(FileLogSource(state_dir / "test-logs"))
    # HTTPS unless DIRECTOR_API_TLS=off says plain HTTP on loopback (the fuzzer's server: its subject is
    # what the API answers, and its thousands of requests need no handshake each).
    tls = server_tls(state_dir, "127.0.0.1")
    certificates = {} if tls is None else {"ssl_certfile": str(tls.certfile), "ssl_keyfile": str(tls.keyfile)}
    uvicorn.run(application, host="127.0.0.1", port=port, **certificates, **uvicorn_options())


if __name__ == "__main__":
    main()
