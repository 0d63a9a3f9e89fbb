"""The ASGI application uvicorn serves: `uvicorn ui.asgi:application`.

HTTP goes to Django; websockets (terminal sessions, api/terminal_socket.py) to their own small handler,
which needs no Django Channels.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")

django_application = get_asgi_application()

from api import terminal_socket  # noqa: E402  (Django must be set up first)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await terminal_socket.application(scope, receive, send)
        return
    await django_application(scope, receive, send)
