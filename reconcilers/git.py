"""The git binary, bounded: what a GitSource may make the controller's machine do.

Every call runs under a deadline (its process group is killed past it), with no configuration but ours
(no system or global config, an empty HOME), no prompts, no hooks, no submodules, no redirects, and only the
source's own transport allowed (GIT_ALLOW_PROTOCOL: an https:// source cannot be turned into file:// by a
redirect or a submodule). Fetches are shallow, into a fresh bare repository, and bounded in size twice: no
file git writes may pass the limit (prlimit's RLIMIT_FSIZE), and the repository's directory is measured
while the fetch runs. Nothing is ever checked out: files are read from git's objects by id, so a symbolic
link in the repository is an entry to report, never a path to follow.

Credentials come from the source's secret and reach git through its environment (GIT_CONFIG_* for an HTTP
header, GIT_SSH_COMMAND for an identity file written 0600 in a private temporary directory), never through
its command line, which every user of the machine can read.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from specs.gitsource import GitRef, url_transport

GIT = shutil.which("git") or "/usr/bin/git"
PRLIMIT = shutil.which("prlimit")
# Configuration every call runs with, given through the environment (GIT_CONFIG_COUNT): hooks nowhere,
# submodules never, redirects never followed, objects checked as they arrive.
_BASE_CONFIG = (
    ("core.hooksPath", "/dev/null"),
    ("core.symlinks", "false"),
    ("core.fsmonitor", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("submodule.recurse", "false"),
    ("transfer.fsckObjects", "true"),
    ("http.followRedirects", "false"),
    # A server that trickles below 1 KB/s for 20 s is given up on before the deadline.
    ("http.lowSpeedLimit", "1000"),
    ("http.lowSpeedTime", "20"),
    ("credential.helper", ""),
    ("protocol.version", "2"),
)
_SIZE_POLL_SECONDS = 0.1


class GitError(Exception):
    """A git call that failed, in words a person can act on."""


class RevisionNotFound(GitError):
    """The ref the source follows is not at the remote (a deleted branch, a tag not pushed)."""


@dataclass(frozen=True)
class Limits:
    call_seconds: float = 60.0
    repository_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class Credentials:
    """What a source's secret holds, by the keys Director understands."""

    username: str | None = None
    password: str | None = None
    token: str | None = None
    identity: str | None = None
    known_hosts: str | None = None

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> Credentials:
        return cls(
            username=values.get("username"),
            password=values.get("password"),
            token=values.get("token"),
            identity=values.get("identity"),
            known_hosts=values.get("known_hosts"),
        )


@dataclass(frozen=True)
class TreeEntry:
    path: str
    mode: str
    kind: str  # blob, tree, commit (a submodule)
    oid: str
    size: int | None

    @property
    def is_symlink(self) -> bool:
        return self.mode == "120000"


@dataclass
class Checkout:
    """A bare repository holding one fetched revision; removed with `close()`."""

    directory: Path
    revision: str
    _env: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


# A URL or an scp-like address (git@host:path) as git quotes them.
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+|[\w.-]+@[\w.-]+:\S+", re.IGNORECASE)


def _summary(stderr: bytes, *, authenticated: bool = False) -> str:
    """git's complaint in one plain line; `authenticated`: the call sent credentials."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    # git names the URL in its complaints: its port or path (":40199", "/redirect.git") says nothing.
    lowered = _URL.sub("URL", " ".join(lines)).lower()
    if (
        "authentication failed" in lowered
        or "http basic: access denied" in lowered
        or "returned error: 401" in lowered
    ):
        return "authentication failed"
    if "could not read username" in lowered or "terminal prompts disabled" in lowered:
        if authenticated:
            # git asks for a user name once the credentials it sent were refused.
            return "authentication failed"
        return "the repository asks for credentials and the source has none (spec.secretRef)"
    if "permission denied (publickey" in lowered:
        return "the SSH server refused the source's identity"
    if "host key verification failed" in lowered:
        return "the SSH host key is unknown: put the host's key in the secret's known_hosts"
    if "transport" in lowered and "not allowed" in lowered:
        return "the repository tried to send the fetch to another transport (refused)"
    if "redirect" in lowered:
        return "the server answered with a redirect, which Director does not follow: use the final URL"
    if "does not appear to be a git repository" in lowered or "repository not found" in lowered:
        return "no repository there"
    if "not our ref" in lowered or "couldn't find remote ref" in lowered or "no such remote ref" in lowered:
        return "the revision is not at the remote (was the history rewritten?)"
    meaningful = [line.removeprefix("fatal: ").removeprefix("error: ") for line in lines]
    return (meaningful[-1] if meaningful else "git failed without a message")[:500]


class Git:
    """Bounded git calls for one controller; `workdir` holds the temporary repositories."""

    def __init__(self, workdir: Path, limits: Limits | None = None) -> None:
        self.workdir = workdir
        self.limits = limits or Limits()
        self._home = workdir / "home"

    def _prepare(self) -> None:
        self._home.mkdir(parents=True, exist_ok=True, mode=0o700)

    def remove_leftovers(self) -> None:
        """Temporary repositories and credential files a killed controller left behind."""
        if self.workdir.is_dir():
            for leftover in [*self.workdir.glob("fetch-*"), *self.workdir.glob("creds-*")]:
                shutil.rmtree(leftover, ignore_errors=True)

    @contextlib.contextmanager
    def _environment(self, url: str, credentials: Credentials | None) -> Iterator[dict[str, str]]:
        """The environment of one call against `url`, with the credentials in files only it can read."""
        self._prepare()
        transport = url_transport(url)
        config = list(_BASE_CONFIG)
        # Files for ssh only (known hosts, an identity): most calls need no directory at all.
        private = Path(tempfile.mkdtemp(prefix="creds-", dir=self.workdir)) if transport == "ssh" else None
        try:
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self._home),
                "LC_ALL": "C",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": "/dev/null",
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_ASKPASS": "/bin/false",
                "SSH_ASKPASS": "/bin/false",
                "GIT_ALLOW_PROTOCOL": transport,
                "GIT_PROTOCOL_FROM_USER": "0",
                "GIT_NO_REPLACE_OBJECTS": "1",
            }
            if credentials is not None and transport in ("http", "https"):
                secret = credentials.password or credentials.token
                if secret:
                    pair = f"{credentials.username or 'git'}:{secret}".encode()
                    config.append(
                        ("http.extraHeader", f"Authorization: Basic {base64.b64encode(pair).decode()}")
                    )
            ssh = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
            if private is not None:
                known = private / "known_hosts"
                known.write_text((credentials.known_hosts if credentials else None) or "")
                ssh += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}"]
                if credentials is not None and credentials.identity:
                    identity = private / "identity"
                    descriptor = os.open(identity, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(descriptor, "w") as handle:
                        handle.write(credentials.identity.rstrip("\n") + "\n")
                    ssh += ["-o", "IdentitiesOnly=yes", "-i", str(identity)]
            env["GIT_SSH_COMMAND"] = " ".join(ssh)
            env["GIT_CONFIG_COUNT"] = str(len(config))
            for index, (key, value) in enumerate(config):
                env[f"GIT_CONFIG_KEY_{index}"] = key
                env[f"GIT_CONFIG_VALUE_{index}"] = value
            yield env
        finally:
            if private is not None:
                shutil.rmtree(private, ignore_errors=True)

    async def _run(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        deadline: float,
        stdin: bytes | None = None,
        watch_size_of: Path | None = None,
        authenticated: bool = False,
        writes: bool = False,
    ) -> bytes:
        """git's stdout; GitError (with its stderr) if it fails, outlasts the deadline or outgrows
        the limit."""
        seconds = min(self.limits.call_seconds, deadline - time.monotonic())
        if seconds <= 0:
            raise GitError("no time left for git within this reconcile's deadline")
        limit = self.limits.repository_bytes
        argv = [GIT, *args]
        if writes and PRLIMIT is not None:
            argv = [PRLIMIT, f"--fsize={limit}", "--", *argv]
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            cwd=str(self.workdir),
            start_new_session=True,
        )
        watcher = asyncio.create_task(self._watch_size(process, watch_size_of)) if watch_size_of else None
        try:
            async with asyncio.timeout(seconds):
                stdout, stderr = await process.communicate(stdin)
        except TimeoutError:
            _kill(process)
            await process.wait()
            raise GitError(f"git {args[0]} did not finish within {seconds:.0f}s") from None
        except asyncio.CancelledError:
            _kill(process)
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
        if watcher is not None and watcher.done() and not watcher.cancelled() and watcher.result():
            raise GitError(f"the repository is larger than {limit // (1024 * 1024)} MiB; not fetched")
        if process.returncode != 0:
            if process.returncode in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or b"File size limit" in stderr:
                raise GitError(f"the repository is larger than {limit // (1024 * 1024)} MiB; not fetched")
            raise GitError(_summary(stderr, authenticated=authenticated))
        return stdout

    async def _watch_size(self, process: asyncio.subprocess.Process, directory: Path | None) -> bool:
        """True (and the fetch killed) once `directory` outgrows the limit."""
        if directory is None:
            return False
        while process.returncode is None:
            if _size(directory) > self.limits.repository_bytes:
                _kill(process)
                return True
            await asyncio.sleep(_SIZE_POLL_SECONDS)
        return False

    # ---- what the reconciler asks ---------------------------------------------------------------------

    async def remote_revision(
        self, url: str, ref: GitRef, credentials: Credentials | None, *, deadline: float
    ) -> str:
        """The commit `ref` is at on the remote: one ls-remote (none for a commit ref)."""
        if ref.commit is not None:
            return ref.commit
        if ref.branch is not None:
            wanted = [f"refs/heads/{ref.branch}"]
        else:
            wanted = [f"refs/tags/{ref.tag}", f"refs/tags/{ref.tag}^{{}}"]
        with self._environment(url, credentials) as env:
            try:
                output = await self._run(
                    ["ls-remote", "--", url, *wanted],
                    env,
                    deadline=deadline,
                    authenticated=_sends(credentials),
                )
            except GitError as error:
                raise GitError(f"could not read from {url}: {error}") from None
        found: dict[str, str] = {}
        for line in output.decode(errors="replace").splitlines():
            oid, _, name = line.partition("\t")
            if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", oid):
                found[name.strip()] = oid
        if ref.tag is not None and f"refs/tags/{ref.tag}^{{}}" in found:
            return found[f"refs/tags/{ref.tag}^{{}}"]
        if wanted[0] in found:
            return found[wanted[0]]
        raise RevisionNotFound(f"{ref.describe()} not found at {url} (deleted, or not pushed yet?)")

    async def fetch(
        self, url: str, revision: str, credentials: Credentials | None, *, deadline: float
    ) -> Checkout:
        """A fresh bare repository with `revision` fetched (depth 1) from `url`."""
        self._prepare()
        directory = Path(tempfile.mkdtemp(prefix="fetch-", dir=self.workdir))
        checkout = Checkout(directory, revision)
        try:
            with self._environment(url, credentials) as env:
                await self._run(
                    ["init", "--quiet", "--bare", str(directory)], env, deadline=deadline, writes=True
                )
                await self._run(
                    [
                        "--git-dir",
                        str(directory),
                        "fetch",
                        "--quiet",
                        "--no-tags",
                        "--no-write-fetch-head",
                        "--depth",
                        "1",
                        "--",
                        url,
                        f"+{revision}:refs/director/fetched",
                    ],
                    env,
                    deadline=deadline,
                    watch_size_of=directory,
                    authenticated=_sends(credentials),
                    writes=True,
                )
        except GitError as error:
            checkout.close()
            raise GitError(f"could not fetch {revision[:12]} from {url}: {error}") from None
        except BaseException:
            checkout.close()
            raise
        checkout._env = {key: value for key, value in env.items() if not key.startswith("GIT_CONFIG_")}
        checkout._env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath"})
        checkout._env["GIT_CONFIG_VALUE_0"] = "/dev/null"
        return checkout

    async def tree(self, checkout: Checkout, directory: str, *, deadline: float) -> list[TreeEntry]:
        """Every entry under `directory` ("" for the root), recursively, with blob sizes."""
        args = [
            "--git-dir",
            str(checkout.directory),
            "ls-tree",
            "-r",
            "-l",
            "-z",
            "--full-tree",
            checkout.revision,
        ]
        if directory:
            args += ["--", f"{directory}/"]
        output = await self._run(args, checkout._env, deadline=deadline)
        entries = []
        for record in output.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, oid, size = meta.decode().split()
            entries.append(
                TreeEntry(
                    path.decode(errors="replace"), mode, kind, oid, int(size) if size.isdigit() else None
                )
            )
        return entries

    async def read(self, checkout: Checkout, oids: Sequence[str], *, deadline: float) -> dict[str, bytes]:
        """The contents of these blobs, by id, in one `cat-file --batch`."""
        if not oids:
            return {}
        request = "".join(f"{oid}\n" for oid in oids).encode()
        output = await self._run(
            ["--git-dir", str(checkout.directory), "cat-file", "--batch"],
            checkout._env,
            deadline=deadline,
            stdin=request,
        )
        found: dict[str, bytes] = {}
        position = 0
        for _ in oids:
            header_end = output.index(b"\n", position)
            header = output[position:header_end].decode().split()
            position = header_end + 1
            if len(header) < 3 or header[1] == "missing":
                continue
            size = int(header[2])
            found[header[0]] = output[position : position + size]
            position += size + 1
        return found

    def symlink_target(self, data: bytes) -> str:
        return data.decode(errors="replace")[:200]


def _sends(credentials: Credentials | None) -> bool:
    return credentials is not None and bool(credentials.password or credentials.token or credentials.identity)


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _size(directory: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
