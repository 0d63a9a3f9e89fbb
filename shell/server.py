"""`director shell-server`: SSH into a shell of one's own site, on AsyncSSH.

    ssh -p 2222 alice@HOST                    a menu of alice's sites
    ssh -p 2222 alice/hello@HOST              straight into site hello
    ssh -p 2222 alice/hello@HOST 'ls -l'      one command, its output and exit status
    sftp -P 2222 alice/hello@HOST             files, confined to the site's directory (scp too)

It holds only its `/shell-server/`-scoped credential and never talks to Docker: it asks the API who a key
or password belongs to and which sites that person may enter, opens a terminal session for (person, site)
over a websocket, and relays bytes between the SSH channel and that socket (protocol in
api/terminal_socket.py). The session runs in a container of the site (reconcilers/terminals.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from dataclasses import dataclass
from typing import Any

import asyncssh
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from shell.apiclient import ApiUnavailable, LoginRefused, ShellApi, ShellSite, ShellUser
from shell.config import ConfigError, ShellSettings, ensure_host_keys, fingerprints

log = logging.getLogger("director.shell")

# Input waiting for the API beyond this pauses the SSH channel (its window closes), so a fast upload
# cannot fill the server's memory.
INPUT_HIGH_WATER = 1 << 20
EXIT_REFUSED = 1
EXIT_LOST = 255
MENU_INPUT_LIMIT = 64


@dataclass(frozen=True)
class Login:
    """Who logged in on one connection, how, and the site their user name asked for, if any."""

    user: ShellUser
    site: str | None
    key_name: str | None


def split_username(username: str) -> tuple[str, str | None]:
    """`alice/hello` is alice asking for site hello; `alice` asks for the menu."""
    user, _, site = username.partition("/")
    return user, site or None


class DirectorSSHServer(asyncssh.SSHServer):
    """One SSH connection: its authentication, then its sessions."""

    def __init__(self, api: ShellApi, settings: ShellSettings) -> None:
        self._api = api
        self._settings = settings
        self._connection: asyncssh.SSHServerConnection | None = None
        self._address: str | None = None
        self._login: Login | None = None
        # The probe and the signed request ask about the same key: one question to the API.
        self._key_answers: dict[str, ShellUser | None] = {}

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connection = conn
        peer = conn.get_extra_info("peername")
        self._address = str(peer[0]) if peer else None

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return self._settings.passwords

    def public_key_auth_supported(self) -> bool:
        return True

    def _banner(self, message: str) -> None:
        if self._connection is not None and message:
            with contextlib.suppress(Exception):
                self._connection.send_auth_banner(message.rstrip() + "\r\n")

    async def validate_password(self, username: str, password: str) -> bool:
        user, site = split_username(username)
        try:
            found = await self._api.password_login(user, password, self._address)
        except LoginRefused as refused:
            self._banner(refused.message)
            return False
        except ApiUnavailable as error:
            log.error("password login of %s: %s", user, error)
            self._banner("Director cannot check logins right now; try again in a moment.")
            return False
        self._login = Login(found, site, None)
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        user, site = split_username(username)
        line = key.export_public_key("openssh").decode().strip()
        if line not in self._key_answers:
            try:
                self._key_answers[line] = await self._api.key_login(user, line)
            except LoginRefused:
                self._key_answers[line] = None
            except ApiUnavailable as error:
                log.error("key login of %s: %s", user, error)
                self._banner("Director cannot check logins right now; try again in a moment.")
                return False
        found = self._key_answers[line]
        if found is None:
            return False
        self._login = Login(found, site, found.key_name)
        return True

    def session_requested(self) -> asyncssh.SSHServerSession[bytes] | bool:
        if self._login is None:
            return False
        return DirectorSession(self._api, self._login, self._address)


class DirectorSession(asyncssh.SSHServerSession):  # type: ignore[type-arg]
    """One SSH session channel: a menu if no site was named, then a terminal session relayed to the API."""

    def __init__(self, api: ShellApi, login: Login, address: str | None) -> None:
        self._api = api
        self._login = login
        self._address = address
        self._channel: asyncssh.SSHServerChannel[bytes] | None = None
        self._kind = "shell"
        self._command: str | None = None
        self._term: str | None = None
        self._size: tuple[int, int] | None = None
        self._socket: ClientConnection | None = None
        self._pending: asyncio.Queue[bytes | dict[str, Any]] = asyncio.Queue()
        self._pending_bytes = 0
        self._paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        # While the menu runs, input is the menu's: kept here until read, from the session's first byte.
        self._in_menu = False
        self._menu_input = bytearray()
        self._menu_ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- what the client asks for ------------------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._channel = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Any) -> bool:
        self._term = term_type or None
        cols, rows = term_size[0], term_size[1]
        self._size = (cols or 80, rows or 24)
        return True

    def shell_requested(self) -> bool:
        self._kind = "shell"
        return True

    def exec_requested(self, command: str) -> bool:
        self._kind = "exec"
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            return False
        self._kind = "sftp"
        return True

    def session_started(self) -> None:
        self._in_menu = self._login.site is None and self._kind == "shell" and self._size is not None
        self._task = asyncio.get_running_loop().create_task(self._run())

    # ---- bytes from the client ---------------------------------------------------------------------

    def data_received(self, data: bytes, datatype: int | None) -> None:
        if self._in_menu:
            self._menu_input += data
            self._menu_ready.set()
            return
        self._queue(data)

    def eof_received(self) -> bool:
        self._queue({"eof": True})
        # Half-closed: the output still flows until the program ends.
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._size = (width or 80, height or 24)
        self._queue({"resize": {"cols": self._size[0], "rows": self._size[1]}})

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._menu_input += b"\x04"
        self._menu_ready.set()
        self._queue({"closed": True})

    def _queue(self, item: bytes | dict[str, Any]) -> None:
        self._pending.put_nowait(item)
        if isinstance(item, bytes):
            self._pending_bytes += len(item)
            if self._pending_bytes > INPUT_HIGH_WATER and not self._paused and self._channel is not None:
                self._paused = True
                self._channel.pause_reading()

    # ---- the session -------------------------------------------------------------------------------

    def _write(self, text: str, *, error: bool = False) -> None:
        if self._channel is None:
            return
        data = text.replace("\n", "\r\n").encode() if self._size is not None else text.encode()
        if error:
            self._channel.write_stderr(data)
        else:
            self._channel.write(data)

    def _exit(self, status: int) -> None:
        if self._channel is not None:
            with contextlib.suppress(Exception):
                self._channel.exit(status)

    async def _run(self) -> None:
        try:
            site = self._login.site or await self._choose_site()
            if site is None:
                self._exit(0 if self._size is not None else EXIT_REFUSED)
                return
            await self._session(site)
        except Exception as error:  # whatever went wrong, the person hears of it and the channel ends
            log.exception("session of %s failed", self._login.user.username)
            self._write(f"Director: the session failed: {error}\n", error=True)
            self._exit(EXIT_LOST)

    async def _session(self, site: str) -> None:
        request = {
            "user": self._login.user.username,
            "site": site,
            "kind": self._kind,
            "command": self._command,
            "term": self._term if self._size is not None else None,
            "pty": self._size is not None and self._kind != "sftp",
            "cols": self._size[0] if self._size else None,
            "rows": self._size[1] if self._size else None,
            "clientAddress": self._address,
            "key": self._login.key_name,
        }
        try:
            self._socket, _session_id = await self._api.open_session(request)
        except LoginRefused as refused:
            self._write(f"Director: {refused.message}\n", error=True)
            self._exit(EXIT_REFUSED)
            return
        except ApiUnavailable as error:
            log.error("opening a session for %s: %s", self._login.user.username, error)
            self._write("Director: sessions cannot be opened right now; try again in a moment.\n", error=True)
            self._exit(EXIT_LOST)
            return
        sender = asyncio.get_running_loop().create_task(self._send_input(self._socket))
        try:
            status = await self._receive_output(self._socket)
            # The client hears the status before the socket's closing handshake.
            self._exit(status)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await self._socket.close()

    async def _send_input(self, socket: ClientConnection) -> None:
        while True:
            item = await self._pending.get()
            if isinstance(item, bytes):
                self._pending_bytes -= len(item)
                if self._paused and self._pending_bytes < INPUT_HIGH_WATER // 2 and self._channel is not None:
                    self._paused = False
                    self._channel.resume_reading()
                await socket.send(item)
            elif item.get("closed"):
                await socket.close()
                return
            else:
                await socket.send(json.dumps(item))

    async def _receive_output(self, socket: ClientConnection) -> int:
        assert self._channel is not None
        try:
            async for message in socket:
                if isinstance(message, bytes):
                    if not message:
                        continue
                    await self._writable.wait()
                    if message[0] == 2:
                        self._channel.write_stderr(message[1:])
                    else:
                        self._channel.write(message[1:])
                    continue
                end = json.loads(message).get("end")
                if isinstance(end, dict):
                    status = end.get("status")
                    return status if isinstance(status, int) else EXIT_LOST
        except ConnectionClosed:
            pass
        return EXIT_LOST

    # ---- the menu ----------------------------------------------------------------------------------

    def _enterable(self) -> list[ShellSite]:
        user = self._login.user
        return [site for site in user.sites if user.admin or site.availability != "disabled"]

    async def _choose_site(self) -> str | None:
        user = self._login.user.username
        sites = self._enterable()
        if self._size is None or self._kind != "shell":
            names = ", ".join(site.name for site in sites) or "none"
            self._write(f"Director: say which site: ssh {user}/SITE@HOST (your sites: {names})\n", error=True)
            return None
        if not sites:
            self._write(f"Director: {user} has no site to enter.\n")
            return None
        lines = [f"Sites of {user}:"]
        lines += [f"  {number:2d}) {site.name}  ({site.type})" for number, site in enumerate(sites, start=1)]
        self._write("\n".join(lines) + "\n")
        try:
            while True:
                self._write("Enter a number or a name (q to quit): ")
                answer = await self._read_menu_line()
                if answer is None or answer.strip().lower() in ("q", "quit", "exit"):
                    return None
                choice = answer.strip()
                if choice.isdigit() and 1 <= int(choice) <= len(sites):
                    return sites[int(choice) - 1].name
                if any(site.name == choice for site in sites):
                    return choice
                if choice:
                    self._write(f"No site {choice!r} here.\n")
        finally:
            self._in_menu = False
            # What was typed after the choice is the shell's.
            rest = bytes(self._menu_input).lstrip(b"\r\n")
            self._menu_input.clear()
            if rest and rest != b"\x04":
                self._queue(rest)

    async def _read_menu_line(self) -> str | None:
        """One line typed into the menu, echoed as typed; None on ^C or ^D."""
        assert self._channel is not None
        line = bytearray()
        while True:
            while not self._menu_input:
                self._menu_ready.clear()
                await self._menu_ready.wait()
            byte = self._menu_input.pop(0)
            if byte in (3, 4):  # ^C, ^D
                self._write("\n")
                return None
            if byte in (10, 13):
                self._write("\n")
                return line.decode(errors="replace")
            if byte in (8, 127):
                if line:
                    line.pop()
                    self._channel.write(b"\b \b")
            elif 32 <= byte < 127 and len(line) < MENU_INPUT_LIMIT:
                line.append(byte)
                self._channel.write(bytes([byte]))


async def serve(settings: ShellSettings) -> None:
    keys = ensure_host_keys(settings.host_key_dir)
    api = ShellApi(settings.api_url, settings.token, settings.api_ca)
    server = await asyncssh.create_server(
        lambda: DirectorSSHServer(api, settings),
        settings.bind,
        settings.port,
        server_host_keys=keys,
        encoding=None,
        line_editor=False,
        allow_scp=False,
        # Logins are checked by the API, which makes each wrong password wait longer: no need for more.
        login_timeout=120,
    )
    print(
        f"Director shell server on {settings.bind}:{settings.port}, asking {settings.api_url}; host keys:\n"
        + "\n".join(f"  {line}" for line in fingerprints(keys)),
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        await api.aclose()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ShellSettings.from_env()
    except ConfigError as error:
        print(f"director shell-server: {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings))
    return 0
