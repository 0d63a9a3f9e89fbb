"""What the end-to-end benchmarks share: a throwaway Director instance on the Swarm, `director controller`
as a subprocess, HTTP through the edge, and a Docker API client that counts the calls made through it.

Everything a benchmark creates carries `io.director.instance=<its instance>` (Director's own objects do by
construction; the benchmark's own helpers are given it), so one removal by label cleans up all of it.
"""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import socket
import subprocess
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
DIRECTOR = Path(sys.executable).with_name("director")
# scripts/ is not a package; its cleanup is the one the tests and `make clean` use.
sys.path.insert(0, str(ROOT / "scripts"))

from docker_cleanup import remove_labelled  # noqa: E402


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("0.0.0.0", 0))
        port: int = probe.getsockname()[1]
        return port


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


class ControllerProcess:
    """`director controller` as a subprocess over `settings`, its log in the state dir."""

    def __init__(self, settings: Settings, *, resync_seconds: int = 30, workers: int = 16) -> None:
        self.settings = settings
        self.resync_seconds = resync_seconds
        self.workers = workers
        self.log = settings.state_dir / "controller.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = os.environ | {
            "DIRECTOR_STATE_DIR": str(self.settings.state_dir),
            "DIRECTOR_INSTANCE": self.settings.instance,
            "DIRECTOR_HTTP_PORT": str(self.settings.http_port),
            "DIRECTOR_SITES_DOMAIN": self.settings.sites_domain,
            "DIRECTOR_EDGE_IMAGE": self.settings.edge_image,
            "DIRECTOR_SITE_IMAGE": self.settings.site_image,
            "DIRECTOR_RESYNC_SECONDS": str(self.resync_seconds),
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(DIRECTOR), "controller", "--workers", str(self.workers)],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )

    def rss_mb(self) -> float:
        assert self.process is not None
        return rss_mb(self.process.pid)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def http_status(settings: Settings, host: str, timeout: float = 5.0) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", settings.http_port, timeout=timeout)
    try:
        connection.request("GET", "/", headers={"Host": host, "Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError as error:
        return 0, str(error)
    finally:
        connection.close()


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
