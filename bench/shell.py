"""The SSH shell's costs, each next to its floor, measured side by side in one run (medians):

- `ssh alice/hello@HOST true`, connect to exit, against `docker run --rm` of the same image: plainly, and
  with the session container's own options (the site's uid, read-only root, tmpfs, limits, the sites'
  network). The container's start is the floor; the target is at most 1.3x it.
- an sftp upload of a 50 MiB file into a site, against the same upload to Debian's OpenSSH server
  (`/usr/sbin/sshd` with its sftp-server) on loopback.

Director runs whole (controller, API, shell server) under a throwaway instance, removed at the end.

    .venv/bin/python -m bench.shell [--rounds 15] [--upload-rounds 5] [--upload-mib 50]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import httpx

from bench.e2e_helpers import ROOT, ControllerProcess, throwaway_instance
from reconcilers.local_images import ensure_base_image
from reconcilers.terminals import TMPFS
from specs.config import Settings
from store.records import SiteStore

DIRECTOR = Path(sys.executable).with_name("director")
START_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.shell: timed out waiting for {what}")
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/apis", timeout=2).status_code == 401
    except httpx.TransportError:
        return False


def speaks_ssh(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
            return probe.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def timed(argv: list[str], **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300, **kwargs)
    return time.perf_counter() - started


def ssh_options(key: Path, home: Path) -> list[str]:
    return [
        "-o", "StrictHostKeyChecking=no",
        "-o", f"UserKnownHostsFile={home / 'known_hosts'}",
        "-o", "LogLevel=ERROR",
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-F", "/dev/null",
        "-i", str(key),
    ]  # fmt: skip


class Director:
    """Controller, API and shell server over `settings`, with alice, her key and her static site hello."""

    def __init__(self, settings: Settings, image: str, home: Path) -> None:
        self.settings = settings
        self.home = home
        self.api_port, self.ssh_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.env = dict(os.environ) | {
            "DIRECTOR_STATE_DIR": str(settings.state_dir),
            "DIRECTOR_INSTANCE": settings.instance,
            "DIRECTOR_HTTP_PORT": str(settings.http_port),
            "DIRECTOR_EDGE_IMAGE": image,
            "DIRECTOR_SITE_IMAGE": image,
            "DIRECTOR_API_PORT": str(self.api_port),
            "DIRECTOR_API_URL": self.api_url,
            # Plain HTTP on loopback: this benchmark measures the shell, not TLS.
            "DIRECTOR_API_TLS": "off",
            "DIRECTOR_SSH_PORT": str(self.ssh_port),
            "DIRECTOR_SSH_BIND": "127.0.0.1",
            "PYTHONPATH": str(ROOT),
        }
        self.controller = ControllerProcess(settings)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.key = home / "id_alice"

    def _start(self, argv: list[str], log: str) -> None:
        with (self.settings.state_dir / log).open("ab") as sink:
            self.processes.append(subprocess.Popen(argv, env=self.env, cwd=ROOT, stdout=sink, stderr=sink))

    def start(self) -> None:
        self.controller.start()
        made = subprocess.run(
            [sys.executable, "-m", "tests.shell.make_users", "admin", "alice"],
            env=self.env, cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        tokens = json.loads(made.stdout)
        self._start([sys.executable, "-m", "orchestrator.api_server", "serve"], "api.log")
        wait_for(lambda: answers(self.api_url), START_SECONDS, "the API")
        self._start([str(DIRECTOR), "shell-server"], "shell.log")
        wait_for(lambda: speaks_ssh(self.ssh_port), START_SECONDS, "the shell server")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        alice = {"Authorization": f"Bearer {tokens['alice']}"}
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        public = self.key.with_suffix(".pub").read_text()
        httpx.post(
            f"{self.api_url}/apis/auth.director.io/v1/sshkeys", json={"publicKey": public}, headers=alice
        )
        site = {"apiVersion": "director.io/v1", "kind": "Site", "metadata": {"name": "hello"}}
        created = httpx.post(
            f"{self.api_url}/apis/director.io/v1/sites",
            json=site | {"spec": {"owners": ["alice"]}},
            headers=admin,
        )
        created.raise_for_status()
        store = SiteStore(self.settings.state_dir)

        def ready() -> bool:
            status = store.get("hello").status
            found = status.condition("Ready") if status is not None else None
            return found is not None and found.status == "True"

        wait_for(ready, START_SECONDS, "site hello to be Ready")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=30)
        self.controller.stop()

    def ssh_true(self) -> float:
        return timed(
            [
                "ssh",
                "-p",
                str(self.ssh_port),
                *ssh_options(self.key, self.home),
                "alice/hello@127.0.0.1",
                "true",
            ]
        )

    def sftp_put(self, local: Path) -> float:
        argv = [
            "sftp",
            "-P",
            str(self.ssh_port),
            *ssh_options(self.key, self.home),
            "-b",
            "-",
            "alice/hello@127.0.0.1",
        ]
        return timed(argv, input=f"put {local} private/upload.bin\n".encode())


class OpenSsh:
    """Debian's sshd on a loopback port, root logging in with one key, its sftp-server for sftp."""

    def __init__(self, home: Path, key: Path) -> None:
        self.home = home
        self.key = key
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.target = home / "sshd-uploads"

    def start(self) -> None:
        self.target.mkdir()
        host_key = self.home / "sshd_host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        shutil.copy(self.key.with_suffix(".pub"), self.home / "authorized_keys")
        config = self.home / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {self.home / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.home / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "Subsystem sftp /usr/lib/openssh/sftp-server\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL
        )
        wait_for(lambda: speaks_ssh(self.port), 30, "Debian's sshd")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def sftp_put(self, local: Path) -> float:
        argv = ["sftp", "-P", str(self.port), *ssh_options(self.key, self.home), "-b", "-", "root@127.0.0.1"]
        return timed(argv, input=f"put {local} {self.target / 'upload.bin'}\n".encode())


def docker_runs(settings: Settings, image: str, uid: int) -> tuple[list[str], list[str]]:
    plain = ["docker", "run", "--rm", image, "true"]
    alike = [
        "docker", "run", "--rm", "--network", settings.network, "--user", f"{uid}:{uid}", "--read-only",
        "--tmpfs", f"/tmp:{TMPFS}", "--tmpfs", f"/run:{TMPFS}", "--cpus", "0.6", "--memory", "100m",
        "--init", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-v", f"{settings.sites_dir / 'hello'}:/site", "--log-driver", "none", image, "true",
    ]  # fmt: skip
    return plain, alike


def median_line(name: str, samples: list[float]) -> str:
    median, least = statistics.median(samples) * 1000, min(samples) * 1000
    return f"  {name:<50} median {median:7.0f} ms  (min {least:.0f}, n={len(samples)})"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shell")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--upload-rounds", type=int, default=5)
    parser.add_argument("--upload-mib", type=int, default=50)
    args = parser.parse_args()
    for tool in ("ssh", "sftp", "/usr/sbin/sshd"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"bench.shell: {tool} is missing; `make setup` installs openssh-client and -server"
            )
    client = docker.from_env()
    image = ensure_base_image(client)
    home = Path(tempfile.mkdtemp(prefix="director-bench-shell-"))
    with throwaway_instance(client, image, prefix="benchsh") as settings:
        director = Director(settings, image, home)
        sshd = OpenSsh(home, director.key)
        try:
            director.start()
            sshd.start()
            uid = (settings.sites_dir / "hello").stat().st_uid
            plain, alike = docker_runs(settings, image, uid)
            director.ssh_true()  # the first connection pays for imports and caches
            timings: dict[str, list[float]] = {"ssh": [], "plain": [], "alike": []}
            for _ in range(args.rounds):
                # Interleaved, so that a busy moment of the machine falls on all three alike.
                timings["ssh"].append(director.ssh_true())
                timings["plain"].append(timed(plain))
                timings["alike"].append(timed(alike))
            local = home / "upload.bin"
            local.write_bytes(os.urandom(args.upload_mib * 1024 * 1024))
            uploads: dict[str, list[float]] = {"director": [], "openssh": []}
            for _ in range(args.upload_rounds):
                uploads["director"].append(director.sftp_put(local))
                uploads["openssh"].append(sshd.sftp_put(local))
        finally:
            sshd.stop()
            director.stop()
            shutil.rmtree(home, ignore_errors=True)
    ssh, plain_run, alike_run = (statistics.median(timings[name]) for name in ("ssh", "plain", "alike"))
    print("ssh alice/hello@HOST true, connect to exit:")
    print(median_line("ssh through Director's shell server", timings["ssh"]))
    print(median_line(f"docker run --rm {image.split(':')[0]} true", timings["plain"]))
    print(median_line("docker run --rm, the session container's options", timings["alike"]))
    print(
        f"  ratio: {ssh / alike_run:.2f}x the same container, {ssh / plain_run:.2f}x a plain one "
        "(target <= 1.3x)"
    )
    director_put, openssh_put = (statistics.median(uploads[name]) for name in ("director", "openssh"))
    mib = args.upload_mib
    print(f"sftp put of {mib} MiB:")
    print(median_line(f"Director ({mib / director_put:.0f} MiB/s)", uploads["director"]))
    print(median_line(f"Debian's sshd on loopback ({mib / openssh_put:.0f} MiB/s)", uploads["openssh"]))
    print(f"  ratio: {director_put / openssh_put:.2f}x OpenSSH's time")


if __name__ == "__main__":
    main()
