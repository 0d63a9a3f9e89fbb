"""The reconcile-event log: what the controller did to each site, in SQLite (WAL) beside the records.

Each event carries the uid of the site it was about (none for the platform, or for a name with no
readable record): a site deleted and created again under its name is another site, and its history
is another history. Events recorded before uids were (a log from an older Director) have none.

Identical repeats collapse into one row with a count, so a site failing the same way every resync costs
one row, not thousands. Retention is bounded by total count, count per site and age. Several processes
may write at once; SQLite's own locking and journal keep the file whole if a writer is killed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

EventResult = Literal["created", "updated", "unchanged", "deleted", "failed", "skipped"]
_RESULTS = frozenset(get_args(EventResult))
# Whole-log pruning (total count and age) runs once per this many records; per-site pruning on every insert.
PRUNE_EVERY = 500
MAX_MESSAGE_CHARS = 8192

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_us INTEGER NOT NULL,
    last_time_us INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    site TEXT NOT NULL,
    generation INTEGER,
    reconcile_id TEXT NOT NULL,
    trigger TEXT NOT NULL,
    step TEXT NOT NULL,
    result TEXT NOT NULL,
    duration_seconds REAL NOT NULL,
    message TEXT NOT NULL,
    uid TEXT
);
CREATE INDEX IF NOT EXISTS events_by_site ON events (site, last_time_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS events_by_time ON events (last_time_us DESC, id DESC);
"""
# After the migration, so that a log from before uids has the column when the index is made.
_UID_INDEX = "CREATE INDEX IF NOT EXISTS events_by_uid ON events (uid, last_time_us DESC, id DESC)"
_COLUMNS = (
    "id, time_us, last_time_us, count, site, generation, reconcile_id, trigger, step, result, "
    "duration_seconds, message, uid"
)


@dataclass(frozen=True)
class NewEvent:
    """An event to record; `time` None: when it is written."""

    site: str
    generation: int | None
    reconcile_id: str
    trigger: str
    step: str
    result: EventResult
    duration_seconds: float
    message: str = ""
    time: datetime | None = None
    uid: str | None = None


@dataclass(frozen=True)
class ReconcileEvent:
    id: int
    time: datetime
    last_time: datetime
    count: int
    site: str
    generation: int | None
    reconcile_id: str
    trigger: str
    step: str
    result: EventResult
    duration_seconds: float
    message: str
    # The site's metadata.uid; None for the platform, a name with no readable record, or an old log.
    uid: str | None = None


def _add_uid_column(connection: sqlite3.Connection) -> None:
    """Migrate a log from before uids: add the column, keep its rows (they have no uid)."""

    def has_uid() -> bool:
        return any(column[1] == "uid" for column in connection.execute("PRAGMA table_info(events)"))

    if has_uid():
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Checked again under the write lock: another process may have migrated in between.
        if not has_uid():
            connection.execute("ALTER TABLE events ADD COLUMN uid TEXT")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("event times must be timezone-aware (UTC)")
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def _event(row: Any) -> ReconcileEvent:
    (
        id_,
        time_us,
        last_us,
        count,
        site,
        generation,
        reconcile_id,
        trigger,
        step,
        result,
        duration,
        message,
        uid,
    ) = row
    return ReconcileEvent(
        id=int(id_),
        time=_from_us(time_us),
        last_time=_from_us(last_us),
        count=int(count),
        site=str(site),
        generation=None if generation is None else int(generation),
        reconcile_id=str(reconcile_id),
        trigger=str(trigger),
        step=str(step),
        result=result if result in _RESULTS else "failed",
        duration_seconds=float(duration),
        message=str(message),
        uid=None if uid is None else str(uid),
    )


class EventLog:
    def __init__(
        self,
        path: Path,
        *,
        max_events: int = 200_000,
        max_per_site: int = 1_000,
        max_age: timedelta = timedelta(days=30),
    ) -> None:
        if max_events < 1 or max_per_site < 1:
            raise ValueError("max_events and max_per_site must be at least 1")
        if max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        self.path = Path(path)
        self.max_events = max_events
        self.max_per_site = max_per_site
        self.max_age = max_age
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._records_since_prune = 0
        self._connect()

    def _connect(self) -> sqlite3.Connection:
        # A connection inherited across fork() must not be used by the child: open its own.
        if self._connection is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=30000")
            connection.executescript(_SCHEMA)
            _add_uid_column(connection)
            connection.execute(_UID_INDEX)
            self._connection = connection
            self._pid = os.getpid()
        return self._connection

    def record(
        self,
        *,
        site: str,
        generation: int | None,
        reconcile_id: str,
        trigger: str,
        step: str,
        result: EventResult,
        duration_seconds: float,
        message: str = "",
        time: datetime | None = None,
        uid: str | None = None,
    ) -> ReconcileEvent:
        [event] = self.record_many(
            [
                NewEvent(
                    site=site,
                    generation=generation,
                    reconcile_id=reconcile_id,
                    trigger=trigger,
                    step=step,
                    result=result,
                    duration_seconds=duration_seconds,
                    message=message,
                    time=time,
                    uid=uid,
                )
            ]
        )
        return event

    def record_many(self, events: Sequence[NewEvent]) -> list[ReconcileEvent]:
        """Record `events` in order, in one transaction: a resync's thousand quiet passes cost one commit."""
        return self._record_many(events, read_back=True)

    def append(self, events: Sequence[NewEvent]) -> None:
        """record_many for a writer that does not read the events back (the controller's recorder): each
        costs its lookup of the site's newest event and its one write, no query of the row written."""
        self._record_many(events, read_back=False)

    def _record_many(self, events: Sequence[NewEvent], *, read_back: bool) -> list[ReconcileEvent]:
        for new in events:
            if new.result not in _RESULTS:
                raise ValueError(f"result must be one of {', '.join(sorted(_RESULTS))}, got {new.result!r}")
            if not new.site:
                raise ValueError("site must not be empty")
        recorded: list[ReconcileEvent] = []
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                # Timed once the log is ours: a writer that waited for others' commits must not date its
                # events before theirs, or per-site retention would drop them as the oldest.
                now = _to_us(datetime.now(UTC))
                for new in events:
                    event_id = self._insert(db, new, now)
                    if read_back:
                        recorded.append(self._read_back(db, new, event_id, now))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._records_since_prune += len(events)
            due = self._records_since_prune >= PRUNE_EVERY
        if due:
            self.prune()
        return recorded

    def _insert(self, db: sqlite3.Connection, new: NewEvent, now: int) -> int:
        """The event's row: a new one, or the site's newest if this event repeats it."""
        message = new.message[:MAX_MESSAGE_CHARS]
        moment = now if new.time is None else _to_us(new.time)
        site, generation, step, result, uid = new.site, new.generation, new.step, new.result, new.uid
        # A repeat is one of this very site: an event of a former site of the name stays its own.
        newest = db.execute(
            "SELECT id, generation, step, result, message FROM events WHERE site = ? AND uid IS ? "
            "ORDER BY last_time_us DESC, id DESC LIMIT 1",
            (site, uid),
        ).fetchone()
        if newest is not None and tuple(newest[1:]) == (generation, step, result, message):
            event_id = int(newest[0])
            db.execute(
                "UPDATE events SET count = count + 1, last_time_us = max(last_time_us, ?), "
                "reconcile_id = ?, trigger = ?, duration_seconds = ? WHERE id = ?",
                (moment, new.reconcile_id, new.trigger, new.duration_seconds, event_id),
            )
        else:
            cursor = db.execute(
                "INSERT INTO events (time_us, last_time_us, site, generation, reconcile_id, trigger, "
                "step, result, duration_seconds, message, uid) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    moment,
                    moment,
                    site,
                    generation,
                    new.reconcile_id,
                    new.trigger,
                    step,
                    result,
                    new.duration_seconds,
                    message,
                    uid,
                ),
            )
            event_id = int(cursor.lastrowid or 0)
            db.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE site = ? "
                "ORDER BY last_time_us DESC, id DESC LIMIT -1 OFFSET ?)",
                (site, self.max_per_site),
            )
        return event_id

    @staticmethod
    def _read_back(db: sqlite3.Connection, new: NewEvent, event_id: int, now: int) -> ReconcileEvent:
        moment = now if new.time is None else _to_us(new.time)
        site, generation, step, result = new.site, new.generation, new.step, new.result
        message, uid = new.message[:MAX_MESSAGE_CHARS], new.uid
        row = db.execute(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            # Given a time older than the site's newest max_per_site events, it was recorded and dropped
            # by retention at once: it is still what happened.
            row = (
                event_id,
                moment,
                moment,
                1,
                site,
                generation,
                new.reconcile_id,
                new.trigger,
                step,
                result,
                new.duration_seconds,
                message,
                uid,
            )
        return _event(row)

    def query(
        self,
        site: str | None = None,
        *,
        uid: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[ReconcileEvent]:
        """Newest first by last occurrence, of one site name and of one uid if given (else of all);
        the next page starts with before_id = the last id of this one."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        conditions: list[str] = []
        parameters: list[object] = []
        if site is not None:
            conditions.append("site = ?")
            parameters.append(site)
        if uid is not None:
            conditions.append("uid = ?")
            parameters.append(uid)
        with self._lock:
            db = self._connect()
            if before_id is not None:
                anchor = db.execute("SELECT last_time_us FROM events WHERE id = ?", (before_id,)).fetchone()
                if anchor is None:
                    conditions.append("id < ?")
                    parameters.append(before_id)
                else:
                    conditions.append("(last_time_us < ? OR (last_time_us = ? AND id < ?))")
                    parameters.extend([anchor[0], anchor[0], before_id])
            where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM events {where} ORDER BY last_time_us DESC, id DESC LIMIT ?",
                [*parameters, limit],
            ).fetchall()
        return [_event(row) for row in rows]

    def prune(self, now: datetime | None = None) -> int:
        """Drop events past the age limit and beyond the total and per-site counts; returns how many."""
        cutoff = _to_us((now or datetime.now(UTC)) - self.max_age)
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                removed = db.execute("DELETE FROM events WHERE last_time_us < ?", (cutoff,)).rowcount
                removed += db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events "
                    "ORDER BY last_time_us DESC, id DESC LIMIT -1 OFFSET ?)",
                    (self.max_events,),
                ).rowcount
                removed += db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER "
                    "(PARTITION BY site ORDER BY last_time_us DESC, id DESC) AS rank FROM events) "
                    "WHERE rank > ?)",
                    (self.max_per_site,),
                ).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._records_since_prune = 0
        return removed

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
