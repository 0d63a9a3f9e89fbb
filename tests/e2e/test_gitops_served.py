"""GitOps end to end: a real API server process, a real `director controller` with its edge on the Swarm,
and a git repository; what the repository says is served through the edge, and a webhook makes a push served
at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from docker_cleanup import INSTANCE_LABEL, remove_labelled
from git_servers import Repo, site_yaml
from swarm_helpers import ControllerProcess, eventually, free_tcp_port, get, host_of, serves

from specs.config import Settings
from specs.gitsource import GITSOURCE_LABEL
from store.records import NotFound, SiteStore

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = "/apis/director.io/v1/gitsources"
SECRETS = "/apis/director.io/v1/secrets"


@dataclass
class Director:
    settings: Settings
    url: str
    token: str
    controller: ControllerProcess

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)


@pytest.fixture(scope="module")
def director(test_run, base_image, swarm, tmp_path_factory) -> Iterator[Director]:
    instance = test_run.new_instance()
    state = tmp_path_factory.mktemp(instance)
    settings = Settings(
        instance=instance,
        state_dir=state,
        http_port=free_tcp_port(),
        edge_image=base_image,
        site_image=base_image,
    )
    port = free_tcp_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTOR_")} | {
        "DIRECTOR_STATE_DIR": str(state),
        "DIRECTOR_API_PORT": str(port),
        "DIRECTOR_INSTANCE": instance,
        # Plain HTTP on loopback (DIRECTOR_API_TLS=off): the controller's own client is what is tested here.
        "DIRECTOR_API_TLS": "off",
    }
    log = (state / "api.log").open("ab")
    api = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.api_server"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    controller = ControllerProcess(
        settings, state / "controller.log", env={"DIRECTOR_API_URL": f"http://127.0.0.1:{port}"}
    )
    try:
        url = f"http://127.0.0.1:{port}"
        eventually(lambda: _answers(f"{url}/apis"), 60, "the API to answer")
        config = state / "dirctl.yaml"
        subprocess.run(
            [sys.executable, "-m", "orchestrator.api_server", "demo-admin", "--config", str(config)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        token = yaml.safe_load(config.read_text())["token"]
        controller.start()
        eventually(
            lambda: get(settings, "nobody.example.org")[0] == 404, 90, "the edge to answer", controller
        )
        yield Director(settings, url, token, controller)
    finally:
        controller.stop()
        api.terminate()
        api.wait(timeout=30)
        log.close()
        remove_labelled(swarm, f"{INSTANCE_LABEL}={instance}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 401
    except httpx.TransportError:
        return False


def _apply_source(director: Director, name: str, **spec: object) -> None:
    document = {"apiVersion": "director.io/v1", "kind": "GitSource", "metadata": {"name": name}, "spec": spec}
    with director.client() as client:
        answer = client.patch(
            f"{SOURCES}/{name}",
            params={"fieldManager": "cli"},
            content=json.dumps(document),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        assert answer.status_code in (200, 201), answer.text


def _gone_or_deleting(store: SiteStore, name: str) -> bool:
    try:
        return store.get(name).metadata.deletion_timestamp is not None
    except NotFound:
        return True


def test_what_the_repository_says_is_served_a_webhook_push_at_once_and_prune_removes_only_its_own(
    director, tmp_path
):
    settings, controller = director.settings, director.controller
    store = SiteStore(settings.state_dir)
    repo = Repo(tmp_path, "club")
    repo.write("sites/alpha.yaml", site_yaml("gitalpha"))
    repo.write("sites/beta.yaml", site_yaml("gitbeta"))
    repo.commit("two sites")
    with director.client() as client:
        assert (
            client.post(SECRETS, json={"metadata": {"name": "hook"}, "stringData": {"hmac": "k"}}).status_code
            == 201
        )
        handmade = {
            "apiVersion": "director.io/v1",
            "kind": "Site",
            "metadata": {"name": "gitmanual"},
            "spec": {},
        }
        assert client.post("/apis/director.io/v1/sites", json=handmade).status_code == 201
    _apply_source(
        director,
        "club",
        url=repo.file_url,
        path="sites/",
        prune=True,
        interval="1h",
        webhook={"secretRef": {"name": "hook"}},
    )
    for name in ("gitalpha", "gitbeta", "gitmanual"):
        eventually(
            lambda name=name: serves(settings, host_of(settings, name), 200, f"<h1>{name}</h1>"),
            120,
            f"{name} served",
            controller,
        )
    assert store.get("gitalpha").metadata.labels[GITSOURCE_LABEL] == "club"
    with director.client() as client:
        source = client.get(f"{SOURCES}/club").json()
    ready = next(c for c in source["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Applied"), ready
    assert source["status"]["observedGeneration"] == source["metadata"]["generation"]
    assert source["status"]["sync"]["inventory"] == ["gitalpha", "gitbeta"]

    # A push, and the webhook: the edit is served within moments, not at the hour's poll.
    repo.write("sites/alpha.yaml", site_yaml("gitalpha", domains="[alpha.club.example.org]"))
    repo.commit("alpha gets a domain")
    body = b'{"ref": "refs/heads/main"}'
    signature = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    pushed = time.monotonic()
    answer = httpx.post(
        f"{director.url}/hooks/gitsources/club", content=body, headers={"X-Hub-Signature-256": signature}
    )
    assert answer.status_code == 202, answer.text
    eventually(
        lambda: serves(settings, "alpha.club.example.org", 200, "<h1>gitalpha</h1>"), 30, "the push served"
    )
    assert time.monotonic() - pushed < 30

    # A commit removing a document prunes its site; the site made by hand stays.
    repo.remove("sites/beta.yaml")
    repo.commit("beta goes")
    assert httpx.post(
        f"{director.url}/hooks/gitsources/club", content=body, headers={"X-Hub-Signature-256": signature}
    ).status_code in (202, 429)
    eventually(
        lambda: get(settings, host_of(settings, "gitbeta"))[0] == 404, 60, "gitbeta pruned", controller
    )
    assert serves(settings, host_of(settings, "gitmanual"), 200)

    # Deleting the source (orphan, the default) leaves its sites serving, unmarked.
    with director.client() as client:
        assert client.delete(f"{SOURCES}/club").status_code in (200, 202)
        eventually(
            lambda: client.get(f"{SOURCES}/club").status_code == 404, 60, "the source deleted", controller
        )
    assert GITSOURCE_LABEL not in store.get("gitalpha").metadata.labels
    assert serves(settings, host_of(settings, "gitalpha"), 200, "<h1>gitalpha</h1>")


def test_a_source_with_deletion_policy_delete_takes_its_sites_with_it(director, tmp_path):
    settings, controller = director.settings, director.controller
    store = SiteStore(settings.state_dir)
    repo = Repo(tmp_path, "temporary")
    repo.write("one.yaml", site_yaml("gittemp"))
    repo.commit("one")
    _apply_source(director, "temporary", url=repo.file_url, deletionPolicy="delete")
    eventually(lambda: serves(settings, host_of(settings, "gittemp"), 200), 120, "gittemp served", controller)
    with director.client() as client:
        assert client.delete(f"{SOURCES}/temporary").status_code in (200, 202)
    eventually(lambda: _gone_or_deleting(store, "gittemp"), 60, "gittemp deleted", controller)
    eventually(
        lambda: get(settings, host_of(settings, "gittemp"))[0] == 404, 60, "gittemp unserved", controller
    )
