"""Serve the API (the Django project in ui/) with uvicorn on loopback, with the Docker-backed log source.

    python -m orchestrator.api_server              # migrate, then serve on 127.0.0.1:$DIRECTOR_API_PORT
    python -m orchestrator.api_server demo-admin   # create the demo admin and write its dirctl config
    python -m orchestrator.api_server shell-credential  # (re)issue the shell server's credential

Configuration: DIRECTOR_STATE_DIR, DIRECTOR_API_PORT (8000), DIRECTOR_API_HOST (127.0.0.1),
DIRECTOR_DATABASE_URL (SQLite under the state directory by default); HTTPS as orchestrator/tls.py says
(a CA and a server certificate made in STATE_DIR/tls/ on the first start).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specs.config import Settings, api_ca_file, api_tls_enabled

DEFAULT_API_PORT = 8000
DEMO_ADMIN = "admin"
DEMO_TOKEN_NAME = "make-run"
SHUTDOWN_GRACE_SECONDS = 3
SHELL_SERVER_USER = "shell-server"


def api_port() -> int:
    raw = os.environ.get("DIRECTOR_API_PORT") or str(DEFAULT_API_PORT)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"DIRECTOR_API_PORT must be a port number (1-65535), got {raw!r}")
    return int(raw)


def api_url(host: str = "127.0.0.1", port: int | None = None) -> str:
    return f"{'https' if api_tls_enabled() else 'http'}://{host}:{port or api_port()}"


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")
    import django

    django.setup()


def migrate() -> None:
    from django.conf import settings
    from django.core.management import call_command

    from store.durable import exclusive_lock

    # Processes started together on a new state directory (the API, the shell server's credential, the demo
    # admin) would each create the same tables, and all but one fail with "table ... already exists".
    with exclusive_lock(Path(settings.STATE_DIR) / ".migrate.lock"):
        call_command("migrate", interactive=False, verbosity=0)


DEMO_PASSWORD_FILE = "demo-admin-password"
KUBECONFIG_FILE = "kubeconfig"
KUBE_CLUSTER = "director"


@dataclass(frozen=True)
class DemoAdmin:
    username: str
    password: str | None  # None when the user already existed
    config_path: Path
    server: str
    # The password the demo admin signs in to the web UI with, kept in the state directory (not the
    # repository); None once its owner changed it.
    ui_password: str | None = None
    # kubectl's configuration for the demo admin: the cluster (server and CA), the token, a context.
    kubeconfig: Path | None = None


def demo_password_path(state_dir: Path) -> Path:
    return state_dir / DEMO_PASSWORD_FILE


def read_demo_password(state_dir: Path) -> str | None:
    try:
        return demo_password_path(state_dir).read_text().strip() or None
    except FileNotFoundError:
        return None


def _keep_demo_password(state_dir: Path, password: str) -> None:
    path = demo_password_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password + "\n")


def kubeconfig_path(state_dir: Path) -> Path:
    return state_dir / KUBECONFIG_FILE


def write_kubeconfig(path: Path, server: str, token: str, username: str, ca_pem: str | None) -> Path:
    """A kubeconfig (mode 0600: it holds the token) with one cluster, one user and the context joining them.
    The CA goes in as data, so the file works wherever it is copied."""
    import base64

    import yaml

    cluster: dict[str, str] = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem.encode()).decode()
    user = f"{username}@{KUBE_CLUSTER}"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": KUBE_CLUSTER, "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": KUBE_CLUSTER, "context": {"cluster": KUBE_CLUSTER, "user": user}}],
        "current-context": KUBE_CLUSTER,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        yaml.safe_dump(document, handle, sort_keys=False)
    os.replace(partial, path)
    return path


def ensure_demo_admin(server: str, config_path: Path | None = None, username: str = DEMO_ADMIN) -> DemoAdmin:
    """Create the demo admin (idempotent), give it a token, and write a dirctl config and a kubeconfig
    (STATE_DIR/kubeconfig) that use it, trusting the API's CA.

    The token is reissued on every call (the old `make-run` tokens are revoked): a secret cannot be read
    back from its hash, and the config file must hold a working one.
    """
    import secrets

    from django.conf import settings
    from django.contrib.auth.models import User

    from api.auth import ensure_admin_group, issue_token, revoke_token
    from api.models import ApiToken
    from cli.config import CliConfig, default_config_path, save_config

    state_dir: Path = settings.STATE_DIR
    user = User.objects.filter(username=username).first()
    password = None
    if user is None:
        password = secrets.token_urlsafe(12)
        user = User.objects.create_user(username, password=password, is_superuser=True, is_staff=True)
        _keep_demo_password(state_dir, password)
    user.groups.add(ensure_admin_group())
    ui_password = read_demo_password(state_dir)
    if ui_password is None and password is None and not user.has_usable_password():
        # A demo admin from before passwords were kept: give it one now, so the UI can be reached.
        ui_password = secrets.token_urlsafe(12)
        user.set_password(ui_password)
        user.save(update_fields=["password"])
        _keep_demo_password(state_dir, ui_password)
    if ui_password is not None and not user.check_password(ui_password):
        ui_password = None  # changed by its owner since: theirs to know
    for old in ApiToken.objects.filter(user=user, name=DEMO_TOKEN_NAME, revoked__isnull=True):
        revoke_token(old)
    _token, secret = issue_token(user, DEMO_TOKEN_NAME)
    if server.startswith("https:"):
        from orchestrator.tls import server_tls

        # Made now if the API has not started yet, so the config written here trusts the CA the API will use.
        server_tls(state_dir, os.environ.get("DIRECTOR_API_HOST", "127.0.0.1"))
    ca_file = api_ca_file(state_dir) if server.startswith("https:") else None
    ca_pem = ca_file.read_text() if ca_file is not None else ""
    path = config_path or default_config_path()
    save_config(CliConfig(server=server, token=secret, ca=ca_pem, output=""), path)
    kubeconfig = write_kubeconfig(kubeconfig_path(state_dir), server, secret, username, ca_pem)
    return DemoAdmin(username, password, path, server, ui_password or password, kubeconfig)


def ensure_demo_users(names: list[str]) -> list[str]:
    """Create the users the examples name as owners (owners must be users); the ones created are returned.

    They have no password: an admin gives them one, so no demo account can be logged into by a guess.
    """
    from django.contrib.auth.models import User

    created = []
    for name in names:
        user, new = User.objects.get_or_create(username=name)
        if new:
            user.set_unusable_password()
            user.save()
            created.append(name)
    return created


def register_docker_log_source() -> None:
    from api.logsource import register_log_source
    from reconcilers.service_logs import DockerServiceLogs

    register_log_source(DockerServiceLogs(Settings.from_env()))


def register_docker_terminals() -> None:
    """Terminal sessions in containers; the sweep removes what a killed API process left behind."""
    from api.terminal_backend import register_terminal_backend
    from reconcilers.terminals import DockerTerminals

    backend = DockerTerminals(Settings.from_env())
    backend.start_sweeping()
    register_terminal_backend(backend)


def issue_shell_credential(path: Path) -> Path:
    """A new credential of the shell server, confined to /shell-server/, written to `path` (mode 0600);
    the earlier ones are revoked. Issued at every start of the shell server: tokens expire."""
    from django.contrib.auth.models import User

    from api.auth import SHELL_SERVER_SCOPE, issue_token, revoke_token
    from api.models import ApiToken

    user, created = User.objects.get_or_create(username=SHELL_SERVER_USER)
    if created:
        user.set_unusable_password()
        user.save()
    for old in ApiToken.objects.filter(user=user, scope=SHELL_SERVER_SCOPE, revoked__isnull=True):
        revoke_token(old)
    _token, secret = issue_token(user, SHELL_SERVER_USER, scope=SHELL_SERVER_SCOPE)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    os.replace(partial, path)
    return path


def serve(host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    setup_django()
    migrate()
    register_docker_log_source()
    register_docker_terminals()
    from api.runtime import warm_caches
    from orchestrator.tls import TlsError, server_tls
    from ui.asgi import application

    bind = host or os.environ.get("DIRECTOR_API_HOST", "127.0.0.1")
    try:
        tls = server_tls(Settings.from_env().state_dir, bind)
    except TlsError as problem:
        raise SystemExit(f"director api: {problem}") from None
    threading.Thread(target=warm_caches, name="warm-caches", daemon=True).start()
    # Watches and the UI's live streams never end by themselves: a stop closes them after a short grace.
    uvicorn.run(
        application,
        host=bind,
        port=port or api_port(),
        ssl_certfile=str(tls.certfile) if tls is not None else None,
        ssl_keyfile=str(tls.keyfile) if tls is not None else None,
        **uvicorn_options(),
    )


def uvicorn_options() -> dict[str, Any]:
    """How uvicorn serves the API, beside where and with which certificate (the tests' servers too)."""
    return {
        "log_level": "warning",
        "lifespan": "off",
        # Named, not left to uvicorn ("auto" takes httptools whenever it is installed): httptools refuses
        # methods outside its list, which the API answers with 405, and reads a request's head unbounded,
        # where h11 refuses one past 16 KiB.
        "http": "h11",
        # Nothing to tell a caller about the software that answers.
        "server_header": False,
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_SECONDS,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.api_server")
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "demo-admin", "shell-credential"]
    )
    parser.add_argument("--config", type=Path, help="dirctl config file to write (demo-admin)")
    parser.add_argument("--output", type=Path, help="file to write the credential to (shell-credential)")
    parser.add_argument("--users", nargs="*", default=[], help="demo users to create too (demo-admin)")
    arguments = parser.parse_args(argv)
    if arguments.command == "serve":
        print(f"Director API on {api_url()}", file=sys.stderr, flush=True)
        serve()
        return
    setup_django()
    migrate()
    if arguments.command == "shell-credential":
        from shell.config import token_file

        written = issue_shell_credential(arguments.output or token_file(Settings.from_env().state_dir))
        print(f"the shell server's credential is in {written}")
        return
    demo = ensure_demo_admin(api_url(), arguments.config)
    if demo.password:
        print(f"demo admin: user {demo.username}, password {demo.password}")
    elif demo.ui_password is None:
        print(f"demo admin: user {demo.username}, with the password its owner set")
    created = ensure_demo_users(arguments.users)
    if created:
        print(f"demo users (no password until an admin sets one): {', '.join(created)}")
    print(f"dirctl is configured for {demo.server} in {demo.config_path}")
    print(f"kubectl is configured in {demo.kubeconfig}: export KUBECONFIG={demo.kubeconfig}")


if __name__ == "__main__":
    main()
