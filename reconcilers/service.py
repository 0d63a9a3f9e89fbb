"""A dynamic site's Swarm service, rendered whole from its Site and kept so.

One observe() lists Director's services and their tasks in two calls; a reconcile of a converged site then
reads nothing and writes nothing. A reconcile finding drift sends the complete spec with the live version.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors

from controller.types import Outcome, PermanentError, ReconcileContext, Step
from reconcilers.docker_calls import (
    LABEL_GENERATION,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_SITE,
    instance_filter,
    off_loop,
)
from reconcilers.images import ImageResolver
from reconcilers.nginx_config import SITE_PORT
from reconcilers.swarm_spec import ServiceSpec, apply_service, nanoseconds, spec_hash, with_hash_label
from reconcilers.tasks import ROLLBACK_STATES, TaskSummary, newest_task_problem, summarise_tasks
from specs.config import Settings
from specs.models import RESTART_REQUEST_ANNOTATION, HealthCheck, Site, parse_duration

SITE_MOUNT = "/site"
TMPFS_BYTES = 64 * 1024 * 1024
RESTART_DELAY_SECONDS = 5
RESTART_ATTEMPTS = 3
RESTART_WINDOW_SECONDS = 120
UPDATE_MONITOR_SECONDS = 10
# A cached picture older than this is read again before it is trusted for a single site.
CACHE_FRESH_SECONDS = 5.0
NOT_CONVERGED_REQUEUE_SECONDS = 2.0
FAILING_REQUEUE_SECONDS = 15.0

# Director 4.0 ran the first executable run.sh it found, with umask 007 so the edge can read what it writes.
RUN_SCRIPT = (
    "umask 007; "
    "for script in /site/run.sh /site/private/run.sh /site/public/run.sh; do "
    'if [ -x "$script" ]; then exec "$script"; fi; '
    "done; "
    "echo 'DIRECTOR: no executable run.sh in /site, /site/private or /site/public' >&2; exit 1"
)
RUN_COMMAND = 'umask 007; exec "$@"'
# The healthcheck runs inside the site's image: Director's base image has python3 and no curl.
HEALTH_PROBE = (
    "import sys, urllib.request; "
    f"urllib.request.urlopen('http://127.0.0.1:{SITE_PORT}' + sys.argv[1], timeout=float(sys.argv[2]))"
)


def _healthcheck(check: HealthCheck) -> dict[str, Any]:
    timeout = parse_duration(check.timeout)
    return {
        "Test": ["CMD", "python3", "-c", HEALTH_PROBE, check.path, str(timeout)],
        "Interval": nanoseconds(parse_duration(check.interval)),
        "Timeout": nanoseconds(timeout),
        "Retries": check.retries,
    }


def site_labels(settings: Settings, site: Site) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_INSTANCE: settings.instance,
        LABEL_SITE: site.name,
        LABEL_GENERATION: str(site.metadata.generation or 0),
    }


def _restart_label(site: Site) -> dict[str, str]:
    """The last restart asked for (RESTART_REQUEST_ANNOTATION): a new value changes the task template."""
    requested = site.metadata.annotations.get(RESTART_REQUEST_ANNOTATION)
    return {"io.director.restart-requested-at": requested[:64]} if requested else {}


def render_site_spec(settings: Settings, site: Site, image: str, uid: int, network_id: str) -> ServiceSpec:
    spec = site.spec
    command = ["sh", "-c", RUN_COMMAND, "sh", *spec.command] if spec.command else ["sh", "-c", RUN_SCRIPT]
    env = [f"PORT={SITE_PORT}", "HOST=0.0.0.0", *(f"{key}={val}" for key, val in sorted(spec.env.items()))]
    tmpfs = {"SizeBytes": TMPFS_BYTES, "Mode": 0o1777}
    container: dict[str, Any] = {
        "Image": image,
        "Command": command,
        "Env": env,
        "Dir": SITE_MOUNT,
        "User": f"{uid}:{uid}",
        "ReadOnly": True,
        "Init": True,
        "Mounts": [
            {"Type": "bind", "Source": str(settings.sites_dir / site.name), "Target": SITE_MOUNT},
            {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": tmpfs},
            {"Type": "tmpfs", "Target": "/run", "TmpfsOptions": tmpfs},
        ],
        "Labels": {k: v for k, v in site_labels(settings, site).items() if k != LABEL_GENERATION}
        | _restart_label(site),
        "StopGracePeriod": nanoseconds(10),
    }
    if spec.health_check is not None:
        container["Healthcheck"] = _healthcheck(spec.health_check)
    update = {
        "Parallelism": 1,
        "Order": "start-first",
        "FailureAction": "rollback",
        "Monitor": nanoseconds(UPDATE_MONITOR_SECONDS),
        "MaxFailureRatio": 0,
    }
    replicas = spec.replicas if spec.availability == "enabled" else 0
    return with_hash_label(
        {
            "Name": settings.service_name(site.name),
            "Labels": site_labels(settings, site),
            "TaskTemplate": {
                "ContainerSpec": container,
                "Resources": {
                    "Limits": {
                        "NanoCPUs": round(spec.resources.cpus * 1e9),
                        "MemoryBytes": spec.resources.memory_bytes,
                    }
                },
                "RestartPolicy": {
                    "Condition": "any",
                    "Delay": nanoseconds(RESTART_DELAY_SECONDS),
                    "MaxAttempts": RESTART_ATTEMPTS,
                    "Window": nanoseconds(RESTART_WINDOW_SECONDS),
                },
                "Networks": [{"Target": network_id}],
            },
            "Mode": {"Replicated": {"Replicas": replicas}},
            "UpdateConfig": update,
            "RollbackConfig": {**update, "FailureAction": "pause"},
            # No virtual IP: this kernel has no IPVS, and DNS round-robin needs none (DESIGN.md).
            "EndpointSpec": {"Mode": "dnsrr", "Ports": []},
        }
    )


class ForeignService(PermanentError):
    """A service has the name Director would give a site's, without this instance's labels."""


@dataclass
class _Live:
    service: dict[str, Any]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    read_at: float = 0.0


class SiteServices:
    """Reconciler for the Swarm services of dynamic sites."""

    name = "service"
    # The site's directory must exist, and its uid is what the service runs as.
    after: tuple[str, ...] = ("files",)

    def __init__(
        self,
        settings: Settings,
        client: docker.DockerClient,
        images: ImageResolver,
    ) -> None:
        self._settings = settings
        self._api: Any = client.api
        self._images = images
        self._live: dict[str, _Live] = {}
        # When the last observe listed every service: a site missing from it had none then.
        self._observed_at = float("-inf")
        # That absence is trusted until the next observe (one resync period) unless a Docker event about
        # the site distrusts it sooner: a resync of thousands of static sites outlasts CACHE_FRESH_SECONDS,
        # and must not turn into one list call per site.
        self._absence_trusted_seconds = max(CACHE_FRESH_SECONDS, float(settings.resync_seconds))
        self._distrusted: set[str] = set()
        # The spec hash last sent per site with the update state's start time then, and the hash Swarm
        # rolled back (see _refused_update).
        self._sent: dict[str, tuple[str, str]] = {}
        self._rolled_back: dict[str, str] = {}
        self._network_id: str | None = None

    def forget(self, name: str) -> None:
        """Distrust the cached picture of one site (a Docker event said it changed)."""
        self._live.pop(name, None)
        self._distrusted.add(name)

    async def observe(self) -> None:
        deadline = time.monotonic() + 60
        ours = instance_filter(self._settings.instance)
        services = await off_loop(deadline, self._api.services, filters=ours)
        tasks = await off_loop(deadline, self._api.tasks, filters=ours)
        at = time.monotonic()
        tasks_by_service: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            tasks_by_service.setdefault(task["ServiceID"], []).append(task)
        self._live = {
            service["Spec"]["Labels"][LABEL_SITE]: _Live(service, tasks_by_service.get(service["ID"], []), at)
            for service in services
            if LABEL_SITE in service["Spec"].get("Labels", {})
        }
        self._observed_at = at
        self._distrusted.clear()
        self._network_id = await off_loop(deadline, self._find_network_id)

    def owned_names(self) -> set[str]:
        return set(self._live)

    async def reconcile(self, site: Site, ctx: ReconcileContext) -> Outcome:
        if site.spec.type != "dynamic" or site.spec.availability == "disabled":
            reason = "the site is static" if site.spec.type != "dynamic" else "the site is disabled"
            return await self._remove(site.name, ctx, reason)
        uid = ctx.needs("files", "uid")
        assert isinstance(uid, int)
        image = await self._images.site_image(site.spec.image or "", ctx.deadline)
        if self._network_id is None:
            self._network_id = await off_loop(ctx.deadline, self._find_network_id)
        spec = render_site_spec(self._settings, site, image, uid, self._network_id)
        live = await self._read(site.name, ctx)
        if live is not None and not self._summary(live).converged and time.monotonic() - live.read_at > 0.5:
            # Unsettled: read it again rather than judge (or update) from a picture seconds old.
            self.forget(site.name)
            live = await self._read(site.name, ctx)
        refused = self._refused_update(site.name, spec, live)
        if refused is not None:
            return refused
        applied = await off_loop(ctx.deadline, apply_service, self._api, spec, live.service if live else None)
        if applied.result == "unchanged" and live is not None:
            generation = live.service["Spec"]["Labels"].get(LABEL_GENERATION, "?")
            message = f"service {spec['Name']} matches its spec (generation {generation})"
            step = Step("service", "unchanged", message)
        else:
            step = Step("service", applied.result, applied.message)
            self._sent[site.name] = (spec_hash(spec), _update_started_at(applied.live))
            tasks = await off_loop(ctx.deadline, self._api.tasks, filters={"service": applied.live["ID"]})
            live = _Live(applied.live, tasks, time.monotonic())
            self._live[site.name] = live
        return _outcome([step], self._summary(live))

    def _refused_update(self, name: str, spec: ServiceSpec, live: _Live | None) -> Outcome | None:
        """Swarm rolled this very spec back: sending it again would only fail the same way.

        Swarm keeps no trace of the spec it rolled back (PreviousSpec is emptied), so the hash of what
        was last sent is remembered here; after a restart the spec is tried once more, then refused.
        """
        update_status = (live.service.get("UpdateStatus") or {}) if live else {}
        if live is None or update_status.get("State") not in ROLLBACK_STATES:
            self._rolled_back.pop(name, None)
            return None
        sent = self._sent.get(name)
        # Only a rollback that started after the send is the sent spec's (not an older one still shown).
        if sent is not None and _update_started_at(live.service) != sent[1]:
            self._rolled_back[name] = sent[0]
            del self._sent[name]
        if self._rolled_back.get(name) != spec_hash(spec):
            return None
        cause = newest_task_problem(live.tasks)
        message = "Swarm rolled back this spec" + (f": {cause}" if cause else "")
        return Outcome(
            steps=[Step("service", "failed", message)],
            ready=False,
            message=message,
            requeue_after=FAILING_REQUEUE_SECONDS,
            status=self._summary(live).status(),
        )

    async def finalize(self, name: str, ctx: ReconcileContext) -> Outcome:
        return await self._remove(name, ctx, "the site no longer exists")

    async def _remove(self, name: str, ctx: ReconcileContext, reason: str) -> Outcome:
        try:
            live = await self._read(name, ctx)
        except ForeignService as foreign:
            return Outcome(steps=[Step("service", "skipped", f"{foreign}: left alone")])
        if live is None:
            return Outcome(steps=[Step("service", "unchanged", f"no service ({reason})")])
        await off_loop(ctx.deadline, self._remove_service, live.service["ID"])
        self._live.pop(name, None)
        service_name = live.service["Spec"]["Name"]
        return Outcome(steps=[Step("service", "deleted", f"removed service {service_name}: {reason}")])

    def _remove_service(self, service_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self._api.remove_service(service_id)

    async def _read(self, name: str, ctx: ReconcileContext) -> _Live | None:
        now = time.monotonic()
        if name not in self._distrusted:
            cached = self._live.get(name)
            if cached is not None and now - cached.read_at < CACHE_FRESH_SECONDS:
                return cached
            if cached is None and now - self._observed_at < self._absence_trusted_seconds:
                return None
        self._distrusted.discard(name)
        live = await off_loop(ctx.deadline, self._read_one, name)
        if live is None:
            self._live.pop(name, None)
        else:
            self._live[name] = live
        return live

    def _read_one(self, name: str) -> _Live | None:
        service_name = self._settings.service_name(name)
        listed = self._api.services(filters={"name": service_name})
        found = [service for service in listed if service["Spec"]["Name"] == service_name]
        if not found:
            return None
        service = found[0]
        labels = service["Spec"].get("Labels", {})
        if labels.get(LABEL_INSTANCE) != self._settings.instance or labels.get(LABEL_SITE) != name:
            raise ForeignService(f"a service named {service_name} exists that this Director did not create")
        tasks = self._api.tasks(filters={"service": service["ID"]})
        return _Live(service, tasks, time.monotonic())

    def _find_network_id(self) -> str:
        name = self._settings.network
        found = [net for net in self._api.networks(names=[name]) if net["Name"] == name]
        if not found:
            raise RuntimeError(f"network {name} does not exist yet (the platform reconciler makes it)")
        return str(found[0]["Id"])

    @staticmethod
    def _summary(live: _Live) -> TaskSummary:
        spec = live.service["Spec"]
        replicas = spec["Mode"].get("Replicated", {}).get("Replicas", 0)
        return summarise_tasks(
            live.tasks,
            desired=replicas,
            update_status=live.service.get("UpdateStatus"),
            template=spec["TaskTemplate"],
        )


def _update_started_at(service: dict[str, Any]) -> str:
    return str((service.get("UpdateStatus") or {}).get("StartedAt", ""))


def _outcome(steps: list[Step], summary: TaskSummary) -> Outcome:
    if summary.converged:
        return Outcome(steps=steps, ready=True, status=summary.status())
    if summary.problem:
        message = f"{summary.running}/{summary.desired} tasks running: {summary.problem}"
        requeue = FAILING_REQUEUE_SECONDS
    else:
        message = f"{summary.running}/{summary.desired} tasks running"
        if summary.update_state:
            message += f", update {summary.update_state}"
        requeue = NOT_CONVERGED_REQUEUE_SECONDS
    return Outcome(steps=steps, ready=False, message=message, requeue_after=requeue, status=summary.status())
