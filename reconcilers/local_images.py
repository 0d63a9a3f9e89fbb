"""Director's own images, built on this machine from Debian packages, because no registry is reachable here.

`debootstrap --variant=minbase` lays down a Debian root filesystem holding the recipe's packages and
`docker import` turns it into a one-layer image. The tag is a hash of the recipe, so an unchanged recipe is
found and never rebuilt, and a changed recipe can never be mistaken for the image of the old one.

One image, `director-local/base`, serves as the edge (nginx) and as the default image of dynamic sites
(python3). Run `python -m reconcilers.local_images` to build it ahead of time (`make setup` does).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors

from specs.config import Settings

log = logging.getLogger(__name__)

# Part of every recipe hash: bump it whenever build_rootfs, tidy_rootfs or import_rootfs change what ends up
# in an image, so that every machine rebuilds instead of keeping an image the new code would not make.
BUILDER_VERSION = "director-local-images/2"

IMAGES_DIR = Path(os.environ.get("DIRECTOR_IMAGES_DIR", Path(__file__).resolve().parent.parent / "images"))
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LOCAL_REPOSITORY_PREFIX = "director-local"
BASE_ALIASES = ("director-local/base:latest", "director-local/site:latest")

LABEL_RECIPE = "io.director.image.recipe"
LABEL_BUILDER = "io.director.image.builder"

LOCK_PATH = Path(tempfile.gettempdir()) / "director-local-images.lock"
LOCK_TIMEOUT_SECONDS = 20 * 60
DEBOOTSTRAP_TIMEOUT_SECONDS = 15 * 60
IMPORT_CHUNK_BYTES = 1 << 20

# Debian policy 5.6.7: lower case letters, digits, + - . ; at least two characters, starting alphanumeric.
_DEBIAN_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")

BASE_IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    # A site's print() output reaches `docker service logs` when it happens, not when a buffer fills.
    "ENV PYTHONUNBUFFERED=1",
    "WORKDIR /",
    'CMD ["/bin/sh", "-c", "exec python3 -m http.server \\"${PORT:-8080}\\""]',
)


class ImageBuildError(Exception):
    """A local image could not be built; the message says which step failed and why."""


@dataclass(frozen=True)
class ImageRecipe:
    """Everything that decides an image's content; its hash is the image's tag."""

    name: str
    suite: str
    packages: tuple[str, ...]
    # Dockerfile instructions `docker import` applies to the image config (CMD, ENV, WORKDIR...).
    changes: tuple[str, ...]
    builder_version: str = BUILDER_VERSION

    def content_hash(self) -> str:
        canonical = json.dumps(
            {
                "name": self.name,
                "suite": self.suite,
                "packages": sorted(self.packages),
                "changes": list(self.changes),
                "builder": self.builder_version,
            },
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def repository(self) -> str:
        return f"{LOCAL_REPOSITORY_PREFIX}/{self.name}"

    @property
    def tag(self) -> str:
        return f"{self.repository}:{self.content_hash()[:12]}"


def read_package_list(path: Path) -> tuple[str, ...]:
    """Packages listed one per line; `#` starts a comment. Refuses names debootstrap would choke on."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ImageBuildError(f"cannot read the package list {path}: {error.strerror}") from None
    packages: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if not _DEBIAN_PACKAGE_NAME.match(name):
            raise ImageBuildError(f"{path}:{number}: {name!r} is not a Debian package name")
        if name in packages:
            raise ImageBuildError(f"{path}:{number}: {name!r} is listed twice")
        packages.append(name)
    if not packages:
        raise ImageBuildError(f"{path} lists no packages")
    return tuple(packages)


def base_recipe(images_dir: Path = IMAGES_DIR) -> ImageRecipe:
    return ImageRecipe(
        name="base",
        suite=SUITE,
        packages=read_package_list(images_dir / "base.packages"),
        changes=BASE_IMAGE_CHANGES,
    )


def ensure_base_image(client: docker.DockerClient) -> str:
    """The content-hash tag of the base image, built first if this machine does not have it yet."""
    return ensure_image(client, base_recipe(), aliases=BASE_ALIASES)


def resolve_edge_image(client: docker.DockerClient, settings: Settings) -> str:
    """The image the edge runs: the configured one, or the local base image (nginx-light)."""
    return settings.edge_image or ensure_base_image(client)


def resolve_site_image(client: docker.DockerClient, settings: Settings) -> str:
    """The image a dynamic site gets when its spec names none that exists here: configured, or local base."""
    return settings.site_image or ensure_base_image(client)


def pinned_local_image(client: docker.DockerClient, reference: str) -> str:
    """The ID of the image `reference` names when it is one of Director's local images (named under
    LOCAL_REPOSITORY_PREFIX), else `reference` as it is.

    Before each task of a service naming its image by tag starts, Swarm's agent pulls that tag, even when the
    image is here, and uses the local one once the pull has failed. No registry has Director's local images,
    so every start of a site waited for that failure: a lookup of registry-1.docker.io, 5 to 10 s on these
    machines, which queue up when many sites start at once. Swarm never pulls an image named by its ID. An
    image not found here is left named as it is: Swarm says why its tasks cannot start, as it did.
    """
    if not reference.startswith(f"{LOCAL_REPOSITORY_PREFIX}/"):
        return reference
    try:
        return str(client.images.get(reference).id)
    except docker.errors.ImageNotFound:
        return reference


def ensure_image(
    client: docker.DockerClient,
    recipe: ImageRecipe,
    *,
    aliases: Sequence[str] = (),
    mirror: str = DEFAULT_MIRROR,
    lock_path: Path = LOCK_PATH,
) -> str:
    """Return the recipe's tag, building and importing the image only when no image carries that tag.

    Builds are serialised across processes by a file lock; whoever waited finds the image the first
    builder made and returns without building again.
    """
    tag = recipe.tag
    if _find_image(client, tag) is None:
        with build_lock(lock_path, LOCK_TIMEOUT_SECONDS):
            if _find_image(client, tag) is None:
                started = time.monotonic()
                log.info("building %s from %s packages: %s", tag, recipe.suite, " ".join(recipe.packages))
                _build_image(client, recipe, mirror)
                log.info("built %s in %.0f s", tag, time.monotonic() - started)
    image = _find_image(client, tag)
    if image is None:
        raise ImageBuildError(f"{tag} was built but Docker no longer has it")
    for alias in aliases:
        if alias not in image.tags:
            repository, alias_tag = alias.rsplit(":", 1)
            image.tag(repository, alias_tag)
    return tag


def _find_image(client: docker.DockerClient, tag: str) -> Any:
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


@contextmanager
def build_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on `path`: two processes (or threads) never debootstrap at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ImageBuildError(
                        f"another image build has held {path} for more than {timeout:.0f} s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_image(client: docker.DockerClient, recipe: ImageRecipe, mirror: str) -> None:
    if os.geteuid() != 0:
        raise ImageBuildError(f"building {recipe.tag} needs root (debootstrap); run `make setup` as root")
    for tool in ("debootstrap", "tar"):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"building {recipe.tag} needs {tool}: apt-get install {tool}")
    workdir = Path(tempfile.mkdtemp(prefix=f"director-image-{recipe.name}-", dir=_build_parent_dir()))
    try:
        root = workdir / "rootfs"
        build_rootfs(recipe, root, mirror, workdir / "debootstrap.log")
        tidy_rootfs(root)
        image_id = import_rootfs(client, root, recipe)
        repository, tag = recipe.tag.rsplit(":", 1)
        if not client.images.get(image_id).tag(repository, tag):
            raise ImageBuildError(f"Docker refused to tag {image_id} as {recipe.tag}")
    finally:
        _remove_build_dir(workdir)


def _build_parent_dir() -> str:
    # /var/tmp is on disk; /tmp may be a small tmpfs, and a root filesystem is about 270 MB.
    if configured := os.environ.get("DIRECTOR_BUILD_DIR"):
        return configured
    return "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()


def build_rootfs(recipe: ImageRecipe, root: Path, mirror: str, log_path: Path) -> None:
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(recipe.packages)}",
        recipe.suite,
        str(root),
        mirror,
    ]
    with log_path.open("wb") as log_file:
        try:
            completed = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=DEBOOTSTRAP_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ImageBuildError(
                f"debootstrap of {recipe.suite} took more than {DEBOOTSTRAP_TIMEOUT_SECONDS} s; "
                f"last output:\n{_tail(log_path)}"
            ) from None
    if completed.returncode != 0:
        raise ImageBuildError(
            f"debootstrap of {recipe.suite} from {mirror} failed (exit {completed.returncode}); "
            f"last output:\n{_tail(log_path)}"
        )


def tidy_rootfs(root: Path) -> None:
    """Drop what only the build needed and what describes the build host, and send nginx logs to Docker.

    No file keeps a setuid or setgid bit: `su`, `passwd`, `mount`... are how a process gains privileges
    it was not started with, and nothing in a site or in the edge has a use for that.
    """
    strip_setid_bits(root)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        directory = root / leftover
        for entry in directory.glob("*"):
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
    # debootstrap copies the build host's resolver and name; Docker supplies a container's own at run time.
    for host_file in ("etc/resolv.conf", "etc/hostname"):
        (root / host_file).write_text("")
    nginx_logs = root / "var/log/nginx"
    if nginx_logs.is_dir():
        for log_name, target in (("access.log", "/dev/stdout"), ("error.log", "/dev/stderr")):
            (nginx_logs / log_name).unlink(missing_ok=True)
            (nginx_logs / log_name).symlink_to(target)


def strip_setid_bits(root: Path) -> list[Path]:
    """Clear the setuid and setgid bits of every file and directory under `root`; return what had them."""
    stripped: list[Path] = []
    for directory, subdirectories, files in os.walk(root):
        # A mount debootstrap left behind (/proc, /sys) is the host's, not the image's.
        subdirectories[:] = [name for name in subdirectories if not os.path.ismount(Path(directory, name))]
        for name in (*subdirectories, *files):
            path = Path(directory, name)
            mode = path.lstat().st_mode
            # A symbolic link's own mode means nothing, and chmod would follow it out of the tree.
            if not stat.S_ISLNK(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                path.chmod(stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))
                stripped.append(path)
    return stripped


def import_rootfs(client: docker.DockerClient, root: Path, recipe: ImageRecipe) -> str:
    """Stream the root filesystem into `docker import`; return the new image's id (not yet tagged).

    The tag is applied only after tar has exited cleanly, so a truncated archive never carries the
    recipe's tag and can never be found and trusted by a later ensure_image.
    """
    changes = [
        *recipe.changes,
        f"LABEL {LABEL_RECIPE}={recipe.content_hash()}",
        f"LABEL {LABEL_BUILDER}={recipe.builder_version}",
    ]
    tar = subprocess.Popen(
        [
            "tar",
            "--numeric-owner",
            "--one-file-system",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "--exclude=./dev/*",
            "-C",
            str(root),
            "-cf",
            "-",
            ".",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None and tar.stderr is not None
    try:
        response = client.api.import_image_from_stream(_read_chunks(tar.stdout), changes=changes)
    finally:
        tar.stdout.close()
        tar_errors = tar.stderr.read().decode(errors="replace")
        tar.stderr.close()
        tar_status = tar.wait()
    image_id = _imported_image_id(response)
    if tar_status != 0:
        client.images.remove(image_id, force=True)
        raise ImageBuildError(f"tar of {root} failed (exit {tar_status}): {tar_errors.strip()}")
    return image_id


def _read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(IMPORT_CHUNK_BYTES):
        yield chunk


def _imported_image_id(response: str) -> str:
    # /images/create answers with JSON progress lines; the last status is the new image's id.
    for line in reversed(response.splitlines()):
        if not line.strip():
            continue
        message = json.loads(line)
        if "error" in message:
            raise ImageBuildError(f"docker import failed: {message['error']}")
        status = str(message.get("status", ""))
        if status.startswith("sha256:"):
            return status
    raise ImageBuildError(f"docker import gave no image id: {response[-500:]!r}")


def _remove_build_dir(workdir: Path) -> None:
    # debootstrap mounts /proc and /sys into the target and leaves them mounted if it is interrupted;
    # deleting through a live mount would walk into the host's /proc and /sys.
    for mount_point in _mounts_under(workdir):
        subprocess.run(["umount", "--lazy", mount_point], check=False, capture_output=True)
    remaining = _mounts_under(workdir)
    if remaining:
        log.error("left %s in place: still mounted: %s", workdir, ", ".join(remaining))
        return
    shutil.rmtree(workdir, ignore_errors=True)


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory.resolve()) + "/"
    mount_points: list[str] = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 2:
                continue
            # /proc/mounts escapes space, tab, newline and backslash as octal.
            mount_point = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), fields[1])
            if mount_point.startswith(prefix):
                mount_points.append(mount_point)
    # Deepest first, so nested mounts come off before their parents.
    return sorted(mount_points, key=len, reverse=True)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output recorded)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reconcilers.local_images",
        description="Build Director's local base image (edge and default site image) unless it exists.",
    )
    parser.add_argument(
        "--print-tag", action="store_true", help="print the tag the current recipe has and build nothing"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.print_tag:
            print(base_recipe().tag)
            return 0
        client = docker.from_env()
        print(ensure_base_image(client))
    except ImageBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except docker.errors.DockerException as error:
        print(f"error: Docker engine: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
