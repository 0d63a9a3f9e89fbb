"""The edge's Nginx configuration on disk: rendering, validation by the host's `nginx -t`, install, reload.

Layout of settings.edge_dir (bind-mounted at the same path into the edge, so what the host validated is
byte for byte what the edge loads):
    nginx.conf           main configuration (static for a given Director and settings)
    site_locations.conf  what a request gets by its site's route (static)
    routes.conf          every site's last good route (replaced whole, by rename, after validation)
    fragments/           each site's last good fragment, so a restart keeps serving what was good
    staging/             candidates being validated; never included by the live nginx.conf
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import jinja2

from reconcilers.docker_calls import SWARM_SERVICE_NAME_LABEL
from specs.config import Settings
from specs.models import DEFAULT_UPLOAD_LIMIT, parse_memory

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "nginx_templates"
SITE_PORT = 8080
DEFAULT_UPLOAD_LIMIT_BYTES = parse_memory(DEFAULT_UPLOAD_LIMIT)
MAIN_CONF = "nginx.conf"
LOCATIONS_CONF = "site_locations.conf"
ROUTES_CONF = "routes.conf"
NGINX_BINARY = "nginx"

# The edge directory is written by the platform and routes reconcilers, possibly from two worker threads.
_edge_dir_locks: dict[Path, threading.Lock] = {}
_edge_dir_locks_guard = threading.Lock()


class NginxRejected(Exception):
    """`nginx -t` refused a candidate configuration; the message is Nginx's own."""


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


def render_static_files(environment: jinja2.Environment, settings: Settings) -> dict[str, str]:
    """nginx.conf and site_locations.conf: they change only with Director itself or its settings."""
    return {
        MAIN_CONF: environment.get_template("nginx.conf.j2").render(),
        LOCATIONS_CONF: environment.get_template("site_locations.conf.j2").render(
            sites_dir=settings.sites_dir,
            service_prefix=settings.service_name(""),
            site_port=SITE_PORT,
        ),
    }


def render_routes(
    environment: jinja2.Environment, host_entries: str, route_entries: str, servers: str
) -> str:
    return environment.get_template("routes.conf.j2").render(
        host_entries=host_entries,
        route_entries=route_entries,
        servers=servers,
        default_upload_limit=DEFAULT_UPLOAD_LIMIT_BYTES,
    )


_LOG_PREFIX = re.compile(r"^(nginx: )?([0-9/]+ [0-9:]+ )?\[(emerg|alert|crit)\] [0-9]+#[0-9]+: ")


def _first_error(stderr: str, staged: Path) -> str:
    lines = [line.replace(f"{staged}/", "") for line in stderr.splitlines() if line.strip()]
    errors = [_LOG_PREFIX.sub("", line) for line in lines if _LOG_PREFIX.match(line)] or lines
    return f"nginx -t: {errors[0]}" if errors else "nginx -t failed without a message"


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
        result = subprocess.run(
            [
                NGINX_BINARY, "-t", "-q", "-e", "stderr",
                "-c", str(staged / MAIN_CONF),
                "-g", f"pid {staged}/nginx.pid;",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise NginxRejected(_first_error(result.stderr, staged))
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def install_staged(layout: EdgeLayout, staged: Path, names: list[str]) -> None:
    """Move validated files into place, each by one atomic rename, then drop the staging directory."""
    for name in names:
        os.replace(staged / name, layout.edge_dir / name)
    shutil.rmtree(staged, ignore_errors=True)


def discard_staged(staged: Path) -> None:
    shutil.rmtree(staged, ignore_errors=True)


def reload_edge(client: docker.DockerClient, settings: Settings) -> int:
    """SIGHUP the edge's containers on this node: Nginx re-reads its files, no Docker exec. Blocking."""
    containers: list[Any] = client.containers.list(
        filters={"label": f"{SWARM_SERVICE_NAME_LABEL}={settings.edge_service}", "status": "running"}
    )
    for container in containers:
        container.kill(signal="SIGHUP")
    return len(containers)
