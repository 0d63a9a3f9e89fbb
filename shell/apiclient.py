"""What the shell server asks the API, with its `/shell-server/`-scoped credential: who a password or a key
belongs to, which sites that person may enter, and a terminal session (a websocket, api/terminal_socket.py).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

SESSIONS_PATH = "/shell-server/v1/sessions"
REQUEST_TIMEOUT_SECONDS = 30.0


class LoginRefused(Exception):
    """A password or key was not accepted; `message`, if any, is worth showing (a wait that runs)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class ApiUnavailable(Exception):
    """The API could not be asked; the message says what failed."""


@dataclass(frozen=True)
class ShellSite:
    name: str
    type: str
    availability: str


@dataclass(frozen=True)
class ShellUser:
    username: str
    admin: bool
    sites: list[ShellSite] = field(default_factory=list)
    key_name: str | None = None


def _user(document: dict[str, Any]) -> ShellUser:
    sites = [
        ShellSite(str(site["name"]), str(site.get("type", "")), str(site.get("availability", "")))
        for site in document.get("sites", [])
    ]
    return ShellUser(
        username=str(document["username"]),
        admin=bool(document.get("admin")),
        sites=sites,
        key_name=document.get("key"),
    )


class ShellApi:
    def __init__(self, base_url: str, token: str, ca: Path | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        # Over HTTPS the API's certificate is checked against `ca` (the one the API made), else the system's
        # authorities: the same for the requests and for the sessions' websockets.
        self._tls = ssl.create_default_context(cafile=str(ca) if ca else None)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=REQUEST_TIMEOUT_SECONDS,
            verify=self._tls,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self._http.post(path, json=body)
        except httpx.HTTPError as error:
            raise ApiUnavailable(f"the API at {self.base_url} did not answer: {error}") from None

    @staticmethod
    def _message(response: httpx.Response) -> str:
        try:
            return str(response.json().get("message", ""))
        except ValueError:
            return response.text[:200]

    async def password_login(self, username: str, password: str, client_address: str | None) -> ShellUser:
        body: dict[str, Any] = {"username": username, "password": password}
        if client_address:
            body["clientAddress"] = client_address
        response = await self._post("/shell-server/v1/authenticate", body)
        if response.status_code == 200:
            return _user(response.json())
        if response.status_code == 429:
            raise LoginRefused(self._message(response))
        if response.status_code == 401:
            raise LoginRefused()
        raise ApiUnavailable(f"the API answered {response.status_code}: {self._message(response)}")

    async def key_login(self, username: str, public_key: str) -> ShellUser:
        response = await self._post(
            "/shell-server/v1/publickey", {"username": username, "publicKey": public_key}
        )
        if response.status_code == 200:
            return _user(response.json())
        if response.status_code == 404:
            raise LoginRefused()
        raise ApiUnavailable(f"the API answered {response.status_code}: {self._message(response)}")

    async def open_session(self, request: dict[str, Any]) -> tuple[ClientConnection, str]:
        """A session's websocket once the API started it, and its id; LoginRefused with the API's words if it
        would not start one."""
        url = "ws" + self.base_url.removeprefix("http") + SESSIONS_PATH
        try:
            socket = await connect(
                url,
                additional_headers={"Authorization": f"Bearer {self._token}"},
                compression=None,
                max_size=None,
                open_timeout=REQUEST_TIMEOUT_SECONDS,
                # The API ends idle sessions itself; pings would only end a busy one on a slow network.
                ping_interval=None,
                proxy=None,
                ssl=self._tls if url.startswith("wss:") else None,
            )
        except (OSError, TimeoutError) as error:
            raise ApiUnavailable(f"the API at {self.base_url} did not answer: {error}") from None
        except Exception as error:  # the handshake refused (websockets' InvalidStatus) and the like
            raise ApiUnavailable(f"the API refused the session socket: {error}") from None
        await socket.send(json.dumps(request))
        first = await socket.recv()
        answer = json.loads(first) if isinstance(first, str) else {}
        if "started" in answer:
            return socket, str(answer["started"])
        await socket.close()
        raise LoginRefused(str(answer.get("error", "the API would not start the session")))
