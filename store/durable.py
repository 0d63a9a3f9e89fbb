"""Crash-safe file primitives shared by the record store: atomic replace, durable removal, a process lock.

A writer killed at any instant leaves either the old or the new file because readers only ever see a
file through a rename, and the rename happens after the new content is on disk.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".tmp"
# Files of one batch are synced this many at a time: the filesystem's journal commits concurrent fsyncs
# together (measured on these machines: 256 small files synced one by one 1.9 ms each, 16 at a time 0.2-0.3
# ms each), where a single writer pays a whole commit per file.
SYNC_THREADS = 16
_syncing = ThreadPoolExecutor(max_workers=SYNC_THREADS, thread_name_prefix="director-fsync")


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
    os.replace(_written_temp(path, data), path)
    if sync_directory:
        fsync_directory(path.parent)


def _written_temp(path: Path, data: bytes) -> Path:
    """`data` in a new temp file beside `path`, on disk."""
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
    return temp


def _written_temps(files: Sequence[tuple[Path, bytes]]) -> list[Path]:
    """_written_temp of each file in turn; if one fails, those already written are removed."""
    temps: list[Path] = []
    try:
        for path, data in files:
            temps.append(_written_temp(path, data))
    except BaseException:
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise
    return temps


def write_many_atomic(
    files: Sequence[tuple[Path, bytes]],
    *,
    sync_directories: bool = True,
    before_rename: Callable[[list[Path]], None] | None = None,
) -> None:
    """write_atomic for many files at once, with the same guarantee for each (a crash leaves each file old
    or new, never torn): their contents are synced together, then each is renamed into place, then each
    directory they are in is synced once. If one cannot be written, none is renamed.

    `before_rename` is given the temp files, in the order of `files`, once all are on disk and before any is
    renamed: each is the very file (inode, size, mtime) its path will name."""
    if len(files) == 1:
        temps = [_written_temp(*files[0])]
    else:
        # A share of the files per thread, each written and synced in turn: the syncs of the threads overlap.
        shares = [files[start::SYNC_THREADS] for start in range(min(SYNC_THREADS, len(files)))]
        writing = [_syncing.submit(_written_temps, share) for share in shares]
        errors = [error for future in writing if (error := future.exception()) is not None]
        if errors:
            for future in writing:
                if future.exception() is None:
                    for temp in future.result():
                        temp.unlink(missing_ok=True)
            raise errors[0]
        # Back in the order of `files`: share i holds files i, i + SYNC_THREADS, ...
        written = [future.result() for future in writing]
        temps = [written[index % len(shares)][index // len(shares)] for index in range(len(files))]
    if before_rename is not None:
        try:
            before_rename(temps)
        except BaseException:
            for temp in temps:
                temp.unlink(missing_ok=True)
            raise
    for temp, (path, _) in zip(temps, files, strict=True):
        os.replace(temp, path)
    if sync_directories:
        for directory in dict.fromkeys(path.parent for path, _ in files):
            fsync_directory(directory)


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
        return self.advance_each([at_least])[0]

    def advance_each(self, floors: Sequence[int]) -> list[int]:
        """One new value per floor, each above its floor and above the one before, with one write."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            raw = os.pread(fd, self._WIDTH + 1, 0).strip()
            value = int(raw) if raw.isdigit() else 0
            values = []
            for floor in floors:
                value = max(value, floor) + 1
                values.append(value)
            if values:
                self._write(fd, value)
            return values
        finally:
            os.close(fd)

    def _write(self, fd: int, value: int) -> None:
        os.pwrite(fd, f"{value:0{self._WIDTH}d}\n".encode(), 0)
        os.fdatasync(fd)
