"""`director run`: the whole of Director on one machine, with the example sites, for `make run`.

It starts the controller, the API and the SSH shell server as child processes (so each keeps its own
event loop, signals and logs), makes a demo admin whose token it writes into dirctl's configuration,
applies examples/
through the API with `dirctl apply --wait`, prints where everything is, and waits. Ctrl-C stops
Director's own processes only: the sites keep serving in Swarm, as they would across any controller
restart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO

from orchestrator.api_server import (
    DEMO_ADMIN,
    api_url,
    demo_password_path,
    kubeconfig_path,
    read_demo_password,
)
from shell.config import DEFAULT_SSH_PORT, host_key_fingerprints
from specs.config import Settings, api_ca_file, api_ca_path
from specs.yamlio import load_path

API_START_SECONDS = 60.0
SHELL_START_SECONDS = 60.0
APPLY_TIMEOUT = "180s"


class DemoFailed(Exception):
    """A step of the demo failed; the message says which and where its log is."""


class Child:
    """A Director process started by the demo, logging to a file under the state directory."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = log_path.open("ab")
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def exited(self) -> int | None:
        return self.process.poll()

    def exit_report(self) -> str:
        status = self.exited()
        return f"the {self.name} exited with status {status}; its log {self.log_path} ends:\n{self.tail()}"

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 25.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _wait_for_api(url: str, api: Child, state_dir: Path) -> None:
    deadline = time.monotonic() + API_START_SECONDS
    while time.monotonic() < deadline:
        if api.exited() is not None:
            raise DemoFailed(api.exit_report())
        try:
            # The API makes its CA as it starts: until then there is nothing to trust, nor to ask.
            ca = api_ca_file(state_dir)
            if url.startswith("https:") and ca is None:
                raise ConnectionRefusedError(f"no CA in {api_ca_path(state_dir)} yet")
            context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
            urllib.request.urlopen(f"{url}/apis", timeout=2, context=context).close()
            return
        except urllib.error.HTTPError:
            return  # 401 without a token: it answers.
        except OSError:
            time.sleep(0.3)
    raise DemoFailed(f"the API did not answer at {url} within {API_START_SECONDS:.0f}s; see {api.log_path}")


def ssh_port() -> int:
    raw = os.environ.get("DIRECTOR_SSH_PORT") or str(DEFAULT_SSH_PORT)
    return int(raw) if raw.isdigit() else DEFAULT_SSH_PORT


def _wait_for_shell(port: int, shell: Child) -> None:
    deadline = time.monotonic() + SHELL_START_SECONDS
    while time.monotonic() < deadline:
        if shell.exited() is not None:
            raise DemoFailed(shell.exit_report())
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
            if probe.recv(4).startswith(b"SSH-"):
                return
        time.sleep(0.3)
    raise DemoFailed(f"the shell server did not listen on port {port}; see {shell.log_path}")


def _director_command(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def _dirctl() -> str:
    return str(Path(sys.executable).with_name("dirctl"))


@contextlib.contextmanager
def _children(settings: Settings) -> Iterator[tuple[Child, Child]]:
    logs = settings.state_dir / "log"
    controller = Child(
        "controller", _director_command("orchestrator.main", "controller"), logs / "controller.log"
    )
    api = Child("api", _director_command("orchestrator.api_server", "serve"), logs / "api.log")
    try:
        yield controller, api
    finally:
        print("\nstopping Director's processes; the sites keep serving in Swarm", flush=True)
        api.stop()
        controller.stop()


def _start_shell(settings: Settings, url: str) -> Child:
    """The SSH shell server, on loopback unless DIRECTOR_SSH_BIND says otherwise."""
    env = dict(os.environ)
    env.setdefault("DIRECTOR_SSH_BIND", "127.0.0.1")
    env.setdefault("DIRECTOR_API_URL", url)
    log_path = settings.state_dir / "log" / "shell.log"
    return Child("shell server", _director_command("orchestrator.main", "shell-server"), log_path, env)


def _print_summary(settings: Settings, examples: Path, url: str) -> None:
    sites = load_path(examples).sites
    password = read_demo_password(settings.state_dir)
    secret = f"password {password}" if password else "the password you set"
    sign_in = f"user {DEMO_ADMIN}, {secret}"
    print("\nDirector is running.")
    print(f"  web UI:     {url}/   (sign in as {sign_in}; kept in {demo_password_path(settings.state_dir)})")
    print(f"  API:        {url}   (dirctl is configured: try `dirctl get sites -o wide`)")
    kubeconfig = kubeconfig_path(settings.state_dir)
    print(f"  kubectl:    export KUBECONFIG={kubeconfig}   (then `kubectl get sites`)")
    print(f"  CA:         {api_ca_path(settings.state_dir)}   (the API's certificate is signed by it)")
    edge = f"http://127.0.0.1:{settings.http_port}/"
    print(f"  edge:       {edge} (Nginx in Swarm, service {settings.edge_service})")
    print(f"  state:      {settings.state_dir}  (records, events, site files; logs in log/)")
    port = ssh_port()
    print(
        f"  ssh:        port {port}: ssh -p {port} USER/SITE@127.0.0.1 "
        "(dirctl keys add ~/.ssh/id_ed25519.pub)"
    )
    for fingerprint in host_key_fingerprints(settings.state_dir):
        print(f"              host key {fingerprint}")
    print("  sites:")
    for site in sites:
        for site_url in settings.site_urls(site.name, site.spec.domains):
            print(f"    {site.name:<8} {site_url}")
    custom_domains = [domain for site in sites for domain in site.spec.domains]
    host = custom_domains[0] if custom_domains else "example.org"
    print(
        "\n*.localhost names reach this machine in browsers and curl; other host names need a Host header:"
        f"\n  curl -H 'Host: {host}' http://127.0.0.1:{settings.http_port}/"
    )
    print("\nCtrl-C stops the controller, the API and the shell server; the sites keep serving.", flush=True)


def run(examples: Path) -> int:
    settings = Settings.from_env()
    url = api_url()
    stop_requested = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with _children(settings) as (controller, api):
            print(f"started the controller (log {controller.log_path}) and the API (log {api.log_path})")
            _wait_for_api(url, api, settings.state_dir)
            shell = _start_shell(settings, url)
            try:
                _run_demo(settings, examples, url, controller, api, shell, lambda: stop_requested)
            finally:
                shell.stop()
    except DemoFailed as failure:
        print(f"director run: {failure}", file=sys.stderr)
        return 1
    return 0


def _run_demo(
    settings: Settings,
    examples: Path,
    url: str,
    controller: Child,
    api: Child,
    shell: Child,
    stopping: Callable[[], bool],
) -> None:
    _wait_for_shell(ssh_port(), shell)
    # The examples' owners must be users for the API to accept them.
    owners = sorted({owner for site in load_path(examples).sites for owner in site.spec.owners})
    admin = subprocess.run(
        _director_command("orchestrator.api_server", "demo-admin", "--users", *owners), check=False
    )
    if admin.returncode != 0:
        raise DemoFailed("creating the demo admin failed (see above)")
    print(f"applying {examples}/ and waiting for every site to be Ready:", flush=True)
    apply_argv = [_dirctl(), "apply", "-f", str(examples), "--wait", "--timeout", APPLY_TIMEOUT]
    apply = subprocess.run(apply_argv, check=False)
    if apply.returncode != 0:
        raise DemoFailed(
            f"`dirctl apply -f {examples} --wait` failed (exit {apply.returncode}); "
            f"the controller's log is {controller.log_path}"
        )
    _print_summary(settings, examples, url)
    while not stopping():
        for child in (controller, api, shell):
            if child.exited() is not None:
                raise DemoFailed(child.exit_report())
        time.sleep(0.5)
