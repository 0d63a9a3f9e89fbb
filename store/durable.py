"""Crash-safe file primitives shared by the record store: atomic replace, durable removal, a process lock.

A writer killed at any instant leaves either the old or the new file because readers only ever see a
file through a rename, and the rename happens after the new content is on disk.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, sync_directory: bool = True) -> None:
    """Replace `path` with `data` so that a crash leaves the old or the new content, never a mix.

    The content is on disk before the rename, so the file is never seen torn or empty. `sync_directory`
    makes the rename itself survive a crash; without it a crash may bring back the previous file, which
    suits what is recomputed anyway (a status record).
    """
    temp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temp, path)
    if sync_directory:
        fsync_directory(path.parent)


def remove_durably(path: Path) -> bool:
    """Remove `path` and make the removal survive a crash; False if it was already gone."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_directory(path.parent)
    return True


def remove_stale_temp_files(directory: Path) -> None:
    """Temp files left by writers killed before their rename; call only while holding the write lock."""
    for entry in os.scandir(directory):
        if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX):
            Path(entry.path).unlink(missing_ok=True)


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """flock on a fresh open file description: excludes other processes and other threads alike."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        # Closing the descriptor releases the lock; the kernel does the same for a killed holder.
        os.close(fd)


class Counter:
    """A durable store-wide counter in a small file, advanced only while the caller holds the write lock.

    The value is written in place as one fixed-width line: a single small pwrite within one page is
    never seen half-done by readers, and an fsync makes it survive a power loss.
    """

    _WIDTH = 20

    def __init__(self, path: Path) -> None:
        self._path = path

    def exists(self) -> bool:
        return self._path.exists()

    def seed(self, value: int) -> None:
        """Start (or restart) the counter at `value`; the next advance() returns value + 1."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._write(fd, value)
        finally:
            os.close(fd)

    def advance(self, at_least: int = 0) -> int:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            raw = os.pread(fd, self._WIDTH + 1, 0).strip()
            current = int(raw) if raw.isdigit() else 0
            value = max(current, at_least) + 1
            self._write(fd, value)
            return value
        finally:
            os.close(fd)

    def _write(self, fd: int, value: int) -> None:
        os.pwrite(fd, f"{value:0{self._WIDTH}d}\n".encode(), 0)
        os.fdatasync(fd)
