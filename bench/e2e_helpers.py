"""What the end-to-end benchmarks share: a throwaway Director instance on the Swarm, `director controller`
as a subprocess, HTTP through the edge, and a Docker API client that counts the calls made through it.

Everything a benchmark creates carries `io.director.instance=<its instance>` (Director's own objects do by
construction; the benchmark's own helpers are given it), so one removal by label cleans up all of it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker

from reconcilers.docker_calls import LABEL_INSTANCE
from specs.config import Settings

ROOT = Path(__file__).resolve().parents[1]
# scripts/ is not a package; its cleanup is the one the tests and `make clean` use. The controller runs
# as the Swarm tests run it, from tests/swarm_helpers.py; tests/ goes last so that none of its directories
# can shadow a package of the product.
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.append(str(ROOT / "tests"))

import swarm_helpers  # noqa: E402
from docker_cleanup import remove_labelled  # noqa: E402
from swarm_helpers import free_tcp_port, get  # noqa: E402


@contextmanager
def throwaway_instance(client: docker.DockerClient, image: str, prefix: str = "bench") -> Iterator[Settings]:
    """Settings of a fresh instance (state dir, port, instance name); all of it is removed afterwards."""
    state_dir = Path(tempfile.mkdtemp(prefix="director-bench-"))
    settings = Settings(
        state_dir=state_dir,
        instance=f"{prefix}{secrets.token_hex(3)}",
        http_port=free_tcp_port(),
        edge_image=image,
        site_image=image,
    )
    try:
        yield settings
    finally:
        remove_labelled(client, f"{LABEL_INSTANCE}={settings.instance}")
        shutil.rmtree(state_dir, ignore_errors=True)


class ControllerProcess(swarm_helpers.ControllerProcess):
    """`director controller` as a subprocess over `settings` with `workers` workers (None: its default), and
    none of the tests' short step timeout and backoff, its log in the state dir."""

    def __init__(self, settings: Settings, *, resync_seconds: int = 30, workers: int | None = None) -> None:
        super().__init__(
            settings,
            settings.state_dir / "controller.log",
            resync_seconds=resync_seconds,
            arguments=[] if workers is None else ["--workers", str(workers)],
        )
        self.workers = workers

    def rss_mb(self) -> float:
        assert self.process is not None
        return rss_mb(self.process.pid)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return cpu_seconds(self.process.pid)

    def stop(self, timeout: float = 40) -> None:
        super().stop(timeout)

    def tail(self, lines: int = 20) -> str:
        return super().tail(lines)


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int | str = "self") -> float:
    """User and system CPU seconds a process has used so far."""
    # The fields after the command name, which is in parentheses and may itself hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_status(settings: Settings, host: str, timeout: float = 5.0) -> tuple[int, str]:
    """One GET of `/` through the edge; a refused or broken connection is status 0 with the reason."""
    try:
        return get(settings, host, timeout=timeout)
    except OSError as error:
        return 0, str(error)


def wait_until(check: Callable[[], bool], seconds: float, what: str, poll: float = 0.005) -> float:
    """Seconds until `check` held; raises TimeoutError past `seconds`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise TimeoutError(f"{what}: not done after {seconds:.0f}s")
        time.sleep(poll)
    return time.monotonic() - started


class CountingApi:
    """Docker's low-level API client, counting (with their times) the calls made through it."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self._lock = threading.Lock()
        self.calls: list[tuple[float, str]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._api, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls.append((time.monotonic(), name))
            return attribute(*args, **kwargs)

        return counted

    def between(self, start: float, end: float) -> Counter[str]:
        with self._lock:
            return Counter(name for at, name in self.calls if start <= at <= end)


def counting_client(client: docker.DockerClient) -> tuple[docker.DockerClient, CountingApi]:
    """`client` with its `api` replaced by a counting proxy: the high-level collections (containers,
    services...) call through `client.api`, so every Docker call the controller makes is counted."""
    proxy = CountingApi(client.api)
    client.api = proxy
    return client, proxy
