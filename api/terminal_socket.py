"""The websockets terminal sessions run over: the shell server's and the browser's.

    /shell-server/v1/sessions     the SSH shell server, with its /shell-server/-scoped bearer credential;
                                  it says which user it authenticated and how, and what they want to run
    /ws/sites/NAME/terminal       the web terminal: the person logged in to the UI (Django session cookie),
                                  from a page of this same origin

Both speak one small protocol. The client's first message is a JSON text frame asking for the session
(the shell server: `{"user", "site", "kind": "shell"|"exec"|"sftp", "command", "term", "cols", "rows",
"pty", "clientAddress", "key"}`; the browser: `{"cols", "rows"}`). The server answers `{"started": ID}`
or `{"error": MESSAGE}` and closes. Then binary frames carry bytes: from the client, input; from the
server, output with a first byte saying which stream (1 stdout, 2 stderr). Text frames carry control:
`{"resize": {"cols", "rows"}}` and `{"eof": true}` from the client; `{"end": {"status", "reason"}}` from the
server, last, when the session is over.

ui/asgi.py routes websocket connections here; everything else goes to Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils import timezone

from api.auth import SHELL_SERVER_SCOPE, Principal, authenticate_header
from api.errors import ApiError
from api.models import SshKey
from api.terminal_backend import (
    STDERR,
    PtySize,
    Refused,
    SessionKind,
    TerminalRequest,
    TerminalSession,
    registered_terminal_backend,
)
from api.terminals import (
    SessionRecord,
    new_session_id,
    record_end,
    record_refusal,
    record_start,
    session_limit,
    site_for,
)
from api.views import in_worker_thread
from specs.models import Site

log = logging.getLogger("api.terminals")

SHELL_SERVER_SESSIONS = "/shell-server/v1/sessions"
BROWSER_TERMINAL = re.compile(r"^/ws/sites/(?P<site>[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)/terminal$")
OPEN_TIMEOUT_SECONDS = 30.0
MAX_COMMAND_CHARS = 64 * 1024
_KINDS: tuple[SessionKind, ...] = ("shell", "exec", "sftp")
# Close codes in the application range: why a socket was not taken.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Disconnected(Exception):
    """The client went away."""


class Socket:
    """One ASGI websocket connection, in the protocol's terms."""

    def __init__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.closed = False

    def header(self, name: str) -> str:
        wanted = name.lower().encode()
        for key, value in self.scope.get("headers", []):
            if key.lower() == wanted:
                return bytes(value).decode("latin-1")
        return ""

    @property
    def client_address(self) -> str | None:
        client = self.scope.get("client")
        return str(client[0]) if client else None

    async def accept(self) -> None:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            raise Disconnected
        await self._send({"type": "websocket.accept"})

    async def refuse(self, code: int) -> None:
        """Close before accepting: the client sees the handshake refused (HTTP 403)."""
        message = await self._receive()
        if message["type"] == "websocket.connect":
            await self._send({"type": "websocket.close", "code": code})
        self.closed = True

    async def receive(self) -> bytes | dict[str, Any]:
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self.closed = True
            raise Disconnected
        if message.get("bytes") is not None:
            return bytes(message["bytes"])
        try:
            parsed = json.loads(message.get("text") or "")
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    async def send_json(self, payload: dict[str, Any]) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "text": json.dumps(payload)})

    async def send_bytes(self, data: bytes) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "bytes": data})

    async def close(self, code: int = 1000) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self._send({"type": "websocket.close", "code": code})


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The websocket half of the ASGI application."""
    socket = Socket(scope, receive, send)
    path = scope.get("path", "")
    try:
        if path == SHELL_SERVER_SESSIONS:
            await _shell_server_session(socket)
            return
        match = BROWSER_TERMINAL.match(path)
        if match is not None:
            await _browser_session(socket, match.group("site"))
            return
        await socket.refuse(CLOSE_NOT_FOUND)
    except Disconnected:
        return


# ---- the shell server ----------------------------------------------------------------------------------


def _shell_server_principal(header: str) -> Principal:
    principal = authenticate_header(header, SHELL_SERVER_SESSIONS)
    if principal.scope != SHELL_SERVER_SCOPE:
        raise ApiError(403, f"only the shell server's credential may call {SHELL_SERVER_SCOPE} URLs")
    return principal


@dataclass(frozen=True)
class OpenRequest:
    username: str
    site: str
    kind: SessionKind
    command: str | None
    term: str | None
    pty: PtySize | None
    client_address: str | None
    key_name: str | None


def _text(body: dict[str, Any], name: str, *, limit: int = 256, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise Refused(f"the session request's {name} must be a text of 1 to {limit} characters")
    return value


def _size(body: dict[str, Any]) -> PtySize | None:
    cols, rows = body.get("cols"), body.get("rows")
    if cols is None and rows is None:
        return None
    if not all(isinstance(value, int) and 0 < value <= 10_000 for value in (cols, rows)):
        raise Refused("cols and rows must be whole numbers from 1 to 10000")
    assert isinstance(cols, int) and isinstance(rows, int)
    return PtySize(cols=cols, rows=rows)


def _open_request(body: dict[str, Any]) -> OpenRequest:
    kind = body.get("kind")
    if kind not in _KINDS:
        raise Refused(f"kind must be one of {', '.join(_KINDS)}")
    command = _text(body, "command", limit=MAX_COMMAND_CHARS, required=kind == "exec")
    size = _size(body)
    return OpenRequest(
        username=str(_text(body, "user", limit=150, required=True)),
        site=str(_text(body, "site", limit=63, required=True)),
        kind=kind,
        command=command,
        term=_text(body, "term", limit=64),
        pty=(size or PtySize(80, 24)) if body.get("pty") else None,
        client_address=_text(body, "clientAddress", limit=64),
        key_name=_text(body, "key", limit=64),
    )


async def _receive_open(socket: Socket) -> dict[str, Any]:
    try:
        first = await asyncio.wait_for(socket.receive(), OPEN_TIMEOUT_SECONDS)
    except TimeoutError:
        raise Refused(f"no session request within {OPEN_TIMEOUT_SECONDS:.0f} s") from None
    if not isinstance(first, dict):
        raise Refused("the first message must be the session request, as JSON text")
    return first


async def _shell_server_session(socket: Socket) -> None:
    try:
        await in_worker_thread(_shell_server_principal)(socket.header("authorization"))
    except ApiError as error:
        await socket.refuse(CLOSE_UNAUTHORIZED if error.code == 401 else CLOSE_FORBIDDEN)
        return
    await socket.accept()
    try:
        request = _open_request(await _receive_open(socket))
    except Refused as refused:
        await socket.send_json({"error": str(refused)})
        await socket.close()
        return
    record = SessionRecord(
        session_id=new_session_id(),
        username=request.username,
        kind=request.kind,
        via="ssh",
        client_address=request.client_address,
        key_name=request.key_name,
        command=request.command,
    )
    await _run(socket, record, request.site, request.command, request.term, request.pty)


# ---- the browser -----------------------------------------------------------------------------------------


def _same_origin(socket: Socket) -> bool:
    """A page of this very origin opened the socket: the browser sends Origin and cannot forge it, while a
    cookie would be sent along from any page that opens a websocket here."""
    origin = socket.header("origin")
    host = socket.header("host")
    if not origin or not host:
        return False
    parts = urlsplit(origin)
    trusted = set(getattr(settings, "CSRF_TRUSTED_ORIGINS", []))
    return (parts.scheme in ("http", "https") and parts.netloc == host) or origin in trusted


def session_user(cookie_header: str) -> User | None:
    """The person logged in to the UI with the session cookie in `cookie_header`, if any."""
    from http.cookies import SimpleCookie
    from importlib import import_module

    cookies: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        cookies.load(cookie_header)
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    if morsel is None:
        return None
    engine = import_module(settings.SESSION_ENGINE)
    request = HttpRequest()
    request.session = engine.SessionStore(morsel.value)
    user = get_user(request)
    return user if isinstance(user, User) and user.is_active else None


async def _browser_session(socket: Socket, site: str) -> None:
    if not _same_origin(socket):
        await socket.refuse(CLOSE_FORBIDDEN)
        return
    user = await in_worker_thread(session_user)(socket.header("cookie"))
    if user is None:
        await socket.refuse(CLOSE_UNAUTHORIZED)
        return
    await socket.accept()
    try:
        size = _size(await _receive_open(socket)) or PtySize(80, 24)
    except Refused as refused:
        await socket.send_json({"error": str(refused)})
        await socket.close()
        return
    record = SessionRecord(
        session_id=new_session_id(),
        username=user.get_username(),
        kind="shell",
        via="web",
        client_address=socket.client_address,
    )
    await _run(socket, record, site, None, "xterm-256color", size)


# ---- one session -----------------------------------------------------------------------------------------

# The sessions being opened in this process, per person: counted with those that have a container already
# (in any process), so that sessions opened at once cannot all pass a limit only some of them fit under.
_opening: dict[str, set[str]] = {}
_opening_lock = asyncio.Lock()


def _admit(record: SessionRecord, site_name: str) -> Site:
    record.site = site_for(record.username, site_name)
    if record.key_name:
        SshKey.objects.filter(user__username=record.username, name=record.key_name).update(
            last_used=timezone.now()
        )
    return record.site


async def _start(
    record: SessionRecord, site_name: str, command: str | None, term: str | None, pty: PtySize | None
) -> TerminalSession:
    site = await in_worker_thread(_admit)(record, site_name)
    backend = registered_terminal_backend()
    if backend is None:
        raise Refused("terminal sessions are not available on this server (no container backend)")
    async with _opening_lock:
        opening = _opening.setdefault(record.username, set())
        running = await backend.sessions_of(record.username) | opening
        limit = session_limit()
        if len(running) >= limit:
            raise Refused(
                f"you have {len(running)} sessions open, the most one person may have at once ({limit}); "
                "close one and try again"
            )
        opening.add(record.session_id)
    request = TerminalRequest(
        session_id=record.session_id,
        site=site,
        username=record.username,
        kind=record.kind,
        command=command,
        term=term,
        pty=pty,
    )
    try:
        return await backend.open(request)
    finally:
        opening.discard(record.session_id)


async def _run(
    socket: Socket,
    record: SessionRecord,
    site_name: str,
    command: str | None,
    term: str | None,
    pty: PtySize | None,
) -> None:
    try:
        session = await _start(record, site_name, command, term, pty)
    except Refused as refused:
        await socket.send_json({"error": str(refused)})
        await socket.close()
        await in_worker_thread(record_refusal)(
            site_name, record.username, record.via, str(refused), record.client_address
        )
        return
    except Exception as error:  # the backend's own failure: said to the person, logged in full here
        log.exception("starting a terminal session in %s for %s failed", site_name, record.username)
        await socket.send_json({"error": f"the session could not be started: {error}"})
        await socket.close()
        return
    reason = "the client disconnected"
    status: int | None = None
    try:
        await in_worker_thread(record_start)(record)
        await socket.send_json({"started": record.session_id})
        status, reason = await _relay(socket, session)
    except Disconnected:
        pass
    finally:
        # The person hears the end first; then, however the session ended (even cancelled with the
        # server), its container goes.
        with contextlib.suppress(Exception):
            await socket.send_json({"end": {"status": status, "reason": reason}})
            await socket.close()
        await asyncio.shield(session.close())
        with contextlib.suppress(Exception):
            await asyncio.shield(in_worker_thread(record_end)(record, status, reason))


async def _relay(socket: Socket, session: TerminalSession) -> tuple[int | None, str]:
    """Bytes both ways until the container ends, the client leaves, or a time limit passes."""
    idle_limit = float(settings.DIRECTOR.shell_idle_seconds)
    lifetime = float(settings.DIRECTOR.shell_max_session_seconds)
    started = last_activity = time.monotonic()

    async def output() -> None:
        nonlocal last_activity
        while (chunk := await session.read()) is not None:
            last_activity = time.monotonic()
            stream, data = chunk
            await socket.send_bytes(bytes([stream]) + data)

    async def input_() -> None:
        nonlocal last_activity
        while True:
            message = await socket.receive()
            last_activity = time.monotonic()
            if isinstance(message, bytes):
                await session.write(message)
            elif message.get("eof"):
                await session.write_eof()
            elif isinstance(message.get("resize"), dict):
                # A malformed resize is dropped, as a terminal ignores a garbled escape sequence.
                with contextlib.suppress(Refused):
                    size = _size(message["resize"])
                    if size is not None:
                        await session.resize(size)

    async def watchdog() -> str:
        while True:
            now = time.monotonic()
            if now - started >= lifetime:
                return f"the session reached its longest life ({lifetime:g} s)"
            if now - last_activity >= idle_limit:
                return f"no input or output for {idle_limit:g} s"
            await asyncio.sleep(max(0.05, min(started + lifetime, last_activity + idle_limit) - now))

    tasks = {
        asyncio.create_task(output(), name="terminal-output"): "output",
        asyncio.create_task(input_(), name="terminal-input"): "input",
        asyncio.create_task(watchdog(), name="terminal-watchdog"): "watchdog",
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finished = next(iter(done))
        which = tasks[finished]
        if which == "output":
            # The output may end a moment before the input pump sees the client's last bytes: no matter.
            return await session.exit_status(), "the program ended"
        if which == "watchdog":
            reason = str(finished.result())
            await socket.send_bytes(bytes([STDERR]) + f"\r\nDirector: session ended: {reason}\r\n".encode())
            return None, reason
        error = finished.exception()
        if isinstance(error, Refused):
            return None, str(error)
        if error is not None and not isinstance(error, Disconnected):
            log.warning("terminal session input failed: %s", error)
        return None, "the client disconnected"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
