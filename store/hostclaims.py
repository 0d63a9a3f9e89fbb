"""Who holds each custom domain: one small file per host, written only under the record store's lock.

    claims/hosts/<host>      {"site": NAME, "uid": UID, "since": RFC 3339}

A host is held by the site that claimed it first, until that site lets go of it (drops it from its
domains, or is deleted). The claim names the site's uid, not only its name: a site deleted and created
again under the same name is a new claimant. A claim is written before the record naming the host and
removed after the record stops naming it, so a crash between the two leaves a claim too many, never a
record naming a host nobody holds; the store treats a claim whose record no longer names the host as
stale, and removes it when it meets it.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from specs.models import HOSTNAME_PATTERN
from store.durable import remove_durably, remove_stale_temp_files, write_atomic

_HOST = re.compile(HOSTNAME_PATTERN)
# Present once every record of a store made before claims existed has had its hosts claimed.
_COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class Claim:
    host: str
    site: str
    uid: str
    since: str


class HostClaims:
    """The claim files of one store. Not locked itself: the store calls it holding its write lock."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "claims" / "hosts"
        self.directory.mkdir(parents=True, exist_ok=True)

    def remove_stale_temp_files(self) -> None:
        """Temp files of writers killed before their rename. Only under the store's write lock: without it,
        a process opening the store would remove the temp file another one is about to rename."""
        remove_stale_temp_files(self.directory)

    def _path(self, host: str) -> Path:
        # The host becomes a file name: only a valid host name (no "/", never "." or "..") may.
        if not _HOST.fullmatch(host):
            raise ValueError(f"{host!r} is not a host name")
        return self.directory / host

    def read(self, host: str) -> Claim | None:
        """The claim on `host`, or None; an unreadable claim file counts as none (the store rewrites it)."""
        try:
            fields = json.loads(self._path(host).read_bytes())
            return Claim(
                host=host, site=str(fields["site"]), uid=str(fields["uid"]), since=str(fields["since"])
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def hold(self, host: str, site: str, uid: str) -> Claim:
        claim = Claim(host=host, site=site, uid=uid, since=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        fields = {key: value for key, value in asdict(claim).items() if key != "host"}
        write_atomic(self._path(host), json.dumps(fields).encode())
        return claim

    def release(self, host: str) -> None:
        with contextlib.suppress(ValueError):
            remove_durably(self._path(host))

    def hosts(self) -> list[str]:
        return sorted(path.name for path in self.directory.iterdir() if not path.name.startswith("."))

    @property
    def migrated(self) -> bool:
        return (self.directory / _COMPLETE_MARKER).exists()

    def mark_migrated(self) -> None:
        write_atomic(self.directory / _COMPLETE_MARKER, b"")
