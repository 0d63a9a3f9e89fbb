"""The Director API as dirctl uses it: one small HTTP client, errors turned into one clear line each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from cli import exit_codes
from cli.config import CliConfig

SITES = "/apis/director.io/v1/sites"
EVENTS = "/apis/director.io/v1/events"
LOGIN = "/apis/auth.director.io/v1/login"
APPLY_TYPE = "application/apply-patch+yaml"
MERGE_TYPE = "application/merge-patch+json"
OUTCOME_HEADER = "Director-Outcome"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
Document = dict[str, Any]


class ApiCallError(Exception):
    """A request that did not succeed, with the exit code dirctl ends with."""

    def __init__(self, message: str, exit_code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


def _status_message(response: httpx.Response) -> str:
    try:
        status = response.json()
    except ValueError:
        return f"the server answered {response.status_code} {response.reason_phrase}"
    if not isinstance(status, dict) or "message" not in status:
        return f"the server answered {response.status_code} {response.reason_phrase}"
    message = str(status["message"])
    causes = (status.get("details") or {}).get("causes") or []
    missing = [cause for cause in causes if str(cause.get("message", "")) not in message]
    if missing:
        message += " (" + "; ".join(f"{c.get('field')}: {c.get('message')}" for c in missing) + ")"
    return message


def error_from(response: httpx.Response) -> ApiCallError:
    code = {401: exit_codes.UNAVAILABLE, 404: exit_codes.NOT_FOUND}.get(
        response.status_code, exit_codes.FAILED
    )
    return ApiCallError(_status_message(response), code, response.status_code)


class Api:
    def __init__(self, config: CliConfig, *, timeout: float = 30.0) -> None:
        if not config.server:
            raise ApiCallError(
                "no Director API is configured: run `dirctl login --server URL`, or set DIRECTOR_SERVER and "
                "DIRECTOR_TOKEN (apply --dry-run=client validates offline without one)",
                exit_codes.UNAVAILABLE,
            )
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        self.server = config.server.rstrip("/")
        self._http = httpx.Client(
            base_url=self.server,
            headers=headers | {"User-Agent": "dirctl"},
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ApiCallError(
                f"cannot reach the Director API at {self.server}: {error or type(error).__name__}",
                exit_codes.UNAVAILABLE,
            ) from None
        if response.status_code >= 300:
            raise error_from(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # ---- sites ----------------------------------------------------------------------------------------

    def get_site(self, name: str) -> Document:
        result: Document = self.json("GET", f"{SITES}/{name}")
        return result

    def find_site(self, name: str) -> Document | None:
        try:
            return self.get_site(name)
        except ApiCallError as error:
            if error.status == 404:
                return None
            raise

    def list_sites(self, selector: str | None = None) -> Document:
        params = {"labelSelector": selector} if selector else {}
        result: Document = self.json("GET", SITES, params=params)
        return result

    def apply_site(
        self, name: str, document: Document, *, manager: str, force: bool, dry_run: bool
    ) -> tuple[Document, str]:
        """The stored (or, dry, the would-be) site and what happened: created, configured or unchanged."""
        params = {"fieldManager": manager} | ({"force": "true"} if force else {})
        if dry_run:
            params["dryRun"] = "All"
        response = self.request(
            "PATCH",
            f"{SITES}/{name}",
            params=params,
            content=json.dumps(document),
            headers={"Content-Type": APPLY_TYPE},
        )
        fallback = "created" if response.status_code == 201 else "configured"
        return response.json(), response.headers.get(OUTCOME_HEADER, fallback)

    def patch_site(self, name: str, patch: Document, *, manager: str) -> Document:
        result: Document = self.json(
            "PATCH",
            f"{SITES}/{name}",
            params={"fieldManager": manager},
            content=json.dumps(patch),
            headers={"Content-Type": MERGE_TYPE},
        )
        return result

    def replace_site(self, name: str, document: Document, *, manager: str) -> Document:
        result: Document = self.json(
            "PUT", f"{SITES}/{name}", params={"fieldManager": manager}, json=document
        )
        return result

    def delete_site(self, name: str, *, dry_run: bool = False) -> tuple[Document, int]:
        params = {"fieldManager": "cli"} | ({"dryRun": "All"} if dry_run else {})
        response = self.request("DELETE", f"{SITES}/{name}", params=params)
        return response.json(), response.status_code

    def history(self, name: str) -> list[Document]:
        items: list[Document] = self.json("GET", f"{SITES}/{name}/history")["items"]
        return items

    def events(self, name: str | None, *, limit: int = 50, uid: str | None = None) -> list[Document]:
        path = f"{SITES}/{name}/events" if name else EVENTS
        params: dict[str, str | int] = {"limit": limit} | ({"uid": uid} if uid is not None else {})
        items: list[Document] = self.json("GET", path, params=params)["items"]
        return items

    # ---- streams --------------------------------------------------------------------------------------

    @contextmanager
    def _open_stream(
        self, path: str, params: dict[str, str], headers: dict[str, str] | None, *, broken: str
    ) -> Iterator[httpx.Response]:
        """A streamed GET whose refusal or breakage, even mid-stream, is an ApiCallError; `broken` names
        the stream in that error."""
        try:
            with self._http.stream(
                "GET", path, params=params, headers=headers, timeout=httpx.Timeout(None, connect=5.0)
            ) as response:
                if response.status_code >= 300:
                    response.read()
                    raise error_from(response)
                yield response
        except httpx.TransportError as error:
            raise ApiCallError(
                f"{broken} broke: {error or type(error).__name__}", exit_codes.UNAVAILABLE
            ) from None

    def stream_lines(
        self, path: str, params: dict[str, str], headers: dict[str, str] | None = None
    ) -> Iterator[str]:
        broken = f"the stream from the Director API at {self.server}"
        with self._open_stream(path, params, headers, broken=broken) as response:
            yield from response.iter_lines()

    def watch(
        self, path: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Iterator[Document]:
        for line in self.stream_lines(path, {"watch": "true", **(params or {})}, headers):
            if line.strip():
                event: Document = json.loads(line)
                yield event

    def logs(self, name: str, *, follow: bool, tail: int | None) -> Iterator[str]:
        params = {"follow": "true" if follow else "false"}
        if tail is not None:
            params["tailLines"] = str(tail)
        with self._open_stream(f"{SITES}/{name}/logs", params, None, broken="the log stream") as response:
            yield from response.iter_text()

    def login(self, username: str, password: str) -> Document:
        result: Document = self.json("POST", LOGIN, auth=(username, password), params={"tokenName": "dirctl"})
        return result
