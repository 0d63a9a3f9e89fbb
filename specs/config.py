"""Director's settings, read from the environment once: the embedded defaults of a one-machine install."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


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
        )

    @property
    def network(self) -> str:
        return f"{self.instance}-sites"

    @property
    def edge_service(self) -> str:
        return f"{self.instance}-edge"

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
    def trash_dir(self) -> Path:
        return self.state_dir / "trash"

    def site_urls(self, name: str, domains: list[str]) -> list[str]:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return [f"http://{host}{port}/" for host in [f"{name}.{self.sites_domain}", *domains]]
