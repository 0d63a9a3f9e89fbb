"""The edge's Nginx configuration on disk: rendering, validation by the host's `nginx -t`, install, reload.

Layout of settings.edge_dir (bind-mounted at the same path into the edge, so what the host validated is
byte for byte what the edge loads):
    nginx.conf           main configuration (static for a given Director and settings)
    site_locations.conf  what a request gets by its site's route (static)
    routes.conf          the maps and the default server, including one generation of routes.d/ (replaced
                         whole, by rename, after validation)
    routes.d/<gen>/      the sites' routes in shard files, never changed once written (see reconcilers.edge)
    staging/             candidates being validated; never included by the live nginx.conf

nginx.conf and routes.conf each carry a revision that the edge's default server answers at REVISION_PATH:
after a reload Director waits until the edge answers the new one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import jinja2

from reconcilers.docker_calls import SWARM_SERVICE_NAME_LABEL
from reconcilers.route_plan import SiteRoute
from specs.config import Settings
from specs.models import DEFAULT_UPLOAD_LIMIT, parse_memory
from store.durable import fsync_directory

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "nginx_templates"
SITE_PORT = 8080
DEFAULT_UPLOAD_LIMIT_BYTES = parse_memory(DEFAULT_UPLOAD_LIMIT)
MAIN_CONF = "nginx.conf"
LOCATIONS_CONF = "site_locations.conf"
ROUTES_CONF = "routes.conf"
ROUTES_DIR = "routes.d"
NGINX_BINARY = "nginx"

# Answered by the edge's default server with the revisions of the files its workers loaded.
REVISION_PATH = "/.director-edge/revision"
# After a reload Nginx's old workers keep accepting connections, with the old files, until the new ones
# are up: a revision counts as served once this many fresh connections in a row answered it.
CONSECUTIVE_ANSWERS = 3
PROBE_TIMEOUT_SECONDS = 1.0
PROBE_PAUSE_SECONDS = 0.005

# The edge directory is written by the platform and routes reconcilers, possibly from two worker threads.
_edge_dir_locks: dict[Path, threading.Lock] = {}
_edge_dir_locks_guard = threading.Lock()


class NginxRejected(Exception):
    """`nginx -t` refused a candidate configuration; the message is Nginx's own.

    `file` (relative to the configuration's directory) and `line` say where, when Nginx said so.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


def edge_dir_lock(edge_dir: Path) -> threading.Lock:
    with _edge_dir_locks_guard:
        return _edge_dir_locks.setdefault(edge_dir.resolve(), threading.Lock())


def template_environment(templates_dir: Path = TEMPLATES_DIR) -> jinja2.Environment:
    # Every value reaching a template was constrained by specs.models to characters Nginx takes literally.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True)
class EdgeLayout:
    edge_dir: Path

    @property
    def main_conf(self) -> Path:
        return self.edge_dir / MAIN_CONF

    @property
    def fragments_dir(self) -> Path:
        return self.edge_dir / "fragments"

    @property
    def staging_dir(self) -> Path:
        return self.edge_dir / "staging"

    @property
    def routes_dir(self) -> Path:
        return self.edge_dir / ROUTES_DIR


def site_cache_dir(settings: Settings, name: str) -> Path:
    return settings.edge_cache_dir / name


def cache_path_line(settings: Settings, route: SiteRoute) -> str:
    """The proxy_cache_path of a site's own cache zone, `director_cache_<name>` (nginx.conf.j2 names it).

    One zone per site, so one site's pages never push out another's; its keys take at most 1 MB of shared
    memory (some 8,000 pages), its files at most the size the site asked for, on the disk of the state
    directory (an edge restarted keeps them).
    """
    return (
        f"proxy_cache_path {site_cache_dir(settings, route.name)} levels=1:2 "
        f"keys_zone=director_cache_{route.name}:1m max_size={route.cache_bytes} "
        f"inactive={route.stale_seconds}s use_temp_path=off;\n"
    )


def _revision(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def render_static_files(environment: jinja2.Environment, settings: Settings) -> dict[str, str]:
    """nginx.conf and site_locations.conf: they change only with Director itself or its settings.

    nginx.conf carries the revision of both (see edge_revision), so the edge can say which it loaded.
    """
    locations = environment.get_template("site_locations.conf.j2").render(
        sites_dir=settings.sites_dir,
        service_prefix=settings.service_name(""),
        site_port=SITE_PORT,
        # Whole milliseconds: Nginx takes no fractions of a unit.
        proxy_connect_timeout=f"{max(1, round(settings.proxy_connect_timeout_seconds * 1000))}ms",
        proxy_timeout=f"{max(1, round(settings.proxy_timeout_seconds * 1000))}ms",
    )
    main = environment.get_template("nginx.conf.j2")
    revision = _revision(main.render(edge_revision=""), locations)
    return {MAIN_CONF: main.render(edge_revision=revision), LOCATIONS_CONF: locations}


def edge_revision(static_files: Mapping[str, str]) -> str:
    """The revision the edge answers for these static files (as made by render_static_files)."""
    found = re.search(r'\$director_edge_revision \{ default "([0-9a-f]*)"; \}', static_files[MAIN_CONF])
    if found is None:
        raise ValueError(f"{MAIN_CONF} does not define $director_edge_revision")
    return found.group(1)


def routes_revision(host_entries: str, route_entries: str, servers: str) -> str:
    """A hash of the routes: the same routes always make the same revision, so an unchanged file stays so."""
    return _revision(host_entries, route_entries, servers, str(DEFAULT_UPLOAD_LIMIT_BYTES))


def render_routes(
    environment: jinja2.Environment,
    host_entries: str = "",
    route_entries: str = "",
    servers: str = "",
    generation: str | None = None,
) -> str:
    """routes.conf: the given entries, and those of routes.d/`generation` (whose name is its revision)."""
    return environment.get_template("routes.conf.j2").render(
        host_entries=host_entries,
        route_entries=route_entries,
        servers=servers,
        generation=generation,
        routes_dir=ROUTES_DIR,
        default_upload_limit=DEFAULT_UPLOAD_LIMIT_BYTES,
        revision=generation or routes_revision(host_entries, route_entries, servers),
    )


_LOG_PREFIX = re.compile(r"^(nginx: )?([0-9/]+ [0-9:]+ )?\[(emerg|alert|crit)\] [0-9]+#[0-9]+: ")
_WHERE = re.compile(r" in (\S+):([0-9]+)$")


def _rejection(stderr: str, staged: Path) -> NginxRejected:
    lines = [line.replace(f"{staged}/", "") for line in stderr.splitlines() if line.strip()]
    errors = [_LOG_PREFIX.sub("", line) for line in lines if _LOG_PREFIX.match(line)] or lines
    if not errors:
        return NginxRejected("nginx -t failed without a message")
    where = _WHERE.search(errors[0])
    if where is None:
        return NginxRejected(f"nginx -t: {errors[0]}")
    return NginxRejected(f"nginx -t: {errors[0]}", where.group(1), int(where.group(2)))


def stage_and_validate(layout: EdgeLayout, files: Mapping[str, str], timeout: float) -> Path:
    """Write the live files overlaid with `files` into a fresh staging directory and `nginx -t` it there.

    Returns the staging directory (on the edge directory's filesystem, so its files can be renamed into
    place atomically); raises NginxRejected with Nginx's message, leaving nothing behind.
    """
    layout.staging_dir.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix="candidate-", dir=layout.staging_dir))
    try:
        for name in (MAIN_CONF, LOCATIONS_CONF, ROUTES_CONF):
            target = staged / name
            if name in files:
                target.write_text(files[name])
            elif (layout.edge_dir / name).exists():
                shutil.copyfile(layout.edge_dir / name, target)
        # routes.conf includes routes.d/<generation>/ by a relative path: the same directories, seen here.
        if layout.routes_dir.is_dir():
            (staged / ROUTES_DIR).symlink_to(layout.routes_dir.resolve(), target_is_directory=True)
        result = subprocess.run(
            [
                NGINX_BINARY,
                "-t",
                "-q",
                "-e",
                "stderr",
                "-c",
                str(staged / MAIN_CONF),
                "-g",
                f"pid {staged}/nginx.pid;",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise _rejection(result.stderr, staged)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def install_staged(layout: EdgeLayout, staged: Path, names: list[str]) -> None:
    """Move validated files into place, each by one atomic rename, then drop the staging directory.

    Each file reaches the disk before its rename, and the renames before this returns: after a crash, a
    restarted edge finds either the old file or the whole new one.
    """
    for name in names:
        with open(staged / name, "rb") as written:
            os.fsync(written.fileno())
        os.replace(staged / name, layout.edge_dir / name)
    fsync_directory(layout.edge_dir)
    shutil.rmtree(staged, ignore_errors=True)


def discard_staged(staged: Path) -> None:
    shutil.rmtree(staged, ignore_errors=True)


@dataclass(frozen=True)
class EdgeReload:
    """The edge containers on this node that were sent SIGHUP, each with the pids of its workers before.

    `started` has each of those pids' start time as /proc says, when this process sees the edge's processes
    under the pids Docker gives (the same pid namespace): their fate is then read there, not asked of Docker.
    """

    old_workers: Mapping[str, frozenset[str]]
    started: Mapping[str, str] = field(default_factory=dict)

    @property
    def containers(self) -> int:
        return len(self.old_workers)


# Container id -> the pid of its Nginx master, once /proc showed it under the pid Docker gave.
_masters: dict[str, str] = {}
_MASTER_TITLE = "nginx: master process"


def _proc_title(pid: str) -> str | None:
    """The title a process set for itself (Nginx rewrites its argv), or None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def _proc_start(pid: str) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22, counted after the command name, which is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[-1].split()[19]


def _proc_children(pid: str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None


def _workers_from_proc(container_id: str) -> dict[str, str] | None:
    """pid -> title of each Nginx worker under the container's master, read from /proc; None if unknown."""
    master = _masters.get(container_id)
    if master is None or not (_proc_title(master) or "").startswith(_MASTER_TITLE):
        return None
    children = _proc_children(master)
    if children is None:
        return None
    titles = {pid: _proc_title(pid) or "" for pid in children}
    return {pid: title for pid, title in titles.items() if "worker process" in title}


def _workers(client: docker.DockerClient, container_id: str) -> dict[str, str]:
    """pid -> title of each Nginx worker in the container (pids as the host sees them)."""
    known = _workers_from_proc(container_id)
    if known is not None:
        return known
    top = client.api.top(container_id, ps_args="-o pid,args")
    for pid, title in top["Processes"]:
        # Remembered only when /proc here shows the same master under the same pid.
        if title.startswith(_MASTER_TITLE) and (_proc_title(pid) or "").startswith(_MASTER_TITLE):
            _masters[container_id] = pid
    return {pid: title for pid, title in top["Processes"] if "worker process" in title}


def reload_edge(client: docker.DockerClient, settings: Settings) -> EdgeReload:
    """SIGHUP the edge's containers on this node: Nginx re-reads its files, no Docker exec. Blocking."""
    containers: list[Any] = client.containers.list(
        filters={"label": f"{SWARM_SERVICE_NAME_LABEL}={settings.edge_service}", "status": "running"}
    )
    old_workers: dict[str, frozenset[str]] = {}
    started: dict[str, str] = {}
    for container in containers:
        try:
            old_workers[container.id] = frozenset(_workers(client, container.id))
        except docker.errors.APIError:  # stopped since it was listed: nothing of it to wait for
            old_workers[container.id] = frozenset()
        master = _masters.get(container.id)
        if master is not None:
            for pid in old_workers[container.id]:
                start = _proc_start(pid)
                if start is not None:
                    started[pid] = start
        if master is not None and (_proc_title(master) or "").startswith(_MASTER_TITLE):
            # Straight to the master /proc shows under the pid Docker gave: the same signal, no API call.
            os.kill(int(master), signal.SIGHUP)
        else:
            container.kill(signal="SIGHUP")
    return EdgeReload(old_workers, started)


def old_workers_accepting(client: docker.DockerClient, reload: EdgeReload) -> int:
    """How many workers from before `reload` still accept connections (with the files they loaded then).

    Nginx tells the old workers to quit only once the new ones run; a quitting worker retitles itself
    "worker process is shutting down" just before it closes its listening sockets.
    """
    accepting = 0
    for container_id, pids in reload.old_workers.items():
        if all(pid in reload.started for pid in pids):
            # The start time tells a worker from a new process that got its pid after it exited.
            accepting += sum(
                1
                for pid in pids
                if _proc_start(pid) == reload.started[pid]
                and (_proc_title(pid) or "").endswith("worker process")
            )
            continue
        try:
            workers = _workers(client, container_id)
        except docker.errors.APIError:  # gone or stopped: its workers accept nothing
            continue
        accepting += sum(1 for pid in pids if workers.get(pid, "").endswith("worker process"))
    return accepting


def served_revisions(port: int, timeout: float = PROBE_TIMEOUT_SECONDS) -> dict[str, str]:
    """Ask the edge, on a fresh connection to its published port here, which revisions it serves.

    HTTP/1.0 without a Host header always reaches the default server, whatever host names sites claim.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(f"GET {REVISION_PATH} HTTP/1.0\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    head, _, body = answer.decode(errors="replace").partition("\r\n\r\n")
    if not head.startswith("HTTP/1.1 200"):
        return {}
    return dict(part.split("=", 1) for part in body.split() if "=" in part)


def wait_until_served(
    settings: Settings,
    part: str,
    revision: str,
    seconds: float,
    client: docker.DockerClient | None = None,
    reload: EdgeReload | None = None,
) -> bool:
    """Whether the edge on this node answers `revision` for `part` ("routes" or "edge") within `seconds`.

    After `reload` (sent through `client`), first until none of the workers from before it still accepts
    connections: under load an old worker may take its time to hear it must quit. Blocking. False when
    the edge did not (not loaded yet, not running, or its port does not answer).
    """
    deadline = time.monotonic() + seconds

    def answers() -> bool:
        timeout = min(PROBE_TIMEOUT_SECONDS, max(0.05, deadline - time.monotonic()))
        try:
            return served_revisions(settings.http_port, timeout).get(part) == revision
        except OSError:
            return False

    # The cheap probe first: a new worker answers only once the master has loaded the files and started
    # the new workers, and only then does it tell the old ones to quit.
    if not _until(answers, deadline):
        return False
    old_workers_quit = (
        client is None
        or reload is None
        or _until(lambda: not old_workers_accepting(client, reload), deadline)
    )
    if not old_workers_quit:
        return False
    return _until(lambda: all(answers() for _ in range(CONSECUTIVE_ANSWERS)), deadline)


def _until(condition: Callable[[], bool], deadline: float) -> bool:
    while not condition():
        if time.monotonic() + PROBE_PAUSE_SECONDS >= deadline:
            return False
        time.sleep(PROBE_PAUSE_SECONDS)
    return True
