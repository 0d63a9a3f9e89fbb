"""The Director API as dirctl uses it: one small HTTP client, errors turned into one clear line each.

Built on the standard library (http.client and ssl), not httpx: dirctl is started for every command, and
importing httpx alone took longer than listing 10,000 sites. One keep-alive connection serves a command's
requests; each stream (a watch, followed logs) has a connection of its own. Over HTTPS the server's
certificate is checked against the CA in dirctl's configuration (`ca`), or else the system's authorities.
"""

from __future__ import annotations

import base64
import codecs
import http.client
import json
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

from cli import exit_codes
from cli.config import CliConfig

SITES = "/apis/director.io/v1/sites"
EVENTS = "/apis/director.io/v1/events"
LOGIN = "/apis/auth.director.io/v1/login"
APPLY_TYPE = "application/apply-patch+yaml"
MERGE_TYPE = "application/merge-patch+json"
OUTCOME_HEADER = "Director-Outcome"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
CONNECT_SECONDS = 5.0
Document = dict[str, Any]
Params = Mapping[str, str | int]
# What a connection that sat idle may fail with when the server closed it meanwhile: the request was never
# read, so it is sent again once on a new connection.
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class ApiCallError(Exception):
    """A request that did not succeed, with the exit code dirctl ends with."""

    def __init__(self, message: str, exit_code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


class Response:
    """A whole response: its status, headers and body."""

    def __init__(
        self, status_code: int, reason_phrase: str, headers: http.client.HTTPMessage, content: bytes
    ) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)


def _status_message(response: Response) -> str:
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


def error_from(response: Response) -> ApiCallError:
    code = {401: exit_codes.UNAVAILABLE, 404: exit_codes.NOT_FOUND}.get(
        response.status_code, exit_codes.FAILED
    )
    return ApiCallError(_status_message(response), code, response.status_code)


def _tls_context(ca: str) -> ssl.SSLContext:
    """Verification against `ca` (PEM text or a file), else the system's authorities; never without."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if not ca:
            context.load_default_certs()
        elif "-----BEGIN" in ca:
            context.load_verify_locations(cadata=ca)
        else:
            context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as error:
        raise ApiCallError(
            f"the CA certificate in dirctl's configuration (ca, DIRECTOR_CA or --ca) cannot be used: "
            f"{error}; give the file the API's CA is in (make run: STATE_DIR/tls/ca.crt) with dirctl login "
            "--ca FILE",
            exit_codes.UNAVAILABLE,
        ) from None
    return context


def _transport_problem(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"its certificate is not trusted ({error.verify_message}): give dirctl the CA that signed it, "
            "dirctl login --server URL --ca FILE (make run: STATE_DIR/tls/ca.crt)"
        )
    return str(error) or type(error).__name__


class Api:
    def __init__(self, config: CliConfig, *, timeout: float = 30.0) -> None:
        if not config.server:
            raise ApiCallError(
                "no Director API is configured: run `dirctl login --server URL`, or set DIRECTOR_SERVER and "
                "DIRECTOR_TOKEN (apply --dry-run=client validates offline without one)",
                exit_codes.UNAVAILABLE,
            )
        self.server = config.server.rstrip("/")
        parts = urlsplit(self.server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiCallError(
                f"the server {config.server!r} is not an http:// or https:// URL such as https://127.0.0.1:8000",
                exit_codes.UNAVAILABLE,
            )
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._tls = _tls_context(config.ca) if parts.scheme == "https" else None
        self._headers = {"User-Agent": "dirctl", "Accept-Encoding": "identity"}
        if config.token:
            self._headers["Authorization"] = f"Bearer {config.token}"
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- the wire -------------------------------------------------------------------------------------

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection
        if self._tls is not None:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=CONNECT_SECONDS, context=self._tls
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=CONNECT_SECONDS)
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(timeout)
        return connection

    def _target(self, path: str, params: Params | None) -> str:
        query = urlencode({key: str(value) for key, value in (params or {}).items()})
        return self._prefix + path + (f"?{query}" if query else "")

    @staticmethod
    def _body(json_body: Any, content: str | bytes | None, headers: dict[str, str]) -> bytes | None:
        if json_body is not None:
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(json_body).encode()
        if content is not None:
            return content.encode() if isinstance(content, str) else content
        return None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        content: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Response:
        sent = self._headers | dict(headers or {})
        if auth is not None:
            sent["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        body = self._body(json, content, sent)
        target = self._target(path, params)
        for attempt in range(2):
            reused = self._connection is not None
            try:
                if self._connection is None:
                    self._connection = self._connect(self._timeout)
                self._connection.request(method, target, body=body, headers=sent)
                answer = self._connection.getresponse()
                response = Response(answer.status, answer.reason, answer.headers, answer.read())
                if answer.will_close:
                    self.close()
                break
            except _STALE_CONNECTION as error:
                self.close()
                if reused and attempt == 0:
                    continue
                raise self._unreachable(error) from None
            except (OSError, http.client.HTTPException) as error:
                self.close()
                raise self._unreachable(error) from None
        if response.status_code >= 300:
            raise error_from(response)
        return response

    def _unreachable(self, error: BaseException) -> ApiCallError:
        return ApiCallError(
            f"cannot reach the Director API at {self.server}: {_transport_problem(error)}",
            exit_codes.UNAVAILABLE,
        )

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
        self, path: str, params: Params, headers: Mapping[str, str] | None, *, broken: str
    ) -> Iterator[http.client.HTTPResponse]:
        """A streamed GET on a connection of its own, with no read deadline, whose refusal or breakage, even
        mid-stream, is an ApiCallError; `broken` names the stream in that error."""
        connection: http.client.HTTPConnection | None = None
        try:
            connection = self._connect(None)
            connection.request("GET", self._target(path, params), headers=self._headers | dict(headers or {}))
            answer = connection.getresponse()
            if answer.status >= 300:
                raise error_from(Response(answer.status, answer.reason, answer.headers, answer.read()))
            yield answer
        except (OSError, http.client.HTTPException) as error:
            problem = _transport_problem(error)
            raise ApiCallError(f"{broken} broke: {problem}", exit_codes.UNAVAILABLE) from None
        finally:
            if connection is not None:
                connection.close()

    def stream_lines(
        self, path: str, params: Params, headers: Mapping[str, str] | None = None
    ) -> Iterator[str]:
        broken = f"the stream from the Director API at {self.server}"
        with self._open_stream(path, params, headers, broken=broken) as response:
            while line := response.readline():
                yield line.decode().rstrip("\r\n")

    def watch(
        self, path: str, params: Params | None = None, headers: Mapping[str, str] | None = None
    ) -> Iterator[Document]:
        for line in self.stream_lines(path, {"watch": "true", **(params or {})}, headers):
            if line.strip():
                event: Document = json.loads(line)
                yield event

    def logs(self, name: str, *, follow: bool, tail: int | None) -> Iterator[str]:
        params = {"follow": "true" if follow else "false"}
        if tail is not None:
            params["tailLines"] = str(tail)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with self._open_stream(f"{SITES}/{name}/logs", params, None, broken="the log stream") as response:
            while chunk := response.read1(65536):
                text = decoder.decode(chunk)
                if text:
                    yield text
        rest = decoder.decode(b"", final=True)
        if rest:
            yield rest

    def login(self, username: str, password: str) -> Document:
        result: Document = self.json("POST", LOGIN, auth=(username, password), params={"tokenName": "dirctl"})
        return result
