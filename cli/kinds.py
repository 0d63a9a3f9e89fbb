"""The names dirctl's verbs take for the kinds that are not sites, singular and plural, apart from the
modules that show and change them: `dirctl get sites` lists which kinds it takes without importing them."""

from __future__ import annotations

BLOCKED_DOMAINS = ("blockeddomain", "blockeddomains")
GITSOURCES = ("gitsource", "gitsources")
PLATFORMS = ("platform", "platforms")
SECRETS = ("secret", "secrets")
USERS = ("user", "users")
TOKENS = ("token", "tokens")
WRITES = ("write", "writes")
