"""A live API: the real ASGI app under uvicorn in its own process, on loopback, over HTTPS as in production
(the CA and certificate made in the temporary state dir), over a temporary state dir.

The test process opens the same state directory and database to arrange users, tokens and records as the
controller or an administrator would. Its clients trust the state dir's CA: `verify=api.tls`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.api_helpers import SITES

REPO = Path(__file__).resolve().parents[2]
# The server process is started as `python -m tests.api.live_server`, and tests import their helpers the
# same way; tests/ is a namespace package, so the repository root has to be importable.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Api:
    url: str
    state_dir: Path
    tokens: dict[str, str]
    # Trusts the CA the servers' certificates are signed by (ca_file), and nothing else.
    tls: ssl.SSLContext
    ca_file: Path

    def client(self, who: str | None = "admin", **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        kwargs.setdefault("headers", {})
        kwargs["headers"] = headers | kwargs["headers"]
        return httpx.Client(base_url=self.url, timeout=30, verify=self.tls, **kwargs)


def server_certificates(state_dir: Path) -> tuple[ssl.SSLContext, Path]:
    """The state dir's CA and server certificate, made as the server makes them; a context trusting the CA."""
    from orchestrator.tls import ensure_certificates, wanted_names
    from specs.config import api_ca_path

    ensure_certificates(state_dir, wanted_names())
    ca_file = api_ca_path(state_dir)
    return ssl.create_default_context(cafile=str(ca_file)), ca_file


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _setup_django(state_dir: Path) -> None:
    previous = os.environ.get("DIRECTOR_STATE_DIR")
    os.environ["DIRECTOR_STATE_DIR"] = str(state_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    # Settings are read once; the other tests of the session must not inherit this state dir.
    if previous is None:
        del os.environ["DIRECTOR_STATE_DIR"]
    else:
        os.environ["DIRECTOR_STATE_DIR"] = previous


def _make_users() -> dict[str, str]:
    from django.contrib.auth.models import User

    from api.auth import SHELL_SERVER_SCOPE, ensure_admin_group, issue_token

    admin = User.objects.create_user("admin", password="admin-password")
    admin.groups.add(ensure_admin_group())
    alice = User.objects.create_user("alice", password="alice-password")
    bob = User.objects.create_user("bob", password="bob-password")
    shell = User.objects.create_user("shell-server")
    return {
        "admin": issue_token(admin, "tests")[1],
        "alice": issue_token(alice, "tests")[1],
        "bob": issue_token(bob, "tests")[1],
        "shell": issue_token(shell, "shell-server", scope=SHELL_SERVER_SCOPE)[1],
    }


def start_server(
    state_dir: Path, port: int, settings: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A server process on the state directory (and so the database) of the others; `settings`: DIRECTOR_*
    environment variables of its own."""
    env = (
        os.environ
        | {
            "DIRECTOR_STATE_DIR": str(state_dir),
            "DJANGO_SETTINGS_MODULE": "ui.settings",
            "PYTHONPATH": str(REPO),
            "DIRECTOR_ADMIN_ONLY_DOMAINS": "school.example.edu",
        }
        | (settings or {})
    )
    log = (state_dir / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.api.live_server", str(port)], cwd=REPO, env=env, stdout=log, stderr=log
    )
    tls, _ = server_certificates(state_dir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"https://127.0.0.1:{port}/apis", timeout=1, verify=tls).status_code == 401:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
        if process.poll() is not None:
            raise RuntimeError((state_dir / "server.log").read_text())
    process.kill()
    raise RuntimeError("the API server did not start within 30 s")


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    state_dir = tmp_path_factory.mktemp("director-api-state")
    (state_dir / "test-logs").mkdir()
    _setup_django(state_dir)
    tokens = _make_users()
    port = free_port()
    process = start_server(state_dir, port)
    tls, ca_file = server_certificates(state_dir)
    try:
        yield Api(f"https://127.0.0.1:{port}", state_dir, tokens, tls, ca_file)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def more_servers(api: Api) -> Iterator[Callable[[dict[str, str] | None], str]]:
    """Start further server processes on the state directory and database of `api`, optionally with
    DIRECTOR_* settings of their own; each start answers the new server's URL."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(settings: dict[str, str] | None = None) -> str:
        port = free_port()
        processes.append(start_server(api.state_dir, port, settings))
        return f"https://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=10)


@pytest.fixture
def store(api: Api):
    from store.records import SiteStore

    return SiteStore(api.state_dir)


@pytest.fixture(autouse=True)
def _no_sites_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "api" not in request.fixturenames:
        return
    from store.records import NotFound, SiteStore

    api: Api = request.getfixturevalue("api")
    store = SiteStore(api.state_dir)
    sites, _ = store.list()
    for site in sites:
        for finalizer in site.metadata.finalizers:
            store.remove_finalizer(site.name, finalizer)
        with contextlib.suppress(NotFound):
            store.delete(site.name)
    if sites:
        _until_the_server_lists_none(api)


def _until_the_server_lists_none(api: Api) -> None:
    """The server learns of writes by other processes (this one) from its watch of the store, a moment
    later: the next test must not find this one's sites in its lists."""
    deadline = time.monotonic() + 60
    with api.client() as admin:
        while listed := [item["metadata"]["name"] for item in admin.get(SITES).json()["items"]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"the API server still lists {listed} 60 s after they were deleted")
            time.sleep(0.02)
