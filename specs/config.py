"""Director's settings, read from the environment once: the embedded defaults of a one-machine install."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Every instance's edge service is named `<instance>-edge`: what tells an edge by its name alone.
EDGE_SERVICE_SUFFIX = "-edge"


def _env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds such as 1 or 0.5, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be more than 0 seconds, got {raw!r}")
    return value


def _env_list(name: str) -> tuple[str, ...]:
    """A comma-separated list, lower-cased (host names are compared so), empty items dropped."""
    return tuple(item.strip().lower() for item in os.environ.get(name, "").split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    state_dir: Path = field(default_factory=lambda: Path("var").resolve())
    sites_domain: str = "sites.localhost"
    http_port: int = 8080
    # Empty means: build and use the local image (no registry is reachable on a bare machine).
    edge_image: str = ""
    site_image: str = ""
    # Prefix of every Docker object and value of the io.director.instance label: two Directors (or a
    # test run beside the demo) on one Swarm never touch each other's services.
    instance: str = "director"
    resync_seconds: int = 30
    trash_retention_days: int = 7
    # Domains (each with every name under it) only an admin may give a site: a school's own domain.
    admin_only_domains: tuple[str, ...] = ()
    # API tokens end this many days after they are made (a token asked for with a shorter life ends sooner).
    token_ttl_days: int = 30
    # Failed password checks allowed before each further try waits, per user name and per client address
    # (higher: one address may be a whole school behind NAT); then the wait starts at login_delay_seconds and
    # doubles with each failure, up to login_max_delay_seconds.
    login_free_failures: int = 5
    login_free_failures_per_address: int = 20
    login_delay_seconds: float = 1.0
    login_max_delay_seconds: float = 900.0
    # Terminal sessions (SSH shell, web terminal): how many one person may have at once, and when one ends
    # without input or output, or at the latest.
    shell_sessions_per_user: int = 20
    shell_idle_seconds: float = 1800.0
    shell_max_session_seconds: float = 10800.0
    # How long the edge waits for a dynamic site to connect, and then between two reads or writes of its
    # answer, before it answers 504 itself: a site that never answers holds a connection no longer.
    proxy_connect_timeout_seconds: float = 10.0
    proxy_timeout_seconds: float = 120.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            state_dir=Path(os.environ.get("DIRECTOR_STATE_DIR", "var")).resolve(),
            sites_domain=os.environ.get("DIRECTOR_SITES_DOMAIN", "sites.localhost"),
            http_port=_env_int("DIRECTOR_HTTP_PORT", 8080),
            edge_image=os.environ.get("DIRECTOR_EDGE_IMAGE", ""),
            site_image=os.environ.get("DIRECTOR_SITE_IMAGE", ""),
            instance=os.environ.get("DIRECTOR_INSTANCE", "director"),
            resync_seconds=_env_int("DIRECTOR_RESYNC_SECONDS", 30),
            trash_retention_days=_env_int("DIRECTOR_TRASH_RETENTION_DAYS", 7),
            admin_only_domains=_env_list("DIRECTOR_ADMIN_ONLY_DOMAINS"),
            token_ttl_days=_env_int("DIRECTOR_TOKEN_TTL_DAYS", 30, minimum=1),
            login_free_failures=_env_int("DIRECTOR_LOGIN_FREE_FAILURES", 5, minimum=1),
            login_free_failures_per_address=_env_int(
                "DIRECTOR_LOGIN_FREE_FAILURES_PER_ADDRESS", 20, minimum=1
            ),
            login_delay_seconds=_env_seconds("DIRECTOR_LOGIN_DELAY_SECONDS", 1.0),
            login_max_delay_seconds=_env_seconds("DIRECTOR_LOGIN_MAX_DELAY_SECONDS", 900.0),
            shell_sessions_per_user=_env_int("DIRECTOR_SHELL_SESSIONS_PER_USER", 20, minimum=1),
            shell_idle_seconds=_env_seconds("DIRECTOR_SHELL_IDLE_SECONDS", 1800.0),
            shell_max_session_seconds=_env_seconds("DIRECTOR_SHELL_MAX_SESSION_SECONDS", 10800.0),
            proxy_connect_timeout_seconds=_env_seconds("DIRECTOR_PROXY_CONNECT_TIMEOUT_SECONDS", 10.0),
            proxy_timeout_seconds=_env_seconds("DIRECTOR_PROXY_TIMEOUT_SECONDS", 120.0),
        )

    @property
    def network(self) -> str:
        return f"{self.instance}-sites"

    @property
    def edge_service(self) -> str:
        return f"{self.instance}{EDGE_SERVICE_SUFFIX}"

    def service_name(self, site: str) -> str:
        return f"{self.instance}-site-{site}"

    @property
    def specs_dir(self) -> Path:
        return self.state_dir / "specs"

    @property
    def events_db(self) -> Path:
        return self.state_dir / "events.db"

    @property
    def sites_dir(self) -> Path:
        return self.state_dir / "sites"

    @property
    def edge_dir(self) -> Path:
        return self.state_dir / "edge"

    @property
    def edge_cache_dir(self) -> Path:
        """The dynamic sites' cached pages (spec.cache), written by the edge."""
        return self.state_dir / "edge-cache"

    @property
    def trash_dir(self) -> Path:
        return self.state_dir / "trash"

    def site_urls(self, name: str, domains: list[str]) -> list[str]:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return [f"http://{host}{port}/" for host in [f"{name}.{self.sites_domain}", *domains]]


# ---- the API's HTTPS, as every process on this machine reaches it --------------------------------------

API_TLS_ENV = "DIRECTOR_API_TLS"
API_CA_ENV = "DIRECTOR_API_CA"
TLS_DIR = "tls"
CA_CERT_FILE = "ca.crt"
DEFAULT_API_PORT = 8000


def api_tls_enabled() -> bool:
    """Whether the API serves HTTPS: yes unless DIRECTOR_API_TLS=off (allowed only on loopback, behind a
    proxy that terminates TLS itself)."""
    raw = os.environ.get(API_TLS_ENV, "on").strip().lower() or "on"
    if raw not in ("on", "off"):
        raise ValueError(f"{API_TLS_ENV} must be on or off, got {raw!r}")
    return raw == "on"


def default_api_url(port: int | None = None) -> str:
    """The API on loopback, as `director run` starts it: what the shell server and the controller ask
    unless DIRECTOR_API_URL says otherwise."""
    scheme = "https" if api_tls_enabled() else "http"
    return f"{scheme}://127.0.0.1:{port or _env_int('DIRECTOR_API_PORT', DEFAULT_API_PORT)}"


def api_ca_path(state_dir: Path) -> Path:
    """Where the CA certificate the API's clients on this machine trust is: DIRECTOR_API_CA, else the one
    the API makes in the state directory on its first start."""
    explicit = os.environ.get(API_CA_ENV, "").strip()
    return Path(explicit) if explicit else state_dir / TLS_DIR / CA_CERT_FILE


def api_ca_file(state_dir: Path) -> Path | None:
    """The CA certificate file the API's clients trust, if it is there; None: the system's authorities."""
    path = api_ca_path(state_dir)
    return path if path.exists() else None
