"""The API process starts and serves with the Docker engine out of reach (dockerd restarting, its socket
gone): only what needs Docker (logs, terminals) says so, plainly, and the rest works."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from swarm_helpers import eventually

from reconcilers.files import FIRST_SITE_UID
from reconcilers.service_logs import DockerServiceLogs
from reconcilers.terminals import UNREACHABLE, DockerTerminals
from specs.config import Settings
from specs.models import Site
from specs.terminal import Refused, TerminalRequest

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 120.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def no_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a Director whose Docker socket answers nothing."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DIRECTOR_", "DJANGO_"))}
    environment |= {
        "DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}",
        "DIRECTOR_STATE_DIR": str(tmp_path / "state"),
        "DIRECTOR_API_PORT": str(_free_port()),
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config"),
    }
    monkeypatch.setenv("DOCKER_HOST", environment["DOCKER_HOST"])
    return environment


def test_the_api_server_serves_without_docker_and_logs_say_why_they_cannot(
    no_docker: dict[str, str], tmp_path
):
    config = tmp_path / "dirctl.yaml"
    subprocess.run(
        [sys.executable, "-m", "orchestrator.api_server", "demo-admin", "--config", str(config)],
        cwd=REPO,
        env=no_docker,
        check=True,
        capture_output=True,
        timeout=START_SECONDS,
    )
    log = tmp_path / "api.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.api_server", "serve"],
            cwd=REPO,
            env=no_docker,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        settings = yaml.safe_load(config.read_text())
        ca = Path(no_docker["DIRECTOR_STATE_DIR"]) / "tls" / "ca.crt"
        with httpx.Client(
            base_url=settings["server"],
            headers={"Authorization": f"Bearer {settings['token']}"},
            verify=str(ca) if ca.exists() else True,
            timeout=30,
        ) as client:

            def answers() -> bool:
                assert server.poll() is None, f"the API server exited without Docker:\n{log.read_text()}"
                try:
                    return client.get("/apis/director.io/v1/sites").status_code == 200
                except httpx.TransportError:
                    return False

            eventually(answers, START_SECONDS, "the API to answer")

            applied = client.patch(
                "/apis/director.io/v1/sites/nodocker?fieldManager=cli",
                headers={"Content-Type": "application/apply-patch+yaml"},
                content=yaml.safe_dump(
                    {
                        "apiVersion": "director.io/v1",
                        "kind": "Site",
                        "metadata": {"name": "nodocker"},
                        "spec": {"type": "dynamic", "owners": ["admin"], "image": "python:3"},
                    }
                ),
            )
            assert applied.status_code == 201, applied.text
            logs = client.get("/apis/director.io/v1/sites/nodocker/logs")
            assert logs.status_code == 503, logs.text
            assert "Docker engine is not reachable" in logs.json()["message"]
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_docker_log_source_says_docker_cannot_be_reached(no_docker: dict[str, str]):
    with pytest.raises(ConnectionError, match="Docker engine is not reachable"):
        DockerServiceLogs(Settings.from_env()).logs("any", follow=False, tail=None)


def test_a_terminal_is_refused_plainly_while_docker_cannot_be_reached(
    no_docker: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DIRECTOR_STATE_DIR", no_docker["DIRECTOR_STATE_DIR"])
    settings = Settings.from_env()
    terminals = DockerTerminals(settings)  # made without Docker: the client comes at the first use
    site_dir = settings.sites_dir / "nodocker"
    site_dir.mkdir(parents=True)
    os.chown(site_dir, FIRST_SITE_UID, FIRST_SITE_UID)
    request = TerminalRequest(
        session_id="s1",
        site=Site.model_validate({"metadata": {"name": "nodocker"}, "spec": {"owners": ["admin"]}}),
        username="admin",
        kind="shell",
    )
    with pytest.raises(Refused) as refused:
        asyncio.run(terminals.open(request))
    assert str(refused.value) == UNREACHABLE
