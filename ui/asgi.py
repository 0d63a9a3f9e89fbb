"""The ASGI application uvicorn serves: `uvicorn ui.asgi:application`.

Django's own ASGI entry wraps each request in a ThreadSensitiveContext, which starts a thread for the request
and joins it afterwards (about 0.6 ms of a request's 2): it exists to keep a request's synchronous middleware
and views in one thread. Director has no synchronous middleware, and its views are async and run their
blocking work on worker threads themselves (api.views.in_worker_thread), so requests go to Django's handler
directly; what Django still runs thread-sensitively (closing the response) runs on asgiref's one shared
thread.

For the same reason the request signals' database housekeeping is not connected: it would run on that shared
thread, which holds no connection, at the cost of a thread hop per request. in_worker_thread does it where
the connections are. What closing a response still runs (the request_finished receivers left, Django's own
cache and urlconf resets: tests/api/test_asgi.py keeps that list) takes microseconds and never blocks, so a
whole response is closed on the event loop, where it was sent; only a streaming one, whose iterators may
block as they close, still goes to that shared thread. The trip there and back was two thread switches of
every request, which on a busy machine cost more than the request's own work.

Only a streaming response is sent beside a task listening for the client's disconnect (which cancels the
sending, as Django's handler does for every request): a whole response is made on a worker thread, which a
disconnect could not stop anyway, and sent at once. The listener and the wait on it were a tenth of an
apply's CPU time.

Websockets (terminal sessions, api/terminal_socket.py) go to their own small handler, which needs no
Django Channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import close_old_connections, reset_queries
from django.http import HttpResponseBase
from django.urls import set_script_prefix

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")


class _Handler(ASGIHandler):
    """Django's ASGI handler (5.2's `handle`, step by step), but for where a whole response is closed and
    when a disconnect is listened for: see the module's docstring."""

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        await signals.request_started.asend(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None  # Django makes one of the two
            body_file.close()
            await self.send_response(error_response, send)
            await _close(error_response)
            return

        try:
            response = await self.run_get_response(request)
            if response.streaming:
                await self._send_stream(response, receive, send)
                return
            # A whole response: its making (on a worker thread) could not be stopped by a disconnect anyway,
            # and to a client gone by the time it is sent, uvicorn writes nothing.
            if _framed_by_length(response):
                # Rather than chunked: less to write and to read on both sides.
                response.headers["Content-Length"] = str(len(response.content))  # type: ignore[attr-defined]
            await self.send_response(response, send)
            await _close(response)
        finally:
            body_file.close()

    async def _send_stream(self, response: HttpResponseBase, receive: Any, send: Any) -> None:
        """Send a streaming response (a watch, logs, live pages: it may run for hours) until it ends or the
        client goes away: a disconnect cancels the sending, as in Django's own handler. The listener goes
        first, as there: it raises nothing that could keep the sending from being cancelled."""

        async def sending() -> None:
            # The client went away while the response was being sent.
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)

        listening = asyncio.create_task(self.listen_for_disconnect(receive))
        streaming = asyncio.create_task(sending())
        tasks: list[asyncio.Task[Any]] = [listening, streaming]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await _close(response)
        # Whatever else either raised, once neither runs any more.
        for task in tasks:
            if not task.cancelled():
                with contextlib.suppress(RequestAborted):
                    task.result()


def _framed_by_length(response: HttpResponseBase) -> bool:
    """A whole response with a body of its own (not 304's, which stands for another's) and no length yet."""
    return (
        not response.streaming
        and response.status_code not in (204, 304)
        and not response.has_header("Content-Length")
    )


async def _close(response: HttpResponseBase) -> None:
    if response.streaming:
        await sync_to_async(response.close)()
    else:
        response.close()


django.setup(set_prefix=False)
django_application = _Handler()
signals.request_started.disconnect(reset_queries)
signals.request_started.disconnect(close_old_connections)
signals.request_finished.disconnect(close_old_connections)

from api import terminal_socket  # noqa: E402  (Django must be set up first)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await terminal_socket.application(scope, receive, send)
        return
    if scope["type"] != "http":
        raise ValueError(f"Director serves HTTP connections and websockets only, not {scope['type']}")
    await django_application.handle(scope, receive, send)
