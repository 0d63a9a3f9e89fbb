"""Django project settings for Director's manager (the API and the web UI), read from the environment.

DIRECTOR_STATE_DIR     where the records, the event log and (by default) the SQLite database live
DIRECTOR_DATABASE_URL  sqlite:///ABSOLUTE/PATH or postgres://USER:PASSWORD@HOST:PORT/NAME
DIRECTOR_SECRET_KEY    Django's signing key; generated once and kept in the state directory when unset
DIRECTOR_ALLOWED_HOSTS comma-separated host names the server answers for, besides loopback
DIRECTOR_SECURE_COOKIES true when the UI is served over HTTPS: its session and CSRF cookies are then sent
                       over HTTPS only
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from specs.config import Settings

DIRECTOR = Settings.from_env()
STATE_DIR: Path = DIRECTOR.state_dir


def _database(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if not path or path == "/":
            raise ValueError(f"DIRECTOR_DATABASE_URL {url!r} names no file: use sqlite:////absolute/path.db")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN so two
            # writers queue on busy_timeout instead of failing with "database is locked" mid-transaction.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    raise ValueError(f"DIRECTOR_DATABASE_URL must start with sqlite:// or postgres://, got {url!r}")


def _secret_key() -> str:
    configured = os.environ.get("DIRECTOR_SECRET_KEY")
    if configured:
        return configured
    key_file = STATE_DIR / "django-secret-key"
    if not key_file.exists():
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"] + [
    host.strip() for host in os.environ.get("DIRECTOR_ALLOWED_HOSTS", "").split(",") if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "api.apps.ApiConfig",
    "ui.apps.UiConfig",
]

# The API needs no sessions, CSRF or redirects: its clients send bearer tokens. The web UI's pages take
# sessions and CSRF protection per view (ui/web.py), never as global middleware: each MiddlewareMixin one
# would cost every API request two thread hops under ASGI.
MIDDLEWARE = [
    "api.middleware.StatusErrorMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": ["django.template.context_processors.request", "ui.web.navigation"]
        },
    }
]

_SECURE_COOKIES = os.environ.get("DIRECTOR_SECURE_COOKIES", "").lower() in ("1", "true", "yes")
SESSION_COOKIE_NAME = "director_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = _SECURE_COOKIES
SESSION_COOKIE_AGE = 14 * 24 * 3600
CSRF_COOKIE_NAME = "director_csrf"
# The pages hand the token to their scripts in a meta element; no script needs to read the cookie.
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Strict"
CSRF_COOKIE_SECURE = _SECURE_COOKIES
CSRF_FAILURE_VIEW = "ui.web.csrf_failure"
LOGIN_URL = "/login"
# Uploads past this are streamed to a temporary file rather than held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

ROOT_URLCONF = "ui.urls"
ASGI_APPLICATION = "ui.asgi.application"
APPEND_SLASH = False

DATABASES = {
    "default": _database(
        os.environ.get("DIRECTOR_DATABASE_URL") or f"sqlite:///{STATE_DIR / 'director.sqlite3'}"
    )
}
for _database_settings in DATABASES.values():
    # Request threads keep their connection for a minute, checked before reuse (see api.views).
    _database_settings.update({"CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"api": {"handlers": ["console"], "level": os.environ.get("DIRECTOR_LOG_LEVEL", "INFO")}},
}
