"""The web UI as a Django app: its templates, static files and pages (ui/web.py and the views)."""

from __future__ import annotations

from django.apps import AppConfig


class UiConfig(AppConfig):
    name = "ui"
    label = "ui"
    verbose_name = "Director web UI"
