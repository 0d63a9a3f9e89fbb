"""Director whole, for the SSH shell's tests: a controller with its edge, the API (with the Docker terminal
backend, as `director run` composes it) and `director shell-server`, each its own process, over one test
instance; users alice, bob and admin with passwords and SSH keys; and Debian's OpenSSH client.

One set of processes serves every test of this directory; the API and the shell server can be killed and
started again (the crash tests).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import docker
import pytest
from docker_cleanup import INSTANCE_LABEL, remove_labelled
from shell_helpers import (
    DIRECTOR,
    EDGE_START_SECONDS,
    USERS,
    Service,
    ShellDirector,
    make_key,
    make_users,
    site_document,
    wait_for_api,
    wait_for_port,
)
from swarm_helpers import ControllerProcess, eventually, free_tcp_port, get

from specs.config import Settings


@pytest.fixture(scope="package")
def director(
    test_run, base_image: str, swarm: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ShellDirector]:
    instance = test_run.new_instance()
    state_dir = tmp_path_factory.mktemp(instance)
    home = tmp_path_factory.mktemp(f"{instance}-ssh")
    settings = Settings(
        instance=instance,
        state_dir=state_dir,
        http_port=free_tcp_port(),
        edge_image=base_image,
        site_image=base_image,
    )
    api_port, ssh_port = free_tcp_port(), free_tcp_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = dict(os.environ) | {
        "DIRECTOR_STATE_DIR": str(state_dir),
        "DIRECTOR_INSTANCE": instance,
        "DIRECTOR_HTTP_PORT": str(settings.http_port),
        "DIRECTOR_EDGE_IMAGE": base_image,
        "DIRECTOR_SITE_IMAGE": base_image,
        "DIRECTOR_API_PORT": str(api_port),
        "DIRECTOR_API_URL": api_url,
        # Plain HTTP on loopback: the shell server, not the API's TLS, is what these tests are about.
        "DIRECTOR_API_TLS": "off",
        "DIRECTOR_SSH_PORT": str(ssh_port),
        "DIRECTOR_SSH_BIND": "127.0.0.1",
        "DIRECTOR_RESYNC_SECONDS": "10",
        "DJANGO_SETTINGS_MODULE": "ui.settings",
    }
    controller = ControllerProcess(settings, state_dir.parent / f"{instance}-controller.log")
    controller.start()
    api = Service(
        [sys.executable, "-m", "orchestrator.api_server", "serve"],
        env,
        state_dir.parent / f"{instance}-api.log",
    )
    shell = Service([str(DIRECTOR), "shell-server"], env, state_dir.parent / f"{instance}-shell.log")
    shell_director: ShellDirector | None = None
    try:
        tokens = make_users(env)
        api.start()
        wait_for_api(api_url, api)
        shell.start()
        wait_for_port(ssh_port, shell)
        keys = {name: make_key(home, name) for name in USERS}
        shell_director = ShellDirector(
            settings, api_url, ssh_port, tokens, keys, api, shell, controller, swarm, home, env
        )
        for name in USERS:
            with shell_director.http(name) as http:
                added = http.post(
                    "/apis/auth.director.io/v1/sshkeys",
                    json={"publicKey": keys[name].with_suffix(".pub").read_text()},
                )
                assert added.status_code == 201, added.text
        eventually(
            lambda: get(settings, "nobody.example.org")[0] == 404, EDGE_START_SECONDS, "the edge", controller
        )
        yield shell_director
    finally:
        shell.stop()
        api.stop()
        controller.stop()
        remove_labelled(swarm, f"{INSTANCE_LABEL}={instance}")


@pytest.fixture(scope="package")
def sites(director: ShellDirector) -> ShellDirector:
    """alice's hello (static) and dyn (dynamic), bob's bobsite, alice's shut (disabled by the admin)."""
    with director.http("admin") as admin:
        for document in (
            site_document("hello", ["alice"]),
            site_document("dyn", ["alice"], type="dynamic", image="director-local/site:latest"),
            site_document("bobsite", ["bob"]),
            site_document("shut", ["alice"], availability="disabled"),
        ):
            created = admin.post("/apis/director.io/v1/sites", json=document)
            assert created.status_code == 201, created.text
    director.wait_ready("hello", "dyn", "bobsite")
    eventually(
        lambda: (director.settings.sites_dir / "shut").exists(), 120, "shut's directory", director.controller
    )
    return director
