"""The API server's bound on a request's head (its line and headers): past 16 KiB still incomplete, the
request is refused with 400 and the connection closed; a head within the bound is served. uvicorn keeps it
with h11, the reader the API server names, not with httptools."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from tests.api.conftest import Api

# h11's bound (DEFAULT_MAX_INCOMPLETE_EVENT_SIZE), which uvicorn keeps.
MAX_REQUEST_HEAD_BYTES = 16 * 1024


def _exchange(api: Api, head: bytes) -> bytes:
    """What the server answers to `head` before it closes the connection (or within 30 s)."""
    address = urlsplit(api.url)
    assert address.hostname is not None and address.port is not None
    with (
        socket.create_connection((address.hostname, address.port), timeout=30) as raw,
        api.tls.wrap_socket(raw, server_hostname=address.hostname) as connection,
    ):
        connection.sendall(head)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b"connection: close" not in answer.lower():
                break  # a whole head of an answer that keeps the connection: enough
        return answer


def _padding_headers(total: int) -> bytes:
    lines = []
    for index in range(total // 1000 + 1):
        lines.append(f"X-Padding-{index}: {'p' * 980}\r\n".encode())
    return b"".join(lines)


def test_a_request_head_still_incomplete_past_the_bound_is_refused_and_its_connection_closed(
    api: Api,
) -> None:
    head = b"GET /apis HTTP/1.1\r\nHost: 127.0.0.1\r\n" + _padding_headers(MAX_REQUEST_HEAD_BYTES + 4096)
    answer = _exchange(api, head)  # never ends the head: the server must not wait for more
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"connection: close" in answer.lower()


def test_a_request_head_within_the_bound_is_served(api: Api) -> None:
    padding = _padding_headers(MAX_REQUEST_HEAD_BYTES - 4096)
    head = (
        b"GET /apis HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {api.tokens['admin']}\r\n".encode()
        + padding
        + b"\r\n"
    )
    assert len(head) < MAX_REQUEST_HEAD_BYTES
    answer = _exchange(api, head)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
