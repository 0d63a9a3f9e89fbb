"""A site's own files, reached only from inside its directory: what the files reconciler and the API share.

The site directory is written by root (the controller, the API) while the site's own process may rename or
replace any entry in it at any instant, with a symbolic link to /etc as readily as with a file. So nothing
is reached by path: every path is split into names, each name is checked (no `..`, no `/`, nothing empty),
and each is opened from its parent's descriptor without following a link (O_NOFOLLOW). A link is an entry
like any other: it can be listed, renamed or removed, never read or written through. Owner and mode are set
on descriptors (fchown, fchmod), and new files and directories are made as the site's own uid, never left
as root's.

    <sites_dir>/<name>/           0750 uid:www-data   the edge may pass through, nobody else
    <sites_dir>/<name>/public/    2770 uid:www-data   setgid: what the site writes stays readable by the edge
    <sites_dir>/<name>/private/   0700 uid:uid        the site's alone
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FIRST_SITE_UID = 200_000
EDGE_GID = 33  # www-data in Debian, and in the edge image
PUBLIC = "public"
PRIVATE = "private"
# The directories every site has: they can be written into, never renamed or removed themselves.
LAYOUT_DIRECTORIES = (PUBLIC, PRIVATE)

# Opening a directory for fchown and fchmod: O_PATH descriptors take neither.
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
NO_LINK_DIRECTORY_FLAGS = DIRECTORY_FLAGS | os.O_NOFOLLOW
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 255
_TEMP_PREFIX = ".director-upload-"


class FileProblem(Exception):
    """A file operation that cannot be done, said so that a person knows what to do. `kind` sorts it into
    not-found, conflict (exists already), refused (a link, a layout directory) or invalid (the path)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _invalid(message: str) -> FileProblem:
    return FileProblem("invalid", message)


def split_path(path: str) -> list[str]:
    """The names of a path relative to the site directory; FileProblem for anything that could leave it.

    An empty path is the site directory itself.
    """
    if len(path) > MAX_PATH_CHARS:
        raise _invalid(f"the path is longer than {MAX_PATH_CHARS} characters")
    if "\x00" in path:
        raise _invalid("a path may not contain a NUL character")
    if path.startswith("/"):
        raise _invalid(f"{path!r} is absolute: give a path inside the site, such as public/index.html")
    names = [name for name in path.split("/") if name]
    for name in names:
        if name in (".", ".."):
            raise _invalid(
                f"{path!r} contains {name!r}: give a path inside the site, such as public/index.html"
            )
        if len(name.encode()) > MAX_NAME_BYTES:
            raise _invalid(f"the name {name[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
    return names


def check_name(name: str) -> str:
    """One new entry's name (a new file, folder or a rename's target)."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise _invalid(f"{name!r} is not a file name: no '/', and not '.' or '..'")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise _invalid(f"the name {name[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
    if name.startswith(_TEMP_PREFIX):
        raise _invalid(f"names starting with {_TEMP_PREFIX} are Director's own temporary files")
    return name


@dataclass(frozen=True)
class Entry:
    """One entry of a directory, as listed (a link is listed as a link, never followed)."""

    name: str
    path: str
    kind: str  # "file", "directory", "link" or "other"
    size: int
    mode: int
    modified: float
    children: tuple[Entry, ...] | None = None

    @property
    def executable(self) -> bool:
        return self.kind == "file" and bool(self.mode & 0o100)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def _is_link(parent_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _refuse_link(shown: str, error: OSError, parent_fd: int | None = None, name: str = "") -> FileProblem:
    if parent_fd is not None and error.errno in (errno.ENOTDIR, errno.ELOOP) and _is_link(parent_fd, name):
        # Asked to open it as a directory, the kernel says ENOTDIR of a link: say what it is.
        return FileProblem(
            "refused", f"{shown} is a symbolic link: Director never follows links in a site's directory"
        )
    if error.errno == errno.ENOENT:
        return FileProblem("not-found", f"{shown} does not exist")
    if error.errno in (errno.ELOOP, errno.EMLINK):
        return FileProblem(
            "refused", f"{shown} is a symbolic link: Director never follows links in a site's directory"
        )
    if error.errno == errno.ENOTDIR:
        return FileProblem("refused", f"{shown} is not a directory (or part of its path is a file or a link)")
    if error.errno == errno.EISDIR:
        return FileProblem("refused", f"{shown} is a directory, not a file")
    return FileProblem("refused", f"{shown}: {error.strerror}")


class SiteDirectory:
    """The directory of one site, opened without following links; use as a context manager.

    `uid` is the site's own uid: the owner the files reconciler gave the directory.
    """

    def __init__(self, sites_dir: Path, name: str) -> None:
        self.name = name
        self._sites_dir = sites_dir
        self._stack = contextlib.ExitStack()
        self.fd = -1
        self.uid = -1

    def __enter__(self) -> SiteDirectory:
        try:
            sites_fd = os.open(self._sites_dir, DIRECTORY_FLAGS)
        except FileNotFoundError:
            raise self._not_ready() from None
        self._stack.callback(os.close, sites_fd)
        try:
            self.fd = os.open(self.name, NO_LINK_DIRECTORY_FLAGS, dir_fd=sites_fd)
        except OSError as error:
            self._stack.close()
            if error.errno == errno.ENOENT:
                raise self._not_ready() from None
            raise _refuse_link(f"the directory of site {self.name!r}", error) from None
        self._stack.callback(os.close, self.fd)
        owner = os.fstat(self.fd).st_uid
        if owner < FIRST_SITE_UID:
            self._stack.close()
            raise self._not_ready()
        self.uid = owner
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stack.close()

    def _not_ready(self) -> FileProblem:
        return FileProblem(
            "not-ready",
            f"site {self.name!r} has no directory yet: the controller makes it at the site's first "
            "reconcile; try again in a moment",
        )

    # ---- walking -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def directory(self, names: list[str]) -> Iterator[int]:
        """A descriptor of the directory at `names` (the site directory for []), never through a link."""
        fd = os.dup(self.fd)
        try:
            for depth, name in enumerate(names):
                try:
                    child = os.open(name, NO_LINK_DIRECTORY_FLAGS, dir_fd=fd)
                except OSError as error:
                    raise _refuse_link("/".join(names[: depth + 1]), error, fd, name) from None
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def ownership(self, names: list[str], *, directory: bool) -> tuple[int, int, int]:
        """uid, gid and mode of a new entry at `names`: the site's, readable by the edge under public/."""
        public = bool(names) and names[0] == PUBLIC
        gid = EDGE_GID if public else self.uid
        if directory:
            return self.uid, gid, 0o2770 if public else 0o700
        return self.uid, gid, 0o660 if public else 0o600

    # ---- reading -------------------------------------------------------------------------------------

    def entries(self, names: list[str], *, depth: int = 1, limit: int = 5000) -> list[Entry]:
        """The entries of the directory at `names`, sorted, with those of subdirectories `depth` - 1 deep;
        at most `limit` entries in all."""
        budget = [limit]
        with self.directory(names) as fd:
            return self._list(fd, names, depth, budget)

    def _list(self, fd: int, names: list[str], depth: int, budget: list[int]) -> list[Entry]:
        found: list[Entry] = []
        for name in sorted(os.listdir(fd)):
            if budget[0] <= 0:
                break
            if name.startswith(_TEMP_PREFIX):
                continue
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            budget[0] -= 1
            kind = _kind(info.st_mode)
            path = "/".join([*names, name])
            children: tuple[Entry, ...] | None = None
            if kind == "directory" and depth > 1:
                try:
                    child = os.open(name, NO_LINK_DIRECTORY_FLAGS, dir_fd=fd)
                except OSError:
                    children = ()
                else:
                    try:
                        children = tuple(self._list(child, [*names, name], depth - 1, budget))
                    finally:
                        os.close(child)
            found.append(
                Entry(name, path, kind, info.st_size, stat.S_IMODE(info.st_mode), info.st_mtime, children)
            )
        return found

    def stat(self, names: list[str]) -> Entry:
        if not names:
            raise _invalid("give a path inside the site, such as public/index.html")
        with self.directory(names[:-1]) as fd:
            try:
                info = os.stat(names[-1], dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                raise FileProblem("not-found", f"{'/'.join(names)} does not exist") from None
        return Entry(
            names[-1],
            "/".join(names),
            _kind(info.st_mode),
            info.st_size,
            stat.S_IMODE(info.st_mode),
            info.st_mtime,
        )

    def open_file(self, names: list[str]) -> int:
        """A read descriptor of the regular file at `names` (the caller closes it)."""
        if not names:
            raise _invalid("give the path of a file, such as public/index.html")
        shown = "/".join(names)
        with self.directory(names[:-1]) as parent:
            try:
                fd = os.open(names[-1], _READ_FLAGS, dir_fd=parent)
            except OSError as error:
                raise _refuse_link(shown, error, parent, names[-1]) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileProblem("refused", f"{shown} is not a regular file")
        # O_NONBLOCK only kept a FIFO from blocking the open; reads of a regular file never block.
        os.set_blocking(fd, True)
        return fd

    def read(self, names: list[str], limit: int) -> bytes:
        """The content of a file of at most `limit` bytes."""
        fd = self.open_file(names)
        try:
            size = os.fstat(fd).st_size
            if size > limit:
                raise FileProblem(
                    "too-large", f"{'/'.join(names)} is {size} bytes, more than {limit} can be opened here"
                )
            with os.fdopen(fd, "rb", closefd=False) as handle:
                return handle.read(limit + 1)[:limit]
        finally:
            os.close(fd)

    # ---- writing -------------------------------------------------------------------------------------

    def write(self, names: list[str], chunks: Iterator[bytes], *, create: bool = True) -> bool:
        """Replace (or make) the file at `names` with `chunks`, atomically: readers, the edge among them,
        see the old content or the new one. A new file gets the site's uid and the layout's mode; a file
        replaced keeps its mode. Returns whether the file is new."""
        if len(names) < 1:
            raise _invalid("give the path of a file, such as public/index.html")
        check_name(names[-1])
        shown = "/".join(names)
        with self.directory(names[:-1]) as parent:
            uid, gid, mode = self.ownership(names, directory=False)
            try:
                existing = os.stat(names[-1], dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None:
                if not stat.S_ISREG(existing.st_mode):
                    what = "a symbolic link" if stat.S_ISLNK(existing.st_mode) else "not a regular file"
                    raise FileProblem("refused", f"{shown} is {what}: it cannot be written")
                mode = stat.S_IMODE(existing.st_mode)
            elif not create:
                raise FileProblem("not-found", f"{shown} does not exist")
            temp = f"{_TEMP_PREFIX}{secrets.token_hex(6)}"
            fd = os.open(temp, NEW_FILE_FLAGS, 0o600, dir_fd=parent)
            try:
                try:
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, mode)
                    for chunk in chunks:
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(temp, names[-1], src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=parent)
                raise
        return existing is None

    def make_directory(self, names: list[str]) -> None:
        if not names:
            raise _invalid("give the path of the new folder")
        check_name(names[-1])
        with self.directory(names[:-1]) as parent:
            uid, gid, mode = self.ownership(names, directory=True)
            try:
                os.mkdir(names[-1], 0o700, dir_fd=parent)
            except FileExistsError:
                raise FileProblem("exists", f"{'/'.join(names)} exists already") from None
            fd = os.open(names[-1], NO_LINK_DIRECTORY_FLAGS, dir_fd=parent)
            try:
                os.fchown(fd, uid, gid)
                # After the chown, which may clear the setgid bit the mode asks for.
                os.fchmod(fd, mode)
            finally:
                os.close(fd)

    def _movable(self, names: list[str], verb: str) -> None:
        if not names:
            raise _invalid(f"give the path of what to {verb}")
        if len(names) == 1 and names[0] in LAYOUT_DIRECTORIES:
            raise FileProblem(
                "refused", f"{names[0]}/ is part of every site: its content can change, not the folder itself"
            )

    def rename(self, names: list[str], new_names: list[str]) -> None:
        self._movable(names, "rename")
        self._movable(new_names, "rename")
        check_name(new_names[-1])
        with self.directory(names[:-1]) as source, self.directory(new_names[:-1]) as target:
            try:
                os.stat(names[-1], dir_fd=source, follow_symlinks=False)
            except FileNotFoundError:
                raise FileProblem("not-found", f"{'/'.join(names)} does not exist") from None
            try:
                os.stat(new_names[-1], dir_fd=target, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                raise FileProblem("exists", f"{'/'.join(new_names)} exists already: choose another name")
            try:
                # The entry itself moves: a link stays a link, unfollowed.
                os.rename(names[-1], new_names[-1], src_dir_fd=source, dst_dir_fd=target)
            except OSError as error:
                if error.errno == errno.EINVAL:
                    raise FileProblem("refused", "a folder cannot be moved into itself") from None
                raise

    def remove(self, names: list[str]) -> None:
        """Remove a file, a link (not what it points to) or a folder with everything in it."""
        self._movable(names, "delete")
        with self.directory(names[:-1]) as parent:
            try:
                info = os.stat(names[-1], dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                raise FileProblem("not-found", f"{'/'.join(names)} does not exist") from None
            if stat.S_ISDIR(info.st_mode):
                # rmtree with a dir_fd walks by descriptors and never follows a link it meets.
                shutil.rmtree(names[-1], dir_fd=parent)
            else:
                os.unlink(names[-1], dir_fd=parent)

    def set_executable(self, names: list[str], executable: bool) -> int:
        """Turn the execute bits of a file on or off (as far as it is readable); returns the new mode."""
        fd = self.open_file(names)
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            bits = (mode & 0o440) >> 2  # execute where read is given, for the owner and the group
            new_mode = (mode | bits | 0o100) if executable else (mode & ~0o111)
            os.fchmod(fd, new_mode)
            return new_mode
        finally:
            os.close(fd)


def exists(directory_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
