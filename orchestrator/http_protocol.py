"""How uvicorn reads HTTP for the API: with httptools (llhttp, in C), under h11's bound on a request's head.

uvicorn's default HTTP reader is h11, in pure Python: on an apply over HTTPS it was about a sixth of the API
server's CPU time. httptools reads the same requests for a fraction of that, but uvicorn sets no bound on
its side: a request line and headers are taken in whatever their length, where h11 refuses a request whose
head is still incomplete past 16 KiB (400, and the connection closed). BoundedHttpToolsProtocol keeps that
rule: the bytes a request's head arrives in are counted, and a head still incomplete past the bound is
refused as h11 refuses it.

Without httptools installed (it is a dependency, but a checkout's environment may predate it), the API reads
with h11 as before: slower, bound alike.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE

# h11's own bound, which uvicorn keeps: a request's line and headers, 16 KiB.
MAX_REQUEST_HEAD_BYTES: int = DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
REFUSAL = "Invalid HTTP request received."


def http_protocol() -> Any:
    """What uvicorn.run takes as `http`: the bounded httptools protocol, or "h11" without httptools."""
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    return _bounded_httptools_protocol()


def _bounded_httptools_protocol() -> type[Any]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, refusing a request head still incomplete past the bound.

        As h11 does, the count is of what has arrived while the head is incomplete; a head that arrives
        whole in one read is parsed whatever its size (that read is bounded by the transport)."""

        _head_bytes = 0
        _reading_head = True

        def data_received(self, data: bytes) -> None:
            if self._reading_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if (
                self._reading_head
                and self._head_bytes > MAX_REQUEST_HEAD_BYTES
                and not self.transport.is_closing()
            ):
                self.logger.warning(REFUSAL)
                self.send_400_response(REFUSAL)

        def on_headers_complete(self) -> None:
            self._reading_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            # What follows on this connection is the next request's head.
            self._reading_head = True
            self._head_bytes = 0

    return BoundedHttpToolsProtocol
