"""The ASGI application uvicorn serves: `uvicorn ui.asgi:application`.

Django's own ASGI entry wraps each request in a ThreadSensitiveContext, which starts a thread for the request
and joins it afterwards (about 0.6 ms of a request's 2): it exists to keep a request's synchronous middleware
and views in one thread. Director has no synchronous middleware, its views are async and run their blocking
work on the worker threads themselves (api.views.in_worker_thread), so the requests go to Django's handler
directly; the little that Django still runs thread-sensitively (the request signals, closing the response)
runs on asgiref's one shared thread.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")

django_application = get_asgi_application()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise ValueError(f"Director serves HTTP connections only, not {scope['type']}")
    await django_application.handle(scope, receive, send)
