"""The Site resource: `apiVersion: director.io/v1`, `kind: Site`.

Every string that can reach an Nginx config, a Docker label or a shell is constrained here by a pattern
that admits no `;`, braces, quotes, `$`, whitespace, control characters or non-ASCII, so the layers above
never have to quote anything. Unknown fields are refused everywhere: a spec cannot ask for host binds,
privileged mode, published ports or capabilities because no such field exists. Counts and CPUs are strict
numbers: YAML's `replicas: yes` or `cpus: "2"` is a mistake to report, not a value to guess.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

API_VERSION: Final = "director.io/v1"
KIND_SITE: Final = "Site"
# Writing this annotation (any new value) asks the controller to reconcile the record now: dirctl and the
# UI write it, the controller reads it.
RECONCILE_REQUEST_ANNOTATION: Final = "director.io/reconcile-requested-at"
# Writing this annotation (any new value) asks for a rolling restart of a dynamic site's tasks: the service
# reconciler carries it into the task template, so Swarm replaces each task, new before old.
RESTART_REQUEST_ANNOTATION: Final = "director.io/restart-requested-at"

# Names that would collide with Director's own hosts, services or URL space.
RESERVED_SITE_NAMES = frozenset(
    {
        "admin",
        "api",
        "apis",
        "director",
        "edge",
        "localhost",
        "manager",
        "nginx",
        "orchestrator",
        "root",
        "router",
        "shell",
        "shell-server",
        "sites",
        "static",
        "status",
        "www",
        "mail",
        "ftp",
        "ssh",
        "default",
        "system",
        "registry",
        "docker",
    }
)

DEFAULT_CPUS = 0.6
DEFAULT_MEMORY = "100M"
DEFAULT_UPLOAD_LIMIT = "2Mi"
MAX_ENV_VALUE_BYTES = 32 * 1024
MAX_ENV_ENTRIES = 128
MAX_DOMAINS = 32
MAX_OWNERS = 64
MAX_COMMAND_ARGS = 64
MAX_COMMAND_ARG_BYTES = 4096
MIN_MEMORY_BYTES = 6 * 1024 * 1024  # Docker refuses limits below 6 MiB.
MAX_MEMORY_BYTES = 16 * 1024**3
MAX_UPLOAD_BYTES = 1024**3
# Every limit has a floor above the value its backend reads as "no limit": Docker takes NanoCPUs 0 as
# unlimited and Nginx takes client_max_body_size 0 as any size, so a tiny value must never round to 0.
MIN_UPLOAD_BYTES = 1024
MIN_CPUS = 0.01
MAX_CPUS = 8.0
# Docker reads a healthcheck timeout of 0 as its own default (30s), not as none.
MIN_HEALTH_TIMEOUT_SECONDS = 0.1
MAX_REPLICAS = 10
# Processes (threads count too) one container of a site may have: a fork bomb stops there. Docker reads a
# pids limit of 0 or -1 as no limit, so the floor is well above both; a site needs a few for its own shell,
# init and server.
DEFAULT_PIDS = 256
MIN_PIDS = 16
MAX_PIDS = 32768
# spec.cache: how long the edge may keep a dynamic site's last good pages, and how much of them.
MIN_STALE_SECONDS = 10
MAX_STALE_SECONDS = 7 * 24 * 3600
DEFAULT_CACHE_SIZE = "64Mi"
MIN_CACHE_BYTES = 1024**2
MAX_CACHE_BYTES = 1024**3
# Env names Director sets itself for every dynamic site.
RESERVED_ENV_NAMES = frozenset({"PORT", "HOST"})

SITE_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
_HOST_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME_PATTERN = rf"^{_HOST_LABEL}(\.{_HOST_LABEL})+$"
OWNER_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$"
# Docker's reference grammar, narrowed to what Director accepts: registry[:port]/path[:tag][@digest].
IMAGE_PATTERN = (
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
# A URL path Nginx and curl take literally: no spaces, quotes, `$`, `;`, braces, `%`-escapes or `..`.
HEALTH_PATH_PATTERN = r"^/[A-Za-z0-9._~/-]{0,255}$"
DURATION_PATTERN = r"^[0-9]{1,6}(ms|s|m|h)$"
MEMORY_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,3})?(k|K|M|G|Ki|Mi|Gi)?$"
UID_PATTERN = r"^[0-9a-f-]{1,64}$"

_MEMORY_UNITS = {
    "": 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_memory(quantity: str) -> int:
    """Bytes in a quantity such as "256Mi", "1G" or "100000000"."""
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity)
    if match is None or match.group(2) not in _MEMORY_UNITS:
        raise ValueError(f"{quantity!r} is not a memory quantity such as 256Mi, 1G or 100M")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])


def parse_duration(duration: str) -> float:
    """Seconds in a duration such as "500ms", "30s", "2m" or "1h"."""
    match = re.fullmatch(r"([0-9]+)(ms|s|m|h)", duration)
    if match is None:
        raise ValueError(f"{duration!r} is not a duration such as 500ms, 30s, 2m or 1h")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _check_site_name(name: str) -> str:
    if name in RESERVED_SITE_NAMES:
        raise ValueError(f"{name!r} is reserved for Director itself; choose another name")
    if "--" in name:
        raise ValueError("a site name may not contain two hyphens in a row")
    return name


def _check_memory(quantity: str) -> str:
    size = parse_memory(quantity)
    if not MIN_MEMORY_BYTES <= size <= MAX_MEMORY_BYTES:
        raise ValueError(f"memory must be between 6Mi and 16Gi, got {quantity}")
    return quantity


def _check_upload_limit(quantity: str) -> str:
    size = parse_memory(quantity)
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(f"uploadLimit must be at most 1Gi, got {quantity}")
    if size < MIN_UPLOAD_BYTES:
        raise ValueError(
            f"uploadLimit must be at least 1Ki, got {quantity}: Nginx would read a limit of 0 as no limit"
        )
    return quantity


def _check_stale_if_error(duration: str) -> str:
    if not MIN_STALE_SECONDS <= parse_duration(duration) <= MAX_STALE_SECONDS:
        raise ValueError(f"cache.staleIfError must be between 10s and 168h (a week), got {duration}")
    return duration


def _check_cache_size(quantity: str) -> str:
    if not MIN_CACHE_BYTES <= parse_memory(quantity) <= MAX_CACHE_BYTES:
        raise ValueError(f"cache.maxSize must be between 1Mi and 1Gi, got {quantity}")
    return quantity


def _check_cpus(cpus: float) -> float:
    if cpus < MIN_CPUS:
        raise ValueError(
            f"cpus must be at least {MIN_CPUS} (1% of a CPU), got {cpus:g}: Docker would read a limit "
            "that rounds to 0 as no limit"
        )
    return cpus


def _check_env_value(value: str) -> str:
    if "\x00" in value:
        raise ValueError("an env value may not contain a NUL character")
    if len(value.encode()) > MAX_ENV_VALUE_BYTES:
        raise ValueError(f"an env value may be at most {MAX_ENV_VALUE_BYTES} bytes")
    return value


def _check_command_arg(arg: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in arg):
        raise ValueError("a command argument may not contain control characters (NUL, newline, tab)")
    if len(arg.encode()) > MAX_COMMAND_ARG_BYTES:
        raise ValueError(f"a command argument may be at most {MAX_COMMAND_ARG_BYTES} bytes")
    return arg


def _check_annotation_value(value: str) -> str:
    if "\x00" in value:
        raise ValueError("an annotation may not contain a NUL character")
    if len(value.encode()) > 64 * 1024:
        raise ValueError("an annotation may be at most 64 KiB")
    return value


SiteName = Annotated[
    str,
    StringConstraints(min_length=2, max_length=32, pattern=SITE_NAME_PATTERN),
    AfterValidator(_check_site_name),
]
Hostname = Annotated[str, StringConstraints(max_length=253, pattern=HOSTNAME_PATTERN)]
OwnerName = Annotated[str, StringConstraints(pattern=OWNER_PATTERN)]
EnvName = Annotated[str, StringConstraints(max_length=256, pattern=ENV_NAME_PATTERN)]
EnvValue = Annotated[str, AfterValidator(_check_env_value)]
LabelKey = Annotated[str, StringConstraints(max_length=317, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE_PATTERN)]
AnnotationValue = Annotated[str, AfterValidator(_check_annotation_value)]
ImageRef = Annotated[str, StringConstraints(max_length=255, pattern=IMAGE_PATTERN)]
CommandArg = Annotated[str, StringConstraints(min_length=1), AfterValidator(_check_command_arg)]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN)]
MemoryQuantity = Annotated[str, StringConstraints(pattern=MEMORY_PATTERN), AfterValidator(_check_memory)]
UploadQuantity = Annotated[
    str, StringConstraints(pattern=MEMORY_PATTERN), AfterValidator(_check_upload_limit)
]
Uid = Annotated[str, StringConstraints(pattern=UID_PATTERN)]
Finalizer = Annotated[str, StringConstraints(max_length=253, pattern=r"^[a-z0-9.-]+(/[a-z0-9.-]+)?$")]


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields refused. A field's docstring is its
    description in the JSON schema, which `kubectl explain` and `dirctl schema` show."""

    model_config = ConfigDict(
        use_attribute_docstrings=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=False,
        str_strip_whitespace=False,
        validate_default=True,
    )


class HealthCheck(Model):
    """An HTTP GET the container must answer with 2xx/3xx for its task to count as healthy."""

    path: Annotated[str, StringConstraints(pattern=HEALTH_PATH_PATTERN)] = "/"
    interval: Duration = "30s"
    timeout: Duration = "5s"
    retries: Annotated[int, Field(ge=1, le=10, strict=True)] = 3

    @model_validator(mode="after")
    def _timeout_fits_interval(self) -> HealthCheck:
        if parse_duration(self.timeout) > parse_duration(self.interval):
            raise ValueError("healthCheck.timeout may not be longer than healthCheck.interval")
        if parse_duration(self.timeout) < MIN_HEALTH_TIMEOUT_SECONDS:
            raise ValueError("healthCheck.timeout must be at least 100ms (Docker reads 0 as its default)")
        if not 1 <= parse_duration(self.interval) <= 3600:
            raise ValueError("healthCheck.interval must be between 1s and 1h")
        return self


class Resources(Model):
    """What the site may use: limits of its containers, and of one upload to it."""

    cpus: Annotated[
        float, Field(gt=0, le=MAX_CPUS, allow_inf_nan=False, strict=True), AfterValidator(_check_cpus)
    ] = DEFAULT_CPUS
    """CPUs each container may use, such as 0.5 (users up to 1; admins more)."""
    memory: MemoryQuantity = DEFAULT_MEMORY
    """Memory each container may use, such as 256Mi (users up to 1Gi)."""
    upload_limit: UploadQuantity = DEFAULT_UPLOAD_LIMIT
    """The largest request body the edge passes to the site, such as 10Mi (users up to 100Mi)."""
    pids: Annotated[int, Field(ge=MIN_PIDS, le=MAX_PIDS, strict=True)] = DEFAULT_PIDS
    """Processes (threads too) each container may run at once: a fork bomb stops there (users up to 256)."""

    @property
    def memory_bytes(self) -> int:
        return parse_memory(self.memory)

    @property
    def upload_limit_bytes(self) -> int:
        return parse_memory(self.upload_limit)


class Cache(Model):
    """The edge keeps a dynamic site's last good pages and answers with them while the site fails.

    Only answers to GET and HEAD requests carrying no cookie and no Authorization header are kept (a page
    made for one signed-in visitor is never shown to another), and only those the site lets a shared cache
    keep (no Set-Cookie, no Cache-Control private, no-cache or no-store). A kept page is fresh for a second,
    after which each request goes to the site again; it stays for `staleIfError` after it was last asked
    for, so a site that is down keeps answering with the pages visitors ask for.
    """

    stale_if_error: Annotated[Duration, AfterValidator(_check_stale_if_error)]
    max_size: Annotated[str, StringConstraints(pattern=MEMORY_PATTERN), AfterValidator(_check_cache_size)] = (
        DEFAULT_CACHE_SIZE
    )

    @property
    def stale_seconds(self) -> int:
        return int(parse_duration(self.stale_if_error))

    @property
    def max_size_bytes(self) -> int:
        return parse_memory(self.max_size)


class SiteSpec(Model):
    """What the site should be: the controller makes the service, routes and files match it."""

    type: Literal["static", "dynamic"] = "static"
    """static: Nginx serves the site's files; dynamic: containers of spec.image answer."""
    purpose: Literal["user", "project", "activity", "other"] = "project"
    """What the site is for: a person's own, a project, a club or activity, or other."""
    owners: Annotated[list[OwnerName], Field(max_length=MAX_OWNERS)] = Field(default_factory=list)
    """The users who see and change the site (administrators see every site)."""
    domains: Annotated[list[Hostname], Field(max_length=MAX_DOMAINS)] = Field(default_factory=list)
    """Host names the site answers on besides NAME.<sites domain>, such as example.org."""
    availability: Literal["enabled", "not-served", "disabled"] = "enabled"
    """enabled: served; not-served: kept but not served; disabled: stopped by an administrator."""
    image: ImageRef | None = None
    """The container image of a dynamic site, such as nginx:1.27."""
    command: Annotated[list[CommandArg], Field(min_length=1, max_length=MAX_COMMAND_ARGS)] | None = None
    """A dynamic site's command, instead of the image's own."""
    env: Annotated[dict[EnvName, EnvValue], Field(max_length=MAX_ENV_ENTRIES)] = Field(default_factory=dict)
    """Environment variables of a dynamic site's containers."""
    replicas: Annotated[int, Field(ge=0, le=MAX_REPLICAS, strict=True)] = 1
    """How many containers a dynamic site runs (users up to 3)."""
    health_check: HealthCheck | None = None
    """An HTTP check a dynamic site's containers must pass to count as healthy."""
    resources: Resources = Field(default_factory=Resources)
    """Limits of the site's containers and uploads."""
    cache: Cache | None = None
    """Lets the edge answer with a dynamic site's last good pages while the site fails."""

    @field_validator("owners", "domains")
    @classmethod
    def _no_duplicates(cls, values: list[str]) -> list[str]:
        seen: set[str] = set()
        for value in values:
            if value in seen:
                raise ValueError(f"{value!r} is listed twice")
            seen.add(value)
        return values

    @field_validator("env")
    @classmethod
    def _no_reserved_env(cls, env: dict[str, str]) -> dict[str, str]:
        reserved = sorted(RESERVED_ENV_NAMES & env.keys())
        if reserved:
            raise ValueError(f"{', '.join(reserved)} is set by Director for every site and may not be given")
        return env

    @model_validator(mode="after")
    def _dynamic_needs_image(self) -> SiteSpec:
        if self.type == "dynamic" and self.image is None:
            raise ValueError("a dynamic site needs an image (spec.image)")
        if self.type == "static" and (self.command is not None or self.health_check is not None):
            raise ValueError("command and healthCheck apply only to dynamic sites (spec.type: dynamic)")
        if self.type == "static" and self.cache is not None:
            raise ValueError(
                "cache applies only to dynamic sites (spec.type: dynamic): a static site's files are served "
                "as they are"
            )
        return self


class ObjectMeta(Model):
    name: SiteName
    labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=64)] = Field(default_factory=dict)
    annotations: Annotated[dict[LabelKey, AnnotationValue], Field(max_length=64)] = Field(
        default_factory=dict
    )
    uid: Uid | None = None
    generation: Annotated[int, Field(ge=0)] | None = None
    resource_version: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")] | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    finalizers: Annotated[list[Finalizer], Field(max_length=16)] = Field(default_factory=list)


ConditionType = Literal["Ready", "Reconciling", "Stalled"]


class Condition(Model):
    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z][A-Za-z0-9]*$")]
    message: Annotated[str, StringConstraints(max_length=4096)] = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class ServiceStatus(Model):
    running_tasks: int = 0
    desired_tasks: int = 0
    update_state: str | None = None


class LastReconcile(Model):
    time: datetime
    result: Literal["succeeded", "failed", "stalled"]
    reconcile_id: str | None = None
    trigger: str | None = None
    duration_seconds: float | None = None
    message: str = ""


class SiteStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    service: ServiceStatus | None = None
    last_reconcile: LastReconcile | None = None

    def condition(self, type_: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class Resource(Model):
    """What every kind shares, Kubernetes-shaped: apiVersion, kind, metadata, spec and status.

    Each kind narrows these (Site, Platform); the record store and the controller runtime work on any.
    """

    api_version: str = API_VERSION
    kind: str
    metadata: ObjectMeta
    spec: Model
    status: Model | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_document(self, *, include_status: bool = True) -> dict[str, object]:
        """The wire form: camelCase, no unset optional fields, timestamps as RFC 3339 strings."""
        exclude = None if include_status else {"status"}
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=exclude)


class Site(Resource):
    """A website Director hosts: its spec says what it should be, its status what it is."""

    api_version: Literal["director.io/v1"] = API_VERSION
    kind: Literal["Site"] = KIND_SITE
    metadata: ObjectMeta
    spec: SiteSpec = Field(default_factory=SiteSpec)
    status: SiteStatus | None = None
