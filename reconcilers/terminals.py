"""Terminal sessions in containers: the Docker backend the API runs SSH and web terminal sessions with.

One container per session, made from the site's image (Director's site image for static sites, and for
sftp, which needs only its python3), with the isolation the site's own service has: the site's directory
at /site, the site's uid (never root), its env, its CPU, memory (no swap beyond it) and process limits, a
read-only root with tmpfs /tmp and /run, no capabilities, no new privileges, open files bounded, no logs
kept, on the sites' network (sftp gets no network): reconcilers/isolation.py. Its home
is /site/private/home. The container is removed when the session ends.

The session's bytes flow over Docker's attach stream, read and written on the event loop (a raw HTTP
upgrade on the engine's unix socket), so a session holds no thread.

A container outlives its session only if the API process dies: each carries the process that made it
(pid and start time), and the sweep at start-up and every resync period removes those whose process is
gone, those of this process no session holds, and any older than the longest session.

Registered by orchestrator/api_server.py; the API knows it only as api.terminals.TerminalBackend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from reconcilers import sftp_server
from reconcilers.docker_calls import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_ROLE,
    engine_unreachable,
    make_client,
)
from reconcilers.files import FIRST_SITE_UID
from reconcilers.isolation import DROPPED_CAPABILITIES, ULIMITS
from reconcilers.local_images import BASE_ALIASES, ImageBuildError, resolve_site_image
from specs.config import Settings
from specs.terminal import STDERR, STDOUT, PtySize, Refused, TerminalRequest

log = logging.getLogger("director.terminals")

# A busy engine can give up joining a container to the sites' overlay network ("Could not attach to
# network ...: context deadline exceeded") and succeed at the next try: the session waits, not fails.
START_ATTEMPTS = 3


def _is_transient_start_failure(error: BaseException) -> bool:
    return isinstance(error, docker.errors.APIError) and "context deadline exceeded" in str(error)


UNREACHABLE = "the Docker engine is not reachable, so no session can start now; try again in a moment"
ROLE = "terminal"
LABEL_TERMINAL_SITE = "io.director.terminal.site"  # not io.director.site: these must not wake the site
LABEL_TERMINAL_USER = "io.director.terminal.user"
LABEL_TERMINAL_SESSION = "io.director.terminal.session"
LABEL_TERMINAL_OWNER = "io.director.terminal.owner"
LABEL_TERMINAL_STARTED = "io.director.terminal.started"
SITE_MOUNT = "/site"
HOME = "/site/private/home"
TMPFS = "rw,nosuid,nodev,size=64m,mode=1777"
READ_CHUNK = 64 * 1024
# A site's shell: umask 007 as the site's service has (the edge reads public/ through the group), bash
# when the image has it; a terminal session first takes its size (the engine resizes only after start).
_PREAMBLE = (
    'umask 007; mkdir -p "$HOME" 2>/dev/null; cd /site; '
    'if [ -n "$DIRECTOR_TTY_SIZE" ]; then stty $DIRECTOR_TTY_SIZE 2>/dev/null; fi; '
    "unset DIRECTOR_TTY_SIZE; "
)
SHELL_SCRIPT = _PREAMBLE + "if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l"
EXEC_SCRIPT = _PREAMBLE + 'if [ -x /bin/bash ]; then exec /bin/bash -c "$1"; fi; exec /bin/sh -c "$1"'
# Sent as the program text: nothing is installed in the image, whichever it is.
SFTP_SERVER_SOURCE = Path(sftp_server.__file__).read_text()
SFTP_SCRIPT = 'umask 007; exec python3 -I -c "$1" /site'


def process_start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_alive(owner: str) -> bool:
    pid, _, ticks = owner.partition(":")
    return pid.isdigit() and process_start_ticks(int(pid)) == ticks


def _unix_socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return "/var/run/docker.sock"
    if host.startswith("unix://"):
        return host.removeprefix("unix://")
    raise RuntimeError(f"terminal sessions need the Docker engine's unix socket, not DOCKER_HOST={host}")


class DockerTerminal:
    """One session's container and its attach stream."""

    def __init__(
        self,
        backend: DockerTerminals,
        container_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tty: bool,
    ) -> None:
        self._backend = backend
        self.container_id = container_id
        self._reader = reader
        self._writer = writer
        self._tty = tty
        self._closed = False

    async def read(self) -> tuple[int, bytes] | None:
        if self._tty:
            data = await self._reader.read(READ_CHUNK)
            return (STDOUT, data) if data else None
        # Without a terminal Docker multiplexes: an 8-byte header (stream, 0, 0, 0, length) per frame.
        try:
            header = await self._reader.readexactly(8)
            stream, length = header[0], struct.unpack(">I", header[4:])[0]
            data = await self._reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return None
        return (STDERR if stream == 2 else STDOUT), data

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            return
        self._writer.write(data)
        await self._writer.drain()

    async def write_eof(self) -> None:
        # A terminal has no end of input (^D is a byte), and half-closing a terminal's attach stream makes
        # the engine drop its output; a pipe's end closes the container's stdin (StdinOnce).
        if not self._tty and not self._writer.is_closing() and self._writer.can_write_eof():
            self._writer.write_eof()

    async def resize(self, size: PtySize) -> None:
        if self._tty:
            with contextlib.suppress(docker.errors.APIError):
                await asyncio.to_thread(self._backend.api.resize, self.container_id, size.rows, size.cols)

    async def exit_status(self) -> int | None:
        try:
            result = await asyncio.to_thread(self._backend.api.wait, self.container_id, timeout=30)
        except Exception as error:  # the engine's, or the wait's timeout: the status is unknown then
            log.warning("waiting for terminal container %s failed: %s", self.container_id[:12], error)
            return None
        code = result.get("StatusCode")
        return int(code) if isinstance(code, int) else None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        await asyncio.to_thread(self._backend.remove, self.container_id)


class DockerTerminals:
    """The terminal backend: starts, counts and sweeps terminal containers of this Director instance."""

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None) -> None:
        self._settings = settings
        self._client = client
        self._client_lock = threading.Lock()
        self._socket_path = _unix_socket_path()
        pid = os.getpid()
        self.owner = f"{pid}:{process_start_ticks(pid)}"
        self._live: set[str] = set()
        self._lock = threading.Lock()
        self._site_image: str | None = None
        self._stop = threading.Event()

    def _docker(self) -> docker.DockerClient:
        # Made at the first use: the API starts, and serves all but terminals, while Docker is down.
        with self._client_lock:
            if self._client is None:
                self._client = make_client()
            return self._client

    @property
    def api(self) -> Any:
        return self._docker().api

    # ---- sweeping ------------------------------------------------------------------------------------

    def _terminal_filter(self, *more: str) -> dict[str, list[str]]:
        return {
            "label": [
                f"{LABEL_MANAGED}=true",
                f"{LABEL_INSTANCE}={self._settings.instance}",
                f"{LABEL_ROLE}={ROLE}",
                *more,
            ]
        }

    def sweep(self) -> list[str]:
        """Remove the terminal containers no session holds; return their names."""
        longest = float(self._settings.shell_max_session_seconds) + 60
        removed = []
        for container in self.api.containers(all=True, filters=self._terminal_filter()):
            labels = container.get("Labels") or {}
            owner = labels.get(LABEL_TERMINAL_OWNER, "")
            started = float(labels.get(LABEL_TERMINAL_STARTED, "0") or 0)
            with self._lock:
                held = container["Id"] in self._live
            if owner == self.owner:
                # A container is labelled before this process holds it: give the start a moment.
                orphan = not held and time.time() - started > 60
            else:
                orphan = not _owner_alive(owner)
            if orphan or time.time() - started > longest:
                self.remove(container["Id"])
                removed.append(
                    container["Names"][0].lstrip("/") if container.get("Names") else container["Id"]
                )
        if removed:
            log.info(
                "removed %d terminal container(s) no session holds: %s", len(removed), ", ".join(removed)
            )
        return removed

    def start_sweeping(self) -> None:
        """Sweep now, then every resync period, in a daemon thread: a process start never waits for Docker."""

        def loop() -> None:
            while True:
                try:
                    self.sweep()
                except Exception as error:  # a failed sweep is retried at the next period
                    log.warning("sweeping terminal containers failed: %s", error)
                if self._stop.wait(float(self._settings.resync_seconds)):
                    return

        threading.Thread(target=loop, name="terminal-sweep", daemon=True).start()

    def stop_sweeping(self) -> None:
        self._stop.set()

    def remove(self, container_id: str) -> None:
        with self._lock:
            self._live.discard(container_id)
        try:
            self.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            # "removal already in progress" is someone else finishing the job.
            if "in progress" not in str(error):
                log.warning("removing terminal container %s failed: %s", container_id[:12], error)

    # ---- sessions ------------------------------------------------------------------------------------

    async def sessions_of(self, username: str) -> set[str]:
        found = await asyncio.to_thread(
            self.api.containers, all=True, filters=self._terminal_filter(f"{LABEL_TERMINAL_USER}={username}")
        )
        return {
            str((container.get("Labels") or {}).get(LABEL_TERMINAL_SESSION, container["Id"]))
            for container in found
        }

    def _default_image(self) -> str:
        if self._site_image is None:
            try:
                self._site_image = resolve_site_image(self._docker(), self._settings)
            except ImageBuildError as error:
                raise Refused(f"the site image is not available: {error}") from None
        return self._site_image

    def _image_for(self, request: TerminalRequest) -> str:
        requested = request.site.spec.image or ""
        if request.kind == "sftp" or not requested or requested in BASE_ALIASES:
            return self._default_image()
        return requested

    def _uid_of(self, site: str) -> int:
        try:
            uid = (self._settings.sites_dir / site).lstat().st_uid
        except FileNotFoundError:
            raise Refused(f'site "{site}" has no directory yet; try again once it is reconciled') from None
        if uid < FIRST_SITE_UID:
            raise Refused(f'site "{site}" has no uid of its own yet; try again once it is reconciled')
        return uid

    def _create(self, request: TerminalRequest) -> str:
        site = request.site
        uid = self._uid_of(site.name)
        environment = {**site.spec.env, "HOME": HOME, "SITE_NAME": site.name}
        if request.term:
            environment["TERM"] = request.term
        if request.pty is not None:
            environment["DIRECTOR_TTY_SIZE"] = f"rows {request.pty.rows} cols {request.pty.cols}"
        if request.kind == "shell":
            command = ["sh", "-c", SHELL_SCRIPT]
        elif request.kind == "exec":
            command = ["sh", "-c", EXEC_SCRIPT, "sh", request.command or ""]
        else:
            command = ["sh", "-c", SFTP_SCRIPT, "sh", SFTP_SERVER_SOURCE]
        resources = site.spec.resources
        host_config = self.api.create_host_config(
            binds=[f"{self._settings.sites_dir / site.name}:{SITE_MOUNT}:rw"],
            tmpfs={"/tmp": TMPFS, "/run": TMPFS},
            read_only=True,
            nano_cpus=round(resources.cpus * 1e9),
            mem_limit=resources.memory_bytes,
            memswap_limit=resources.memory_bytes,
            pids_limit=resources.pids,
            ulimits=[docker.types.Ulimit(name=u["Name"], soft=u["Soft"], hard=u["Hard"]) for u in ULIMITS],
            cap_drop=DROPPED_CAPABILITIES,
            security_opt=["no-new-privileges"],
            network_mode="none" if request.kind == "sftp" else self._settings.network,
            init=True,
            log_config={"Type": "none", "Config": {}},
        )
        labels = {
            LABEL_MANAGED: "true",
            LABEL_INSTANCE: self._settings.instance,
            LABEL_ROLE: ROLE,
            LABEL_TERMINAL_SITE: site.name,
            LABEL_TERMINAL_USER: request.username,
            LABEL_TERMINAL_SESSION: request.session_id,
            LABEL_TERMINAL_OWNER: self.owner,
            LABEL_TERMINAL_STARTED: f"{time.time():.0f}",
        }
        arguments: dict[str, Any] = {
            "image": self._image_for(request),
            "command": command,
            "user": f"{uid}:{uid}",
            "working_dir": SITE_MOUNT,
            "environment": environment,
            "labels": labels,
            "host_config": host_config,
            "tty": request.pty is not None,
            "stdin_open": True,
            "detach": True,
        }
        config = self.api.create_container_config(**arguments)
        # When the relay's attach stream ends its input, the container's stdin closes (docker run -i).
        config["StdinOnce"] = True
        name = f"{self._settings.instance}-term-{site.name}-{request.session_id}"
        try:
            try:
                created = self.api.create_container_from_config(config, name)
            except docker.errors.ImageNotFound:
                self.api.pull(arguments["image"])
                created = self.api.create_container_from_config(config, name)
        except docker.errors.APIError as error:
            raise Refused(
                f"the session's container could not be made: {error.explanation or error}"
            ) from None
        container_id = str(created["Id"])
        with self._lock:
            self._live.add(container_id)
        return container_id

    async def _attach(self, container_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_unix_connection(self._socket_path, limit=4 * READ_CHUNK)
        version = self.api._version
        writer.write(
            f"POST /v{version}/containers/{container_id}/attach?stream=1&stdin=1&stdout=1&stderr=1 "
            "HTTP/1.1\r\n"
            "Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status_line and " 200 " not in status_line:
            writer.close()
            raise Refused(f"attaching to the session's container failed: {status_line}")
        return reader, writer

    async def open(self, request: TerminalRequest) -> DockerTerminal:
        try:
            container_id = await asyncio.to_thread(self._create, request)
        except Exception as error:
            if engine_unreachable(error):
                raise Refused(UNREACHABLE) from None
            raise
        try:
            # Attached before it starts, so not a byte of its output is lost.
            reader, writer = await self._attach(container_id)
            try:
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(_is_transient_start_failure),
                    stop=stop_after_attempt(START_ATTEMPTS),
                    wait=wait_exponential(multiplier=0.5, max=4),
                    reraise=True,
                ):
                    with attempt:
                        await asyncio.to_thread(self.api.start, container_id)
            except docker.errors.APIError as error:
                writer.close()
                raise Refused(
                    f"the session's container did not start: {error.explanation or error}"
                ) from None
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self.remove, container_id))
            raise
        terminal = DockerTerminal(self, container_id, reader, writer, tty=request.pty is not None)
        if request.pty is not None:
            await terminal.resize(request.pty)
        return terminal
