"""The Director API as the controller calls it: writes to sites go through the API, like dirctl's.

The controller holds a credential the composition root issues, confined to `/controller/` URLs; on the
sites URLs it acts as a user (`Impersonate-User`), so every write a GitSource makes is checked and recorded as
its applyAs user's. A refusal (4xx) is the document's problem and comes back as ApiRefusal with the
server's causes; a server that cannot be reached or fails (5xx) is ApiUnavailable, the attempt's problem.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import httpx

SITES = "/apis/director.io/v1/sites"
APPLY_TYPE = "application/apply-patch+yaml"
MERGE_TYPE = "application/merge-patch+json"
IMPERSONATE_HEADER = "Impersonate-User"
Document = dict[str, Any]
ApplyOutcome = Literal["created", "configured", "unchanged"]


class CredentialSource(Protocol):
    """Where the controller's API token comes from: issued at start, renewed when refused or old."""

    async def token(self, *, renew: bool = False) -> str: ...


@dataclass(frozen=True)
class Cause:
    field: str
    message: str


@dataclass
class ApiRefusal(Exception):
    """The API refused the request (4xx): its message and per-field causes."""

    status: int
    message: str
    causes: list[Cause] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)


class ApiUnavailable(Exception):
    """The API could not be reached, or failed (5xx)."""


def _refusal(response: httpx.Response) -> ApiRefusal:
    try:
        status = response.json()
    except ValueError:
        return ApiRefusal(response.status_code, f"the API answered {response.status_code}")
    details = status.get("details") if isinstance(status, dict) else None
    causes = [
        Cause(str(cause.get("field") or ""), str(cause.get("message") or ""))
        for cause in ((details or {}).get("causes") or [])
        if isinstance(cause, dict)
    ]
    message = status.get("message") if isinstance(status, dict) else None
    return ApiRefusal(
        response.status_code, str(message or f"the API answered {response.status_code}"), causes
    )


class DirectorApi:
    def __init__(
        self,
        base_url: str,
        credential: CredentialSource,
        *,
        timeout: float = 30.0,
        ca_file: Path | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credential = credential
        self._timeout = timeout
        # The CA the API's certificate is signed by; read when a client is made, since the API makes it on
        # its first start, which may come after the controller's.
        self._ca_file = ca_file
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        # Imported on the first request: a controller with no GitSource never makes one, and httpx is
        # about 5 MB of its RSS.
        import httpx

        if self._client is None:
            ca = self._ca_file if self._ca_file is not None and self._ca_file.exists() else None
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=httpx.Timeout(self._timeout, connect=5.0),
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
                headers={"User-Agent": "director-controller"},
                verify=ssl.create_default_context(cafile=str(ca) if ca else None),
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        act_as: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        import httpx

        for renew in (False, True):
            sent = dict(headers or {})
            sent["Authorization"] = f"Bearer {await self._credential.token(renew=renew)}"
            if act_as is not None:
                sent[IMPERSONATE_HEADER] = act_as
            try:
                response = await self._http().request(method, path, headers=sent, **kwargs)
            except httpx.HTTPError as error:
                reason = str(error) or type(error).__name__
                # The next try makes a new client, which reads the CA again.
                await self.close()
                raise ApiUnavailable(
                    f"the Director API at {self.base_url} could not be reached: {reason}"
                ) from None
            if response.status_code == 401 and not renew:
                continue  # the token expired or was revoked: ask for a new one, once
            if response.status_code >= 500 or response.status_code == 401:
                raise ApiUnavailable(f"the Director API failed: {_refusal(response).message}")
            if response.status_code >= 400:
                raise _refusal(response)
            return response
        raise ApiUnavailable("the Director API refused the controller's credential")

    async def apply_site(self, name: str, document: Document, *, manager: str, act_as: str) -> ApplyOutcome:
        response = await self._request(
            "PATCH",
            f"{SITES}/{name}",
            act_as=act_as,
            # A source owns its fields: one changed by hand (--force-conflicts) is set back, as git says.
            params={"fieldManager": manager, "force": "true"},
            content=json.dumps(document),
            headers={"Content-Type": APPLY_TYPE},
        )
        outcome = response.headers.get(
            "Director-Outcome", "created" if response.status_code == 201 else "configured"
        )
        return "created" if outcome == "created" else "unchanged" if outcome == "unchanged" else "configured"

    async def patch_site(self, name: str, patch: Document, *, manager: str, act_as: str) -> None:
        await self._request(
            "PATCH",
            f"{SITES}/{name}",
            act_as=act_as,
            params={"fieldManager": manager},
            content=json.dumps(patch),
            headers={"Content-Type": MERGE_TYPE},
        )

    async def delete_site(self, name: str, *, manager: str, act_as: str) -> None:
        await self._request("DELETE", f"{SITES}/{name}", act_as=act_as, params={"fieldManager": manager})

    async def source_credentials(self, source: str) -> dict[str, str]:
        response = await self._request("GET", f"/controller/v1/gitsources/{source}/credentials")
        values = response.json().get("stringData") or {}
        return {str(key): str(value) for key, value in values.items()}


class IssuedCredential:
    """A CredentialSource over a function that issues a new token (blocking, in a thread): the composition
    root passes one that writes it to the API's database."""

    def __init__(self, issue: Callable[[], Awaitable[str]]) -> None:
        self._issue = issue
        self._token: str | None = None
        self._lock = asyncio.Lock()

    async def token(self, *, renew: bool = False) -> str:
        stale = self._token
        async with self._lock:
            # Of many callers refused at once, the first renews and the others take its token.
            if self._token is None or (renew and self._token == stale):
                self._token = await self._issue()
            return self._token
