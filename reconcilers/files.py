"""Each site's directory: public/ and private/, owned by the site's uid, readable by the edge where needed.

    <sites_dir>/<name>/           0750 uid:www-data   the edge may pass through, nobody else
    <sites_dir>/<name>/public/    2770 uid:www-data   setgid: what the site writes stays readable by the edge
    <sites_dir>/<name>/private/   0700 uid:uid        the site's alone

A site's uid is allocated once (from 200000 up, above any real account) and recorded as the owner of its
directory; archived directories in the trash keep theirs, so a uid is never handed to a second site while
the first one's files still exist.

This runs as root in directories whose entries each site may rename or replace at any instant, with a
symbolic link to /etc as readily as with a directory. So nothing is reached there by path: each entry is
opened from its parent's descriptor without following a link (O_NOFOLLOW), and owner and mode are set on
the descriptor (fchown, fchmod); starter files are created with O_EXCL, never through a link.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import shutil
import stat
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.batcher import Batcher
from controller.types import Outcome, PermanentError, ReconcileContext, Step
from reconcilers.docker_calls import DeadlineExceeded, off_loop, seconds_left
from specs.config import Settings
from specs.models import Site
from store.sitefiles import (
    DIRECTORY_FLAGS,
    EDGE_GID,
    FIRST_SITE_UID,
    NEW_FILE_FLAGS,
    NO_LINK_DIRECTORY_FLAGS,
    exists,
)

__all__ = ["EDGE_GID", "FIRST_SITE_UID", "SiteFiles"]
TRASH_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_TRASH_ENTRY = re.compile(r"^(?P<name>[a-z0-9-]+)-(?P<stamp>[0-9]{8}T[0-9]{6}Z)(\.[0-9]+)?$")
DEFAULT_INDEX_HTML = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>{name}</title></head>
<body>
<h1>{name}</h1>
<p>This site is new. Put its pages in <code>public/</code> and they are served here.</p>
</body>
</html>
"""
# Director 4.0 offered a run.sh template with each image: a new dynamic site starts serving at once, and its
# owner sees where their own server goes.
STARTER_RUN_SH = """#!/bin/sh
# Director runs this script to start your site, with PORT and HOST set and /site as your directory.
# Replace the last line with your own server (gunicorn, node, ...), listening on $HOST:$PORT.
exec python3 -m http.server "$PORT" --bind "$HOST" --directory /site/public
"""


# What lstat says of a directory that any change to it alters: a replacement (inode), an entry added or
# removed, a chown or chmod (ctime), the type, owner, group and mode; packed, since one is kept per directory
# of every site (a tuple of five ints each cost about 1 KB a site, this about 150 bytes).
_DIRECTORY_STATE = struct.Struct("=QqIII")


def _directory_states(sites_dir: str, paths: tuple[str, ...]) -> bytes | None:
    """The state of each of `paths`, and of `sites_dir` but for its ctime: every new site changes that."""
    states = []
    for index, path in enumerate((sites_dir, *paths)):
        try:
            found = os.lstat(path)
        except OSError:
            return None
        changed = found.st_ctime_ns if index else 0
        states.append(_DIRECTORY_STATE.pack(found.st_ino, changed, found.st_mode, found.st_uid, found.st_gid))
    return b"".join(states)


@dataclass(frozen=True, slots=True)
class _Converged:
    """A site's directories as the last converge left them, and what that converge was asked."""

    uid: int
    wants_run_sh: bool
    states: bytes


@dataclass(frozen=True)
class DirectoryRule:
    relative: str
    mode: int
    group_is_edge: bool


SITE_LAYOUT = (
    DirectoryRule("", 0o750, group_is_edge=True),
    DirectoryRule("public", 0o2770, group_is_edge=True),
    DirectoryRule("private", 0o700, group_is_edge=False),
)
# The directories of a site whose state a converged site is checked against, relative to its own.
_WATCHED = ("", *(f"{os.sep}{rule.relative}" for rule in SITE_LAYOUT if rule.relative))

# What one converge of a site came to: its steps and uid, or what it raised.
_Converge = tuple[list[Step], int] | Exception


class SiteFiles:
    """Reconciler for the site directories."""

    name = "files"
    after: tuple[str, ...] = ()

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # As text, made once: Settings makes a new Path at each ask, and this is asked for every site.
        self._sites_path = str(settings.sites_dir)
        self._uids: dict[str, int] = {}
        self._highest_uid_seen = FIRST_SITE_UID - 1
        self._scanned = False
        # Allocation must be atomic across the worker threads that run reconciles.
        self._lock = threading.Lock()
        # Per site, its directories as its last converge left them: a resync finding them so (a few lstat
        # calls on the loop) has nothing to do, without a thread hop and a dozen system calls per site.
        self._converged: dict[str, _Converged] = {}
        # The converges asked for together (thousands of new sites at a start) share one thread hop: a hop
        # per site cost more than the converge's own system calls.
        self._converging: Batcher[str, Site, _Converge] = Batcher(self._converge_batch, 0.0)

    def uid_of(self, name: str) -> int | None:
        """The site's uid, read from its directory's owner (None before its first reconcile)."""
        try:
            owner = (self._settings.sites_dir / name).lstat().st_uid
        except FileNotFoundError:
            return None
        return owner if owner >= FIRST_SITE_UID else None

    async def observe(self) -> None:
        await off_loop(time.monotonic() + 60, self._scan_and_prune)

    async def reconcile(self, site: Site, ctx: ReconcileContext) -> Outcome:
        uid = self._unchanged_uid(site)
        if uid is not None:
            site_dir = f"{self._sites_path}{os.sep}{site.name}"
            return Outcome(steps=[_in_place(site_dir, uid)], provides={"uid": uid})
        try:
            converged = await self._converging.submit(site.name, site, seconds_left(ctx.deadline))
        except TimeoutError:
            raise DeadlineExceeded(
                f"the directories of {site.name} were not converged before the deadline"
            ) from None
        if isinstance(converged, Exception):
            raise converged
        steps, uid = converged
        # The service runs as this uid; nothing later in the pass has to look it up again.
        return Outcome(steps=steps, provides={"uid": uid})

    async def _converge_batch(self, batch: dict[str, Site]) -> Mapping[str, _Converge]:
        return await asyncio.to_thread(self._converge_each, list(batch.values()))

    def _converge_each(self, sites: list[Site]) -> dict[str, _Converge]:
        """_converge of each site; what one raises is its own result and stops none of the others."""
        results: dict[str, _Converge] = {}
        for site in sites:
            try:
                results[site.name] = self._converge(site)
            except Exception as error:
                results[site.name] = error
        return results

    async def finalize(self, name: str, ctx: ReconcileContext) -> Outcome:
        self._converged.pop(name, None)
        return Outcome(steps=[await off_loop(ctx.deadline, self._archive, name)])

    def _states(self, name: str) -> bytes | None:
        # Joined as strings: pathlib's joins cost more than the lstat calls, for every site at every resync.
        sites_dir = self._sites_path
        site_dir = f"{sites_dir}{os.sep}{name}"
        return _directory_states(sites_dir, tuple(f"{site_dir}{relative}" for relative in _WATCHED))

    def _unchanged_uid(self, site: Site) -> int | None:
        """The site's uid when its directories are as its last converge left them, for the same ask."""
        converged = self._converged.get(site.name)
        if converged is None or converged.wants_run_sh != _wants_run_sh(site):
            return None
        if self._states(site.name) != converged.states:
            return None
        return converged.uid

    def owned_names(self) -> set[str]:
        return set(self._uids)

    def _scan_and_prune(self) -> None:
        with self._lock:
            self._scan()
        self._prune_trash()

    def _scan(self) -> None:
        uids: dict[str, int] = {}
        if self._settings.sites_dir.is_dir():
            for entry in os.scandir(self._settings.sites_dir):
                if entry.is_dir(follow_symlinks=False):
                    uids[entry.name] = entry.stat(follow_symlinks=False).st_uid
        trashed: list[int] = []
        if self._settings.trash_dir.is_dir():
            trashed = [e.stat(follow_symlinks=False).st_uid for e in os.scandir(self._settings.trash_dir)]
        self._uids = {name: uid for name, uid in uids.items() if uid >= FIRST_SITE_UID}
        self._highest_uid_seen = max([self._highest_uid_seen, *uids.values(), *trashed])
        self._scanned = True

    def _prune_trash(self) -> None:
        trash = self._settings.trash_dir
        if not trash.is_dir():
            return
        oldest_kept = datetime.now(UTC) - timedelta(days=self._settings.trash_retention_days)
        for entry in os.scandir(trash):
            match = _TRASH_ENTRY.match(entry.name)
            if match is None:
                continue
            archived = datetime.strptime(match["stamp"], TRASH_TIMESTAMP_FORMAT).replace(tzinfo=UTC)
            if archived < oldest_kept:
                shutil.rmtree(entry.path, ignore_errors=True)

    def _allocate_uid(self, name: str) -> int:
        with self._lock:
            if not self._scanned:
                self._scan()
            uid = max(self._highest_uid_seen + 1, FIRST_SITE_UID)
            self._highest_uid_seen = uid
            self._uids[name] = uid
            return uid

    def _converge(self, site: Site) -> tuple[list[Step], int]:
        sites_dir = self._settings.sites_dir
        try:
            sites_mode = os.stat(sites_dir).st_mode
        except FileNotFoundError:
            sites_dir.mkdir(parents=True, exist_ok=True)
            sites_mode = os.stat(sites_dir).st_mode
        if stat.S_IMODE(sites_mode) != 0o711:
            os.chmod(sites_dir, 0o711)
        # Paths as strings: pathlib's joins cost more than a new site's system calls.
        site_dir = f"{sites_dir}{os.sep}{site.name}"
        # Only root writes sites_dir, so this check still holds when the site's directory is opened below.
        try:
            found: os.stat_result | None = os.lstat(site_dir)
        except FileNotFoundError:
            found = None
        if found is not None and not stat.S_ISDIR(found.st_mode):
            raise PermanentError(f"{site_dir} exists but is not a directory; move it away")
        # The uid is the directory's owner (see uid_of), or a new one for a new site.
        if found is not None and found.st_uid >= FIRST_SITE_UID:
            uid = found.st_uid
            with self._lock:
                self._uids[site.name] = uid
        else:
            uid = self._allocate_uid(site.name)
        created: list[str] = []
        repaired: list[str] = []
        new_entries: set[str] = set()
        with contextlib.ExitStack() as opened:
            sites_fd = os.open(sites_dir, DIRECTORY_FLAGS)
            opened.callback(os.close, sites_fd)
            directories: dict[str, int] = {}
            for rule in SITE_LAYOUT:
                parent_fd, entry = (
                    (directories[""], rule.relative) if rule.relative else (sites_fd, site.name)
                )
                gid = EDGE_GID if rule.group_is_edge else uid
                shown = f"{site_dir}{os.sep}{rule.relative}" if rule.relative else site_dir
                made, directory_fd, was = _ensure_directory(parent_fd, entry, shown)
                opened.callback(os.close, directory_fd)
                directories[rule.relative] = directory_fd
                if made:
                    new_entries.add(rule.relative)
                    created.append(rule.relative or site.name)
                elif was == (uid, gid, rule.mode):
                    continue
                else:
                    repaired.append(f"{rule.relative or site.name} was {was[0]}:{was[1]} {was[2]:o}")
                os.fchown(directory_fd, uid, gid)
                # After the chown, which may clear the setgid bit the mode asks for.
                os.fchmod(directory_fd, rule.mode)
            steps: list[Step] = []
            if "public" in new_entries:
                index_html = DEFAULT_INDEX_HTML.format(name=site.name)
                if _write_new_file(directories["public"], "index.html", index_html, uid, EDGE_GID, 0o660):
                    steps.append(
                        Step("index", "created", "wrote a default public/index.html for the new site")
                    )
            wants_run_sh = _wants_run_sh(site)
            if wants_run_sh and _write_new_file(directories[""], "run.sh", STARTER_RUN_SH, uid, uid, 0o770):
                steps.append(Step("run.sh", "created", "wrote a starter run.sh that serves public/"))
        if created:
            steps.insert(0, Step("directories", "created", f"created {', '.join(created)} for uid {uid}"))
        if repaired:
            steps.append(Step("permissions", "updated", f"repaired {'; '.join(repaired)}"))
        if not steps:
            steps.append(_in_place(site_dir, uid))
        # Read after the converge's own changes: the next reconcile compares with what it left.
        states = self._states(site.name)
        if states is not None:
            self._converged[site.name] = _Converged(uid, wants_run_sh, states)
        return steps, uid

    def _archive(self, name: str) -> Step:
        self._converged.pop(name, None)
        site_dir = self._settings.sites_dir / name
        with self._lock:
            self._uids.pop(name, None)
        try:
            site_dir.lstat()
        except FileNotFoundError:
            return Step("directories", "unchanged", f"{site_dir} does not exist")
        trash = self._settings.trash_dir
        trash.mkdir(parents=True, exist_ok=True)
        trash.chmod(0o700)
        stamp = datetime.now(UTC).strftime(TRASH_TIMESTAMP_FORMAT)
        with contextlib.ExitStack() as opened:
            sites_fd = os.open(self._settings.sites_dir, DIRECTORY_FLAGS)
            opened.callback(os.close, sites_fd)
            trash_fd = os.open(trash, DIRECTORY_FLAGS)
            opened.callback(os.close, trash_fd)
            archived = f"{name}-{stamp}"
            suffix = 1
            while exists(trash_fd, archived):
                archived = f"{name}-{stamp}.{suffix}"
                suffix += 1
            # The directory entry itself moves: whatever links the site left inside travel along unfollowed.
            os.rename(name, archived, src_dir_fd=sites_fd, dst_dir_fd=trash_fd)
        days = self._settings.trash_retention_days
        return Step("directories", "deleted", f"archived {site_dir} to {trash / archived} (kept {days} days)")


def _in_place(site_dir: Path | str, uid: int) -> Step:
    return Step("directories", "unchanged", f"{site_dir} is in place, owned by uid {uid}")


def _wants_run_sh(site: Site) -> bool:
    return site.spec.type == "dynamic" and site.spec.command is None


def _ensure_directory(parent_fd: int, name: str, shown: str) -> tuple[bool, int, tuple[int, int, int]]:
    """Make `name` in `parent_fd` unless it exists, and open it without following a link.

    Returns whether it was made, its descriptor, and the owner, group and mode it had. A new directory
    starts as root's alone, until the caller gives it its owner and mode.
    """
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
        made = True
    except FileExistsError:
        made = False
    try:
        directory_fd = os.open(name, NO_LINK_DIRECTORY_FLAGS, dir_fd=parent_fd)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise
        raise PermanentError(
            f"{shown} is not a directory (a symbolic link, a file, or it was just replaced); Director never "
            f"follows links in a site's directory: move it away, then reconcile the site again"
        ) from None
    found = os.fstat(directory_fd)
    return made, directory_fd, (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode))


def _write_new_file(directory_fd: int, name: str, text: str, uid: int, gid: int, mode: int) -> bool:
    """Write a starter file; False when one is there already (the user's file is never overwritten).

    O_EXCL also refuses a link left in its place, dangling or not: nothing is written through one.
    """
    try:
        descriptor = os.open(name, NEW_FILE_FLAGS, mode, dir_fd=directory_fd)
    except FileExistsError:
        return False
    # Set explicitly: the process umask must not decide what the edge or the site may read.
    os.fchmod(descriptor, mode)
    os.fchown(descriptor, uid, gid)
    with os.fdopen(descriptor, "w") as new_file:
        new_file.write(text)
    return True
