"""A terminal session as the API and its backend agree on it: what a session is asked to run, and what a
running one does. Pure data and protocols: the API (which relays sessions) and the Docker backend in
reconcilers/ (which runs them) both use them without either importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from specs.models import Site

SessionKind = Literal["shell", "exec", "sftp"]
STDOUT = 1
STDERR = 2


class Refused(Exception):
    """A session that may not start; the message is shown to the person as it is."""


@dataclass(frozen=True)
class PtySize:
    cols: int
    rows: int


@dataclass(frozen=True)
class TerminalRequest:
    """What one session runs: the site and its record, who asked, and what they want to run."""

    session_id: str
    site: Site
    username: str
    kind: SessionKind
    command: str | None = None
    term: str | None = None
    pty: PtySize | None = None


class TerminalSession(Protocol):
    """A running session's container, as the relay sees it."""

    async def read(self) -> tuple[int, bytes] | None:
        """The next output (STDOUT or STDERR, bytes), or None once the container's output has ended."""

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self) -> None:
        """No more input (a pipe closed); a terminal session ignores it, as a terminal would."""

    async def resize(self, size: PtySize) -> None: ...

    async def exit_status(self) -> int | None:
        """Wait for the container to end; its exit status, None if it could not be had."""

    async def close(self) -> None:
        """Stop and remove the container (idempotent): called for every session, however it ended."""


class TerminalBackend(Protocol):
    async def open(self, request: TerminalRequest) -> TerminalSession:
        """Start the session's container; Refused with a plain message if it cannot be started."""

    async def sessions_of(self, username: str) -> set[str]:
        """The ids of this person's sessions that have a container now, made by any API process."""
