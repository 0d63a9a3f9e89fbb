"""The ASGI application uvicorn serves: `uvicorn ui.asgi:application`."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")

application = get_asgi_application()
