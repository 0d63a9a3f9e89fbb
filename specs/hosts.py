"""Which host names a site may serve, apart from who holds them.

A site's default host is `<name>.<sites domain>`; its custom domains are whatever else it names. No custom
domain may be one the edge or the platform answers for by itself, nor one that is not a name at all:

- an IP literal (a last label of digits only, as no top-level domain is): with it a site would answer
  `http://127.0.0.1/` and every request that names no host;
- `localhost` and names under it, which resolve to the machine itself (RFC 6761);
- the sites domain and every name under it: each `<name>.<sites domain>` is some site's default host, and
  reserved site names keep theirs for Director.

Admin-only patterns (a school's own domain) and the admins' blocked list are decided by the API, which
knows who is asking; this module is the rule every layer shares, the routes reconciler included.
"""

from __future__ import annotations

from collections.abc import Iterable

LOOPBACK_DOMAIN = "localhost"


def is_within(host: str, domain: str) -> bool:
    """`host` is `domain` itself or a name under it."""
    return host == domain or host.endswith("." + domain)


def custom_domain_problem(host: str, sites_domain: str) -> str | None:
    """Why no site may claim `host` as a custom domain, or None when a site may."""
    if host.rsplit(".", 1)[-1].isdigit():
        return f"{host} is an IP address, not a host name; a site is reached by name"
    if is_within(host, sites_domain):
        return (
            f"{host} is under the sites domain {sites_domain}, whose names are the sites' own default "
            f"hosts; a site's default host is <name>.{sites_domain}"
        )
    if is_within(host, LOOPBACK_DOMAIN):
        return f"{host} names this machine itself (localhost), not a site"
    return None


def matching_pattern(host: str, patterns: Iterable[str]) -> str | None:
    """The first pattern `host` falls under: `example.org` covers the name and every name under it."""
    return next((pattern for pattern in patterns if is_within(host, pattern.removeprefix("*."))), None)
