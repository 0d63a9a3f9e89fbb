"""The GitSource resource: a git repository whose Site documents Director keeps applied.

A club keeps its sites' YAML in a repository; the controller fetches the newest revision of `ref` every
`interval` (and at once on a webhook), applies every Site document under `path` through the API as
`applyAs`, and prunes the sites it created whose documents are gone. Everything a source says is checked
here as strictly as a Site: a URL takes only the listed transports and never carries a password, a ref is a
plain branch, tag or commit, a path cannot climb out of the repository.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from specs.models import (
    API_VERSION,
    DURATION_PATTERN,
    SITE_NAME_PATTERN,
    Condition,
    ConditionType,
    LastReconcile,
    Model,
    ObjectMeta,
    OwnerName,
    Resource,
    parse_duration,
)

KIND_GITSOURCE: Final = "GitSource"
# Put on every site a source creates, naming the source: what makes the site the source's to update and to
# prune. A site without it (or naming another source) is never taken over.
GITSOURCE_LABEL: Final = "director.io/gitsource"
# The field manager a source applies with: "gitsource-NAME" (field managers take no "/").
FIELD_MANAGER_PREFIX: Final = "gitsource-"
TRANSPORTS: Final = ("https", "http", "ssh", "git", "file")
MIN_INTERVAL_SECONDS = 5.0
MAX_INTERVAL_SECONDS = 24 * 3600.0
# The keys a secret may hold, by use.
SECRET_KEYS: Final = ("username", "password", "token", "identity", "known_hosts", "hmac")

SOURCE_NAME_PATTERN = SITE_NAME_PATTERN
SECRET_NAME_PATTERN = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"
# A git ref name as `git check-ref-format` admits it, narrowed to what no shell or URL reads specially; the
# forms git refuses ("..", "//", a leading "-" or "/", a trailing ".lock", "/" or ".") are refused below.
REF_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$"
COMMIT_PATTERN = r"^([0-9a-f]{40}|[0-9a-f]{64})$"
# A directory of the repository, relative: letters, digits and . _ - / only; ".." is refused below.
REPO_PATH_PATTERN = r"^[A-Za-z0-9._/-]{0,255}$"
MAX_URL_LENGTH = 2048


def field_manager_of(source: str) -> str:
    return f"{FIELD_MANAGER_PREFIX}{source}"


def source_of_field_manager(manager: str) -> str | None:
    """The source a field manager name stands for, or None for a manager that is no source's."""
    if manager.startswith(FIELD_MANAGER_PREFIX) and re.fullmatch(
        SOURCE_NAME_PATTERN, manager[len(FIELD_MANAGER_PREFIX) :]
    ):
        return manager[len(FIELD_MANAGER_PREFIX) :]
    return None


def url_transport(url: str) -> str:
    return urlsplit(url).scheme.lower()


def _check_url(url: str) -> str:
    if any(ord(c) <= 32 or ord(c) == 127 for c in url) or any(c in url for c in "\"'`\\<>{}|^"):
        raise ValueError("a repository URL may not contain spaces, quotes, backslashes or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in TRANSPORTS:
        raise ValueError(
            f"{url!r} is not a repository URL Director fetches: it must start with "
            f"{', '.join(f'{t}://' for t in TRANSPORTS)}, such as https://git.example.org/club/sites.git"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(
                "a file:// URL must name an absolute path on this machine: file:///srv/git/x.git"
            )
    elif not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    if parts.password is not None or (parts.username is not None and scheme in ("http", "https")):
        raise ValueError(
            "credentials never go into a URL (it is stored in the record and shown to readers): put them in "
            "a secret (`dirctl create secret NAME --from-literal username=... --from-literal password=...`) "
            "and name it in spec.secretRef"
        )
    if parts.query or parts.fragment:
        raise ValueError("a repository URL may not have a query (?) or a fragment (#)")
    return url


def _check_ref_name(name: str) -> str:
    if ".." in name or "//" in name or name.endswith((".lock", "/", ".")) or "/." in name:
        raise ValueError(
            f"{name!r} is not a ref git accepts: no '..', '//' or '/.', and no trailing '/', '.' or '.lock'"
        )
    return name


def _check_interval(interval: str) -> str:
    seconds = parse_duration(interval)
    if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
        raise ValueError(f"interval must be between 5s and 24h, got {interval}")
    return interval


def _check_repo_path(path: str) -> str:
    parts = [part for part in path.split("/") if part]
    if path.startswith("/"):
        raise ValueError(
            f"path is inside the repository: write it without the leading '/', such as {path[1:]}"
        )
    if any(part in (".", "..") for part in parts):
        raise ValueError("path may not contain '.' or '..' segments: it names a directory of the repository")
    return path


SourceName = Annotated[str, StringConstraints(min_length=2, max_length=32, pattern=SOURCE_NAME_PATTERN)]
SecretName = Annotated[str, StringConstraints(max_length=63, pattern=SECRET_NAME_PATTERN)]
RefName = Annotated[str, StringConstraints(pattern=REF_NAME_PATTERN), AfterValidator(_check_ref_name)]
RepositoryUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_URL_LENGTH), AfterValidator(_check_url)
]
Interval = Annotated[str, StringConstraints(pattern=DURATION_PATTERN), AfterValidator(_check_interval)]
RepoPath = Annotated[str, StringConstraints(pattern=REPO_PATH_PATTERN), AfterValidator(_check_repo_path)]


class GitRef(Model):
    """Which revision to follow: exactly one of a branch, a tag or a commit."""

    branch: RefName | None = None
    tag: RefName | None = None
    commit: Annotated[str, StringConstraints(pattern=COMMIT_PATTERN)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> GitRef:
        given = [name for name in ("branch", "tag", "commit") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "ref must name exactly one of branch, tag or commit, such as {branch: main}"
                + (f"; got {' and '.join(given)}" if given else "")
            )
        return self

    def describe(self) -> str:
        if self.branch is not None:
            return f"branch {self.branch}"
        if self.tag is not None:
            return f"tag {self.tag}"
        return f"commit {self.commit}"


class SecretRef(Model):
    name: SecretName


class Webhook(Model):
    secret_ref: SecretRef


class GitSourceSpec(Model):
    url: RepositoryUrl
    ref: GitRef = Field(default_factory=lambda: GitRef(branch="main"))
    path: RepoPath = ""
    interval: Interval = "1m"
    prune: Annotated[bool, Field(strict=True)] = False
    suspend: Annotated[bool, Field(strict=True)] = False
    secret_ref: SecretRef | None = None
    webhook: Webhook | None = None
    # Filled in by the API with whoever applied the source when not given; only an admin may name another.
    apply_as: OwnerName | None = None
    deletion_policy: Literal["orphan", "delete"] = "orphan"

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def directory(self) -> str:
        """`path` without slashes at either end: "" for the repository's root."""
        return self.path.strip("/")

    @property
    def transport(self) -> str:
        return url_transport(self.url)


class GitSourceMeta(ObjectMeta):
    # A source's name is no host name, so no site name is reserved for it; it is part of its field manager.
    name: SourceName


class RefusedDocument(Model):
    """One document of a revision that was not applied, and why, pointing at where it is."""

    file: str
    document: int | None = None
    site: str | None = None
    field: str | None = None
    line: int | None = None
    column: int | None = None
    message: str


class RevisionAttempt(Model):
    """One revision tried: what came of it, when, and how long it took."""

    revision: str
    result: Literal["applied", "partial", "failed"]
    time: datetime
    duration_seconds: float
    message: str = ""


class SyncStatus(Model):
    """The sync reconciler's part of a source's status."""

    url: str = ""
    ref: str = ""
    # The newest revision the remote was found at, and when.
    fetched_revision: str | None = None
    fetched_at: datetime | None = None
    # The last revision whose documents were applied, whatever came of it; and the last applied whole.
    attempted_revision: str | None = None
    applied_revision: str | None = None
    documents: int = 0
    # The sites this source created and keeps.
    inventory: list[str] = Field(default_factory=list)
    refused: list[RefusedDocument] = Field(default_factory=list)
    # How many documents were refused in all (only the first ones are listed in `refused`).
    refused_count: int = 0
    history: list[RevisionAttempt] = Field(default_factory=list)


class GitSourceStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    sync: SyncStatus | None = None
    last_reconcile: LastReconcile | None = None

    def condition(self, type_: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class GitSource(Resource):
    api_version: Literal["director.io/v1"] = API_VERSION
    kind: Literal["GitSource"] = KIND_GITSOURCE
    metadata: GitSourceMeta
    spec: GitSourceSpec
    status: GitSourceStatus | None = None
