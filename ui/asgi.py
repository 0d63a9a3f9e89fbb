"""The ASGI application uvicorn serves: `uvicorn ui.asgi:application`.

Django's own ASGI entry wraps each request in a ThreadSensitiveContext, which starts a thread for the request
and joins it afterwards (about 0.6 ms of a request's 2): it exists to keep a request's synchronous middleware
and views in one thread. Director has no synchronous middleware, and its views are async and run their
blocking work on worker threads themselves (api.views.in_worker_thread), so requests go to Django's handler
directly; what Django still runs thread-sensitively (closing the response) runs on asgiref's one shared
thread.

For the same reason the request signals' database housekeeping is not connected: it would run on that shared
thread, which holds no connection, at the cost of a thread hop per request. in_worker_thread does it where
the connections are.

Websockets (terminal sessions, api/terminal_socket.py) go to their own small handler, which needs no
Django Channels.
"""

from __future__ import annotations

import os
from typing import Any

from django.core import signals
from django.core.asgi import get_asgi_application
from django.db import close_old_connections, reset_queries

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")

django_application = get_asgi_application()
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
