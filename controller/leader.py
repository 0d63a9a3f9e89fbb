"""One controller writes at a time: an exclusive flock on a file in the state dir.

The kernel drops the lock when its holder dies, even by SIGKILL, so a stale holder never blocks a
successor. Who holds it and who waits is reported in `controller.yaml` beside it, for people and tools
(`cat var/controller.yaml`); that file is only a report, the flock alone decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

LOCK_FILE = "controller.lock"
REPORT_FILE = "controller.yaml"


@dataclass(frozen=True)
class Participant:
    pid: int
    host: str
    since: datetime

    @classmethod
    def me(cls) -> Participant:
        return cls(pid=os.getpid(), host=socket.gethostname(), since=datetime.now(UTC))

    def to_document(self) -> dict[str, Any]:
        return {"pid": self.pid, "host": self.host, "since": self.since.isoformat()}

    @classmethod
    def from_document(cls, document: object) -> Participant | None:
        if not isinstance(document, dict):
            return None
        try:
            return cls(
                pid=int(document["pid"]),
                host=str(document["host"]),
                since=datetime.fromisoformat(str(document["since"])),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since.isoformat(timespec='seconds')}"


@dataclass(frozen=True)
class LeaderReport:
    holder: Participant | None
    waiting: list[Participant]


def read_report(state_dir: Path) -> LeaderReport:
    """Who holds the controller lock and who waits, as last reported (empty when nobody reported)."""
    try:
        document = yaml.safe_load((state_dir / REPORT_FILE).read_text())
    except (FileNotFoundError, yaml.YAMLError):
        return LeaderReport(holder=None, waiting=[])
    if not isinstance(document, dict):
        return LeaderReport(holder=None, waiting=[])
    waiting_documents = document.get("waiting")
    waiting = [p for p in (Participant.from_document(d) for d in (waiting_documents or [])) if p is not None]
    return LeaderReport(holder=Participant.from_document(document.get("holder")), waiting=waiting)


class LeaderLock:
    def __init__(self, state_dir: Path, *, me: Participant | None = None) -> None:
        self._state_dir = state_dir
        self._me = me if me is not None else Participant.me()
        self._fd: int | None = None

    @property
    def me(self) -> Participant:
        return self._me

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self._state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self._me = Participant(pid=self._me.pid, host=self._me.host, since=datetime.now(UTC))
        self._edit_report(lambda holder, waiting: (self._me, [p for p in waiting if p.pid != self._me.pid]))
        return True

    async def acquire(
        self, stop: asyncio.Event, *, poll_seconds: float = 1.0, log_every: float = 60.0
    ) -> bool:
        """Wait for the lock until it is ours (True) or `stop` is set (False), saying who holds it."""
        if self.try_acquire():
            log.info("controller lock acquired (%s)", self._me.describe())
            return True
        self._edit_report(
            lambda holder, waiting: (holder, [*(p for p in waiting if p.pid != self._me.pid), self._me])
        )
        last_said = -log_every
        try:
            while not stop.is_set():
                if self.try_acquire():
                    log.info("controller lock acquired after waiting (%s)", self._me.describe())
                    return True
                if time.monotonic() - last_said >= log_every:
                    holder = read_report(self._state_dir).holder
                    who = holder.describe() if holder is not None else "another process"
                    log.warning("another controller holds the lock (%s); waiting for it", who)
                    last_said = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_seconds)
            return False
        finally:
            if self._fd is None:
                self._edit_report(
                    lambda holder, waiting: (holder, [p for p in waiting if p.pid != self._me.pid])
                )

    def release(self) -> None:
        if self._fd is None:
            return
        self._edit_report(
            lambda holder, waiting: (
                None if holder is not None and holder.pid == self._me.pid else holder,
                waiting,
            )
        )
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        log.info("controller lock released")

    def report_resync(self, queue_depth: int) -> None:
        """Say in the report that the holder finished a resync now, and how many reconciles wait in its
        queue: what the web UI's platform page shows."""
        if self._fd is None:
            return
        progress = {"lastResync": datetime.now(UTC).isoformat(), "queueDepth": queue_depth}
        try:
            self._edit_report(lambda holder, waiting: (holder, waiting), progress=progress)
        except OSError as error:
            # Only a report for people (a full disk refuses it): the resync itself is done all the same.
            log.warning("the controller report in %s was not updated: %s", self._state_dir, error)

    def _edit_report(
        self,
        change: Callable[
            [Participant | None, list[Participant]], tuple[Participant | None, list[Participant]]
        ],
        *,
        progress: dict[str, Any] | None = None,
    ) -> None:
        """Read-modify-write the report under its own short lock, replacing the file atomically."""
        with self._report_lock():
            current = read_report(self._state_dir)
            holder, waiting = change(current.holder, _alive(current.waiting))
            if progress is None and holder is not None and holder == current.holder:
                progress = _progress(self._state_dir)
            document = {
                "holder": holder.to_document() if holder is not None else None,
                "waiting": [p.to_document() for p in waiting],
                "updated": datetime.now(UTC).isoformat(),
                # The holder's last resync; a new holder starts without one.
                "progress": progress,
            }
            path = self._state_dir / REPORT_FILE
            temporary = path.with_name(f".{REPORT_FILE}.{os.getpid()}.tmp")
            temporary.write_text(yaml.safe_dump(document, sort_keys=False))
            os.replace(temporary, path)

    @contextlib.contextmanager
    def _report_lock(self) -> Iterator[None]:
        fd = os.open(self._state_dir / f"{REPORT_FILE}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _progress(state_dir: Path) -> dict[str, Any] | None:
    """The progress the holder last reported, kept across the report's other edits."""
    try:
        document = yaml.safe_load((state_dir / REPORT_FILE).read_text())
    except (FileNotFoundError, yaml.YAMLError):
        return None
    progress = document.get("progress") if isinstance(document, dict) else None
    return progress if isinstance(progress, dict) else None


def _alive(participants: list[Participant]) -> list[Participant]:
    """Drop waiters of this host that died without saying so (SIGKILL)."""
    here = socket.gethostname()
    return [p for p in participants if p.host != here or _pid_alive(p.pid)]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
