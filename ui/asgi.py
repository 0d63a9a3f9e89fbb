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
    """Django's ASGI handler (5.2's `handle`, step by step), but for where a whole response is closed: see
    the module's docstring."""

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

        async def process_request() -> HttpResponseBase:
            response = await self.run_get_response(request)
            if _framed_by_length(response):
                # Rather than chunked: less to write and to read on both sides.
                response.headers["Content-Length"] = str(len(response.content))  # type: ignore[attr-defined]
            # The client went away while the response was being sent.
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)
            return response

        # A disconnect while the response is being made cancels the making, as in Django's own handler; the
        # listener goes first, as there: it raises nothing that could keep the making from being cancelled.
        listening = asyncio.create_task(self.listen_for_disconnect(receive))
        making = asyncio.create_task(process_request())
        tasks: list[asyncio.Task[Any]] = [listening, making]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = making.result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
        else:
            await _close(response)
        body_file.close()


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
