"""An SFTP server (protocol version 3, as OpenSSH speaks it) on stdin and stdout, rooted at one directory.

It runs inside a session's container, as the site's uid, with the site's directory as its root: `/` is the
site's directory, `cd /etc` and `..` stay inside it, and a symbolic link is followed as if that directory
were the whole file system (a link to /etc/passwd names the site's own etc/passwd, which is not there).
The container is the real boundary (it sees nothing of the host but the site's directory); the root here
makes sftp and scp show the person their site and nothing else.

Only the standard library: the terminal backend sends this file's text to the site image's python3
(`python3 -I -c SOURCE ROOT`), so nothing is installed in any image. `sftp -D 'python3 sftp_server.py DIR'`
runs it locally, as the tests do.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import sys
import time

VERSION = 3
# Packet types (draft-ietf-secsh-filexfer-02).
INIT, VERSION_REPLY, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT = 1, 2, 3, 4, 5, 6, 7, 8
SETSTAT, FSETSTAT, OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH = 9, 10, 11, 12, 13, 14, 15, 16
STAT, RENAME, READLINK, SYMLINK = 17, 18, 19, 20
STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED, EXTENDED_REPLY = 101, 102, 103, 104, 105, 200, 201
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE, BAD_MESSAGE, OP_UNSUPPORTED = 0, 1, 2, 3, 4, 5, 8
ATTR_SIZE, ATTR_UIDGID, ATTR_PERMISSIONS, ATTR_ACMODTIME, ATTR_EXTENDED = 0x1, 0x2, 0x4, 0x8, 0x80000000
FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC, FXF_EXCL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
# As OpenSSH's sftp-server: a client that asks (limits@openssh.com) moves files in chunks this large.
MAX_PACKET = 256 * 1024
MAX_READ_WRITE = MAX_PACKET - 1024
MAX_HANDLES = 256
MAX_SYMLINK_HOPS = 40
READDIR_BATCH = 100
# The site's own containers see its directory at /site; a link made here to "/public/x" is written as
# "/site/public/x" so that it works there too, and read back as "/public/x".
SITE_MOUNT = "/site"
_STATUS_TEXT = {
    OK: "Success",
    EOF: "End of file",
    NO_SUCH_FILE: "No such file",
    PERMISSION_DENIED: "Permission denied",
    FAILURE: "Failure",
    BAD_MESSAGE: "Bad message",
    OP_UNSUPPORTED: "Operation unsupported",
}


class Malformed(Exception):
    """A packet shorter than its fields say."""


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise Malformed
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def string(self) -> bytes:
        return self.take(self.u32())

    def text(self) -> str:
        return self.string().decode("utf-8", "surrogateescape")

    def attrs(self) -> dict[str, int]:
        flags = self.u32()
        found: dict[str, int] = {}
        if flags & ATTR_SIZE:
            found["size"] = self.u64()
        if flags & ATTR_UIDGID:
            found["uid"], found["gid"] = self.u32(), self.u32()
        if flags & ATTR_PERMISSIONS:
            found["permissions"] = self.u32()
        if flags & ATTR_ACMODTIME:
            found["atime"], found["mtime"] = self.u32(), self.u32()
        if flags & ATTR_EXTENDED:
            for _ in range(self.u32()):
                self.string()
                self.string()
        return found


def u32(value: int) -> bytes:
    return struct.pack(">I", value & 0xFFFFFFFF)


def string(value: bytes | str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return u32(len(raw)) + raw


def encode_attrs(info: os.stat_result) -> bytes:
    flags = ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME
    return (
        u32(flags)
        + struct.pack(">Q", info.st_size)
        + u32(info.st_uid)
        + u32(info.st_gid)
        + u32(info.st_mode)
        + u32(int(info.st_atime))
        + u32(int(info.st_mtime))
    )


def long_name(name: str, info: os.stat_result) -> str:
    """A line as `ls -l` prints it: what `ls -l` in the sftp client shows."""
    when = time.localtime(info.st_mtime)
    recent = abs(time.time() - info.st_mtime) < 182 * 86400
    stamp = time.strftime("%b %d %H:%M" if recent else "%b %d  %Y", when)
    return (
        f"{stat.filemode(info.st_mode)} {info.st_nlink:4d} {info.st_uid:<8d} {info.st_gid:<8d} "
        f"{info.st_size:12d} {stamp} {name}"
    )


def status_of(error: OSError) -> int:
    if error.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
        return NO_SUCH_FILE
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PERMISSION_DENIED
    return FAILURE


class Confined:
    """Paths of the client, resolved inside the root as if it were `/`."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)

    def real(self, parts: list[str]) -> str:
        return os.path.join(self.root, *parts) if parts else self.root

    def resolve(self, path: str, *, follow_last: bool = True) -> tuple[str, str]:
        """(the real path, the client's view of it). Every link on the way is followed inside the root;
        the last one too if `follow_last`. A name that does not exist is kept as it is."""
        pending = [part for part in path.split("/") if part]
        done: list[str] = []
        hops = 0
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":
                if done:
                    done.pop()
                continue
            if not pending and not follow_last:
                done.append(name)
                break
            candidate = self.real([*done, name])
            try:
                info = os.lstat(candidate)
            except OSError:
                done.append(name)
                continue
            if not stat.S_ISLNK(info.st_mode):
                done.append(name)
                continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            target = self.from_link(os.readlink(candidate))
            if target.startswith("/"):
                done = []
            pending = [part for part in target.split("/") if part] + pending
        return self.real(done), "/" + "/".join(done)

    @staticmethod
    def from_link(target: str) -> str:
        """A link's target as the client sees it: /site/x (the site's containers' view) is /x here."""
        if target == SITE_MOUNT or target.startswith(SITE_MOUNT + "/"):
            return target[len(SITE_MOUNT) :] or "/"
        return target

    @staticmethod
    def to_link(target: str) -> str:
        return SITE_MOUNT + target if target.startswith("/") else target


class Server:
    def __init__(self, root: str, stdin: int = 0, stdout: int = 1) -> None:
        self.paths = Confined(root)
        self.stdin = stdin
        self.stdout = stdout
        self.buffer = bytearray()
        self.files: dict[bytes, tuple[int, str]] = {}
        self.directories: dict[bytes, tuple[str, list[str]]] = {}
        self.next_handle = 0

    # ---- transport ---------------------------------------------------------------------------------

    def read_packet(self) -> bytes | None:
        while True:
            if len(self.buffer) >= 4:
                length = struct.unpack(">I", self.buffer[:4])[0]
                if length > MAX_PACKET + 1024:
                    raise Malformed
                if len(self.buffer) >= 4 + length:
                    packet = bytes(self.buffer[4 : 4 + length])
                    del self.buffer[: 4 + length]
                    return packet
            chunk = os.read(self.stdin, 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk

    def send(self, kind: int, payload: bytes) -> None:
        message = u32(len(payload) + 1) + bytes([kind]) + payload
        view = memoryview(message)
        while view:
            written = os.write(self.stdout, view)
            view = view[written:]

    def status(self, request_id: int, code: int, message: str = "") -> None:
        text = message or _STATUS_TEXT.get(code, "Failure")
        self.send(STATUS, u32(request_id) + u32(code) + string(text) + string("en"))

    def names(self, request_id: int, entries: list[tuple[str, str, bytes]]) -> None:
        body = b"".join(string(name) + string(long) + attrs for name, long, attrs in entries)
        self.send(NAME, u32(request_id) + u32(len(entries)) + body)

    # ---- the loop ----------------------------------------------------------------------------------

    def serve(self) -> None:
        first = self.read_packet()
        if first is None or first[0] != INIT:
            return
        extensions = [
            ("posix-rename@openssh.com", "1"),
            ("fsync@openssh.com", "1"),
            ("limits@openssh.com", "1"),
        ]
        self.send(VERSION_REPLY, u32(VERSION) + b"".join(string(n) + string(v) for n, v in extensions))
        while (packet := self.read_packet()) is not None:
            kind, reader = packet[0], Reader(packet[1:])
            try:
                request_id = reader.u32()
            except Malformed:
                return
            try:
                self.dispatch(kind, request_id, reader)
            except Malformed:
                self.status(request_id, BAD_MESSAGE)
            except OSError as error:
                self.status(request_id, status_of(error), error.strerror or str(error))

    def dispatch(self, kind: int, request_id: int, reader: Reader) -> None:
        handler = {
            OPEN: self.open,
            CLOSE: self.close,
            READ: self.read,
            WRITE: self.write,
            LSTAT: self.lstat,
            STAT: self.stat,
            FSTAT: self.fstat,
            SETSTAT: self.setstat,
            FSETSTAT: self.fsetstat,
            OPENDIR: self.opendir,
            READDIR: self.readdir,
            REMOVE: self.remove,
            MKDIR: self.mkdir,
            RMDIR: self.rmdir,
            REALPATH: self.realpath,
            RENAME: self.rename,
            READLINK: self.readlink,
            SYMLINK: self.symlink,
            EXTENDED: self.extended,
        }.get(kind)
        if handler is None:
            self.status(request_id, OP_UNSUPPORTED)
            return
        handler(request_id, reader)

    def new_handle(self) -> bytes:
        if len(self.files) + len(self.directories) >= MAX_HANDLES:
            raise OSError(errno.EMFILE, f"at most {MAX_HANDLES} files may be open at once")
        self.next_handle += 1
        return str(self.next_handle).encode()

    def file(self, handle: bytes) -> int:
        if handle not in self.files:
            raise OSError(errno.EBADF, "no such handle")
        return self.files[handle][0]

    # ---- requests ----------------------------------------------------------------------------------

    def open(self, request_id: int, reader: Reader) -> None:
        path, pflags, attrs = reader.text(), reader.u32(), reader.attrs()
        real, _ = self.paths.resolve(path)
        if pflags & FXF_READ and pflags & FXF_WRITE:
            flags = os.O_RDWR
        elif pflags & FXF_WRITE:
            flags = os.O_WRONLY
        else:
            flags = os.O_RDONLY
        if pflags & FXF_APPEND:
            flags |= os.O_APPEND
        if pflags & FXF_CREAT:
            flags |= os.O_CREAT
        if pflags & FXF_TRUNC:
            flags |= os.O_TRUNC
        if pflags & FXF_EXCL:
            flags |= os.O_EXCL
        mode = attrs.get("permissions", 0o666) & 0o7777
        descriptor = os.open(real, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise OSError(errno.EISDIR, "is a directory")
        handle = self.new_handle()
        self.files[handle] = (descriptor, real)
        self.send(HANDLE, u32(request_id) + string(handle))

    def close(self, request_id: int, reader: Reader) -> None:
        handle = reader.string()
        if handle in self.files:
            os.close(self.files.pop(handle)[0])
        elif self.directories.pop(handle, None) is None:
            raise OSError(errno.EBADF, "no such handle")
        self.status(request_id, OK)

    def read(self, request_id: int, reader: Reader) -> None:
        handle, offset, length = reader.string(), reader.u64(), reader.u32()
        data = os.pread(self.file(handle), min(length, MAX_READ_WRITE), offset)
        if not data:
            self.status(request_id, EOF)
            return
        self.send(DATA, u32(request_id) + string(data))

    def write(self, request_id: int, reader: Reader) -> None:
        handle, offset, data = reader.string(), reader.u64(), reader.string()
        descriptor = self.file(handle)
        view = memoryview(data)
        while view:
            written = os.pwrite(descriptor, view, offset)
            view, offset = view[written:], offset + written
        self.status(request_id, OK)

    def _attrs_reply(self, request_id: int, info: os.stat_result) -> None:
        self.send(ATTRS, u32(request_id) + encode_attrs(info))

    def lstat(self, request_id: int, reader: Reader) -> None:
        real, _ = self.paths.resolve(reader.text(), follow_last=False)
        self._attrs_reply(request_id, os.lstat(real))

    def stat(self, request_id: int, reader: Reader) -> None:
        real, _ = self.paths.resolve(reader.text())
        self._attrs_reply(request_id, os.lstat(real))

    def fstat(self, request_id: int, reader: Reader) -> None:
        self._attrs_reply(request_id, os.fstat(self.file(reader.string())))

    def _apply_attrs(self, target: int | str, attrs: dict[str, int]) -> None:
        if "size" in attrs:
            os.truncate(target, attrs["size"])
        if "permissions" in attrs:
            os.chmod(target, attrs["permissions"] & 0o7777)
        if "mtime" in attrs:
            os.utime(target, (attrs["atime"], attrs["mtime"]))
        if "uid" in attrs and isinstance(target, int):
            # Only to what it is already (the site's uid cannot give a file away); anything else is refused.
            os.fchown(target, attrs["uid"], attrs["gid"])
        elif "uid" in attrs:
            os.chown(target, attrs["uid"], attrs["gid"], follow_symlinks=False)

    def setstat(self, request_id: int, reader: Reader) -> None:
        real, _ = self.paths.resolve(reader.text())
        if stat.S_ISLNK(os.lstat(real).st_mode):
            raise OSError(errno.ELOOP, "a symbolic link")
        self._apply_attrs(real, reader.attrs())
        self.status(request_id, OK)

    def fsetstat(self, request_id: int, reader: Reader) -> None:
        handle = reader.string()
        self._apply_attrs(self.file(handle), reader.attrs())
        self.status(request_id, OK)

    def opendir(self, request_id: int, reader: Reader) -> None:
        real, _ = self.paths.resolve(reader.text())
        if not stat.S_ISDIR(os.lstat(real).st_mode):
            raise OSError(errno.ENOTDIR, "not a directory")
        entries = [".", "..", *sorted(os.listdir(real))]
        handle = self.new_handle()
        self.directories[handle] = (real, entries)
        self.send(HANDLE, u32(request_id) + string(handle))

    def readdir(self, request_id: int, reader: Reader) -> None:
        handle = reader.string()
        if handle not in self.directories:
            raise OSError(errno.EBADF, "no such handle")
        real, entries = self.directories[handle]
        if not entries:
            self.status(request_id, EOF)
            return
        batch, self.directories[handle] = entries[:READDIR_BATCH], (real, entries[READDIR_BATCH:])
        listed = []
        for name in batch:
            # The root's parent is the root itself, as in a chroot.
            path = real if name == ".." and real == self.paths.root else os.path.join(real, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue  # removed since the listing
            listed.append((name, long_name(name, info), encode_attrs(info)))
        self.names(request_id, listed)

    def remove(self, request_id: int, reader: Reader) -> None:
        real, _ = self.paths.resolve(reader.text(), follow_last=False)
        os.unlink(real)
        self.status(request_id, OK)

    def mkdir(self, request_id: int, reader: Reader) -> None:
        path, attrs = reader.text(), reader.attrs()
        real, _ = self.paths.resolve(path, follow_last=False)
        os.mkdir(real, attrs.get("permissions", 0o777) & 0o7777)
        self.status(request_id, OK)

    def rmdir(self, request_id: int, reader: Reader) -> None:
        real, view = self.paths.resolve(reader.text(), follow_last=False)
        if view == "/":
            raise OSError(errno.EBUSY, "the site's own directory cannot be removed")
        os.rmdir(real)
        self.status(request_id, OK)

    def realpath(self, request_id: int, reader: Reader) -> None:
        _, view = self.paths.resolve(reader.text() or ".")
        self.names(request_id, [(view, view, u32(0))])

    def rename(self, request_id: int, reader: Reader, *, replace: bool = False) -> None:
        source, _ = self.paths.resolve(reader.text(), follow_last=False)
        target, _ = self.paths.resolve(reader.text(), follow_last=False)
        if not replace and os.path.lexists(target):
            raise OSError(errno.EEXIST, "the target exists")
        os.rename(source, target)
        self.status(request_id, OK)

    def readlink(self, request_id: int, reader: Reader) -> None:
        real, _ = self.paths.resolve(reader.text(), follow_last=False)
        target = self.paths.from_link(os.readlink(real))
        self.names(request_id, [(target, target, u32(0))])

    def symlink(self, request_id: int, reader: Reader) -> None:
        # OpenSSH sends the target first and the link's path second (the reverse of the draft).
        target, link = reader.text(), reader.text()
        real, _ = self.paths.resolve(link, follow_last=False)
        os.symlink(self.paths.to_link(target), real)
        self.status(request_id, OK)

    def extended(self, request_id: int, reader: Reader) -> None:
        name = reader.text()
        if name == "posix-rename@openssh.com":
            self.rename(request_id, reader, replace=True)
        elif name == "fsync@openssh.com":
            os.fsync(self.file(reader.string()))
            self.status(request_id, OK)
        elif name == "limits@openssh.com":
            limits = struct.pack(">QQQQ", MAX_PACKET, MAX_READ_WRITE, MAX_READ_WRITE, MAX_HANDLES)
            self.send(EXTENDED_REPLY, u32(request_id) + limits)
        else:
            self.status(request_id, OP_UNSUPPORTED)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} ROOT", file=sys.stderr)
        return 2
    Server(argv[1]).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
