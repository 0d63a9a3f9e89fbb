"""What the fault tests share: a whole Director (API server, controller and edge) over a state directory the
test chooses, a small filesystem of bounded size to put it on, and filling that filesystem to the brim.

The faults are caused for real (a full disk, killed processes, a restarted dockerd); the tests judge Director
by what it serves, what its API and dirctl answer, and what its records and events hold afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from swarm_helpers import ROOT, ControllerProcess, free_tcp_port

from specs.config import Settings, api_ca_path

PYTHON = sys.executable
DIRCTL = Path(PYTHON).with_name("dirctl")
API_START_SECONDS = 60.0


@contextlib.contextmanager
def small_filesystem(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (say "24m") mounted at `mountpoint` for the block; unmounted after, lazily, so that a
    container still holding a bind mount of it cannot keep it busy."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint)], check=True
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(directory: Path) -> Path:
    """A file in `directory` grown until its filesystem refuses another byte (ENOSPC); returns its path."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as handle:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    handle.write(block)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    return filler


@dataclass
class Director:
    """The API server and the controller of one Director over `settings`, and dirctl configured for it."""

    settings: Settings
    controller: ControllerProcess
    api_url: str
    token: str
    dirctl_config: Path
    api: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return dict(os.environ) | {
            "DIRECTOR_STATE_DIR": str(self.settings.state_dir),
            "DIRECTOR_INSTANCE": self.settings.instance,
            "DIRECTOR_HTTP_PORT": str(self.settings.http_port),
            "DIRECTOR_SITES_DOMAIN": self.settings.sites_domain,
            "DIRECTOR_EDGE_IMAGE": self.settings.edge_image,
            "DIRECTOR_SITE_IMAGE": self.settings.site_image,
            "DIRECTOR_API_PORT": self.api_url.rsplit(":", 1)[1],
            "DIRECTOR_CONFIG": str(self.dirctl_config),
            "PYTHONPATH": str(ROOT),
        }

    def client(self) -> httpx.Client:
        """A client over HTTPS trusting the CA the API made in the state directory on its first start."""
        trusted = ssl.create_default_context(cafile=str(api_ca_path(self.settings.state_dir)))
        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            verify=trusted,
        )

    def dirctl(
        self, *arguments: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DIRCTL), *arguments],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=ROOT,
            timeout=timeout,
            check=False,
        )

    def start_api(self) -> None:
        log = (self.settings.state_dir.parent / f"{self.settings.instance}-api.log").open("ab")
        self.api = subprocess.Popen(
            [PYTHON, "-m", "orchestrator.api_server"], env=self.env(), cwd=ROOT, stdout=log, stderr=log
        )

    def stop(self) -> None:
        self.controller.stop()
        if self.api is not None and self.api.poll() is None:
            self.api.terminate()
            try:
                self.api.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.api.kill()
                self.api.wait()


def start_director(settings: Settings, *, controller_arguments: Sequence[str] | None = None) -> Director:
    """The demo admin made (its token written to a dirctl configuration beside the state directory), then the
    API server and the controller started; the caller waits for what it needs to answer."""
    api_url = f"https://127.0.0.1:{free_tcp_port()}"
    config = settings.state_dir.parent / f"{settings.instance}-dirctl.yaml"
    log = settings.state_dir.parent / f"{settings.instance}-controller.log"
    kwargs = {} if controller_arguments is None else {"arguments": controller_arguments}
    controller = ControllerProcess(settings, log, **kwargs)
    director = Director(settings, controller, api_url, "", config)
    subprocess.run(
        [PYTHON, "-m", "orchestrator.api_server", "demo-admin", "--config", str(config)],
        env=director.env(),
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=API_START_SECONDS,
    )
    director.token = str(yaml.safe_load(config.read_text())["token"])
    director.start_api()
    controller.start()
    return director


def api_answers(director: Director) -> bool:
    if not api_ca_path(director.settings.state_dir).exists():
        return False  # the API has not made its certificates yet
    try:
        with director.client() as client:
            return client.get("/apis/director.io/v1/sites").status_code == 200
    except httpx.TransportError:
        return False
