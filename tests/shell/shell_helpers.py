"""What the SSH shell's tests share: Director's processes (the API, the shell server) as restartable
services, the OpenSSH client's command lines for a user, the test users and their keys."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import pytest
from docker_cleanup import INSTANCE_LABEL
from swarm_helpers import ControllerProcess, eventually

from specs.config import Settings
from store.records import SiteStore

ROOT = Path(__file__).resolve().parents[2]
DIRECTOR = Path(sys.executable).with_name("director")
EDGE_START_SECONDS = 90
START_SECONDS = 60
USERS = ("admin", "alice", "bob")
ROLE_TERMINAL = "io.director.role=terminal"


@dataclass
class Service:
    """One of Director's processes, started again by `start`, its output appended to `log`."""

    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=sink, stderr=sink)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ShellDirector:
    settings: Settings
    api_url: str
    ssh_port: int
    tokens: dict[str, str]
    keys: dict[str, Path]
    api: Service
    shell: Service
    controller: ControllerProcess
    client: docker.DockerClient
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def store(self) -> SiteStore:
        return SiteStore(self.settings.state_dir)

    def http(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=60
        )

    def ssh_options(self, key: Path | None) -> list[str]:
        options = [
            "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={self.home / 'known_hosts'}",
            "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=30",
            "-F", "/dev/null",
        ]  # fmt: skip
        if key is None:
            return [*options, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"]
        return [*options, "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]

    def ssh(
        self,
        login: str,
        *command: str,
        key: str | Path | None = "",
        password: str | None = None,
        tty: bool = False,
        stdin: str | bytes | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """`ssh -p PORT login command...` with the user's key (the login's user by default), or with a
        password through SSH_ASKPASS when `password` is given."""
        argv, env = self.ssh_argv(login, *command, key=key, password=password, tty=tty)
        data = stdin.decode() if isinstance(stdin, bytes) else stdin
        return subprocess.run(
            argv, input=data or "", capture_output=True, text=True, timeout=timeout, env=env, check=False
        )

    def ssh_argv(
        self,
        login: str,
        *command: str,
        key: str | Path | None = "",
        password: str | None = None,
        tty: bool = False,
        program: str = "ssh",
    ) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        if password is not None:
            askpass = self.home / f"askpass-{abs(hash(password))}"
            askpass.write_text(f"#!/bin/sh\nprintf '%s\\n' {shlex_quote(password)}\n")
            askpass.chmod(0o700)
            env |= {"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
            chosen: Path | None = None
        elif key == "":
            chosen = self.keys[login.split("/")[0]]
        else:
            chosen = Path(key) if key is not None else None
        port_flag = "-P" if program in ("sftp", "scp") else "-p"
        argv = [program, port_flag, str(self.ssh_port), *self.ssh_options(chosen)]
        if program == "ssh":
            argv += ["-tt"] if tty else ["-T"]
            argv += [f"{login}@127.0.0.1", *command]
        elif program == "sftp":
            argv += [*command, f"{login}@127.0.0.1"]
        else:
            argv += list(command)
        return argv, env

    def terminal_containers(self) -> list[dict[str, object]]:
        return self.client.api.containers(
            all=True, filters={"label": [f"{INSTANCE_LABEL}={self.settings.instance}", ROLE_TERMINAL]}
        )

    def wait_ready(self, *names: str) -> None:
        from swarm_helpers import ready

        for name in names:
            eventually(lambda name=name: ready(self.store, name), 120, f"site {name} Ready", self.controller)

    def restart_api(self) -> None:
        self.api.start()
        wait_for_api(self.api_url, self.api)

    def restart_shell(self) -> None:
        self.shell.start()
        wait_for_port(self.ssh_port, self.shell)


def shlex_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def wait_for_api(url: str, service: Service) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/apis", timeout=2).status_code == 401:
                return
        except httpx.TransportError:
            pass
        if service.process is not None and service.process.poll() is not None:
            pytest.fail(f"the API exited:\n{service.tail()}")
        time.sleep(0.1)
    pytest.fail(f"the API did not answer within {START_SECONDS} s:\n{service.tail()}")


def wait_for_port(port: int, service: Service) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(1)
            try:
                probe.connect(("127.0.0.1", port))
                if probe.recv(4).startswith(b"SSH-"):
                    return
            except OSError:
                pass
        if service.process is not None and service.process.poll() is not None:
            pytest.fail(f"the shell server exited:\n{service.tail()}")
        time.sleep(0.1)
    pytest.fail(f"the shell server did not listen within {START_SECONDS} s:\n{service.tail()}")


def make_users(env: dict[str, str]) -> dict[str, str]:
    made = subprocess.run(
        [sys.executable, "-m", "tests.shell.make_users", *USERS],
        env=env | {"PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    tokens: dict[str, str] = json.loads(made.stdout)
    return tokens


def login_session(env: dict[str, str], username: str) -> str:
    """A logged-in web UI session of `username`: the value of its session cookie."""
    made = subprocess.run(
        [sys.executable, "-m", "tests.shell.make_users", "session", username],
        env=env | {"PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return made.stdout.strip()


def make_key(directory: Path, name: str) -> Path:
    path = directory / f"id_{name}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@tests", "-f", str(path)], check=True
    )
    return path


def site_document(name: str, owners: Sequence[str], **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "director.io/v1",
        "kind": "Site",
        "metadata": {"name": name},
        "spec": {"owners": list(owners), **spec},
    }
