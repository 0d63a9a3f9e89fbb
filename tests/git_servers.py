"""Git remotes for the GitOps tests, with the real git binary: bare repositories on disk (file://), served
over git:// by `git daemon` and over http with basic auth by Nginx in front of git-http-backend (fcgiwrap),
all on loopback, each process started by the test and stopped with it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

GIT = shutil.which("git") or "/usr/bin/git"
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
START_SECONDS = 20.0


def _git_env(home: Path) -> dict[str, str]:
    return os.environ | {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "club",
        "GIT_AUTHOR_EMAIL": "club@example.org",
        "GIT_COMMITTER_NAME": "club",
        "GIT_COMMITTER_EMAIL": "club@example.org",
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {START_SECONDS:.0f}s")


class Repo:
    """A bare repository (the remote) under `root`, and a working clone to commit to it from."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-work"
        self.home = root / ".home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        # The tests delete the branch a source follows.
        self.git("config", "receive.denyDeleteCurrent", "ignore", cwd=self.bare)
        self.git("init", "--quiet", "--initial-branch=main", str(self.work), cwd=root)
        self.git("remote", "add", "origin", str(self.bare))

    def git(self, *args: str, cwd: Path | None = None) -> str:
        result = subprocess.run(
            [GIT, *args],
            cwd=cwd or self.work,
            env=_git_env(self.home),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr}")
        return result.stdout.strip()

    @property
    def file_url(self) -> str:
        return f"file://{self.bare}"

    def write(self, path: str, text: str | bytes) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)

    def remove(self, path: str) -> None:
        target = self.work / path
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()

    def symlink(self, path: str, to: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(to)

    def commit(self, message: str, *, branch: str = "main", force: bool = False) -> str:
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        self.git("push", "--quiet", *(["--force"] if force else []), "origin", f"HEAD:refs/heads/{branch}")
        return self.git("rev-parse", "HEAD")

    def rewrite(self, message: str) -> str:
        """Amend the last commit and force-push it: the old head is gone from the branch's history."""
        self.git("add", "-A")
        self.git("commit", "--quiet", "--amend", "--allow-empty", "-m", message)
        self.git("push", "--quiet", "--force", "origin", "HEAD:refs/heads/main")
        return self.git("rev-parse", "HEAD")

    def delete_branch(self, branch: str = "main") -> None:
        self.git("push", "--quiet", "origin", f":refs/heads/{branch}")


def site_yaml(name: str, **spec: object) -> str:
    lines = ["apiVersion: director.io/v1", "kind: Site", "metadata:", f"  name: {name}", "spec:"]
    lines += [f"  {key}: {value}" for key, value in spec.items()] or ["  type: static"]
    return "\n".join(lines) + "\n"


class GitDaemon:
    """`git daemon` serving every repository under `root` on git://127.0.0.1:PORT/NAME.git."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.log = root / "git-daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> GitDaemon:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    GIT,
                    "daemon",
                    "--reuseaddr",
                    "--export-all",
                    "--informative-errors",
                    f"--base-path={self.root}",
                    "--listen=127.0.0.1",
                    f"--port={self.port}",
                    str(self.root),
                ],
                stdout=log,
                stderr=log,
                env=_git_env(self.root / ".home"),
            )
        _wait_for_port(self.port, self.process, "git daemon", self.log)
        return self

    def url(self, repo: Repo) -> str:
        return f"git://127.0.0.1:{self.port}/{repo.bare.name}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class HttpGitServer:
    """Nginx with basic auth in front of git-http-backend (through fcgiwrap), serving every repository under
    `root` on http://127.0.0.1:PORT/NAME.git to one user."""

    def __init__(self, root: Path, username: str, password: str) -> None:
        self.root = root
        self.username = username
        self.password = password
        self.port = free_port()
        self.dir = root / f".http-{self.port}"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> HttpGitServer:
        self.dir.mkdir(parents=True)
        (self.dir / "tmp").mkdir()
        socket_path = self.dir / "fcgi.sock"
        (self.dir / "htpasswd").write_text(f"{self.username}:{{PLAIN}}{self.password}\n")
        log = self.dir / "server.log"
        with log.open("ab") as sink:
            fcgi = subprocess.Popen(
                ["fcgiwrap", "-c", "4", "-s", f"unix:{socket_path}"], stdout=sink, stderr=sink
            )
        self.processes.append(fcgi)
        deadline = time.monotonic() + START_SECONDS
        while not socket_path.exists():
            if fcgi.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fcgiwrap did not start: {log.read_text(errors='replace')}")
            time.sleep(0.02)
        conf = self.dir / "nginx.conf"
        temp = self.dir / "tmp"
        conf.write_text(
            f"""
user root root;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    fastcgi_temp_path {temp}/fastcgi;
    proxy_temp_path {temp}/proxy;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            auth_basic "git";
            auth_basic_user_file {self.dir}/htpasswd;
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME {HTTP_BACKEND};
            fastcgi_param GIT_PROJECT_ROOT {self.root};
            fastcgi_param GIT_HTTP_EXPORT_ALL "";
            fastcgi_param GIT_PROTOCOL $http_git_protocol;
            fastcgi_param PATH_INFO $uri;
            fastcgi_param REMOTE_USER $remote_user;
            fastcgi_pass unix:{socket_path};
        }}
    }}
}}
"""
        )
        with log.open("ab") as sink:
            nginx = subprocess.Popen(
                ["nginx", "-c", str(conf), "-g", "daemon off;"], stdout=sink, stderr=sink
            )
        self.processes.append(nginx)
        _wait_for_port(self.port, nginx, "nginx", log)
        return self

    def url(self, repo: Repo) -> str:
        return f"http://127.0.0.1:{self.port}/{repo.bare.name}"

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
