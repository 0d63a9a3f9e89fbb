"""A dynamic site's Swarm service, rendered whole from its Site and kept so.

The world is read from the shared Swarm cache and written through it: observe() is its refresh, and a
reconcile of a converged site then reads nothing and writes nothing. A reconcile finding drift sends the
complete spec with the live version.
"""

from __future__ import annotations

import time
from typing import Any

from controller.types import Outcome, ReconcileContext, Step
from reconcilers.docker_calls import LABEL_GENERATION, LABEL_INSTANCE, LABEL_MANAGED, LABEL_SITE, off_loop
from reconcilers.images import ImageResolver
from reconcilers.isolation import DROPPED_CAPABILITIES, SITE_LOG_DRIVER, ULIMITS
from reconcilers.launcher import LAUNCHER_TARGET, install_launcher, launcher_host_path
from reconcilers.nginx_config import SITE_PORT
from reconcilers.swarm_cache import UNSETTLED_READ_SECONDS, ForeignService, SwarmCache, SwarmService, is_owned
from reconcilers.swarm_spec import ServiceSpec, nanoseconds, spec_hash, with_hash_label
from reconcilers.tasks import ROLLBACK_STATES, TaskSummary, newest_task_problem, summarise_tasks
from specs.config import Settings
from specs.models import RESTART_REQUEST_ANNOTATION, HealthCheck, Site, parse_duration

SITE_MOUNT = "/site"
TMPFS_BYTES = 64 * 1024 * 1024
RESTART_DELAY_SECONDS = 5
RESTART_ATTEMPTS = 3
RESTART_WINDOW_SECONDS = 120
UPDATE_MONITOR_SECONDS = 10
OBSERVE_SECONDS = 60.0
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
# How every process Director starts in a site's container begins: the no-new-privileges launcher, then a
# shell named by its path (the launcher does not search PATH).
LAUNCHED_SHELL = [LAUNCHER_TARGET, "/bin/sh", "-c"]
# The healthcheck runs inside the site's image: Director's base image has python3 and no curl.
HEALTH_PROBE = (
    "import sys, urllib.request; "
    f"urllib.request.urlopen('http://127.0.0.1:{SITE_PORT}' + sys.argv[1], timeout=float(sys.argv[2]))"
)


def _healthcheck(check: HealthCheck) -> dict[str, Any]:
    timeout = parse_duration(check.timeout)
    return {
        # Docker starts it beside the site's processes, not under the launcher: it goes through it too (a
        # site's own image may carry a setuid python3).
        "Test": ["CMD", *LAUNCHED_SHELL, 'exec python3 -c "$0" "$@"', HEALTH_PROBE, check.path, str(timeout)],
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
    shell = LAUNCHED_SHELL
    command = [*shell, RUN_COMMAND, "sh", *spec.command] if spec.command else [*shell, RUN_SCRIPT]
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
        "CapabilityDrop": DROPPED_CAPABILITIES,
        "Ulimits": ULIMITS,
        "Mounts": [
            {"Type": "bind", "Source": str(settings.sites_dir / site.name), "Target": SITE_MOUNT},
            {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": tmpfs},
            {"Type": "tmpfs", "Target": "/run", "TmpfsOptions": tmpfs},
            {
                "Type": "bind",
                "Source": str(launcher_host_path(settings.state_dir)),
                "Target": LAUNCHER_TARGET,
                "ReadOnly": True,
            },
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
                        "Pids": spec.resources.pids,
                    }
                },
                "LogDriver": SITE_LOG_DRIVER,
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


class SiteServices:
    """Reconciler for the Swarm services of dynamic sites."""

    name = "service"
    # The site's directory must exist, and its uid is what the service runs as.
    after: tuple[str, ...] = ("files",)

    def __init__(
        self,
        settings: Settings,
        cache: SwarmCache,
        images: ImageResolver,
    ) -> None:
        self._settings = settings
        self._cache = cache
        self._images = images
        # The spec hash last sent per site with the update state's start time then, and the hash Swarm
        # rolled back (see _refused_update).
        self._sent: dict[str, tuple[str, str]] = {}
        self._rolled_back: dict[str, str] = {}
        # Checked once, and again at each resync: a task finding no launcher would not start at all.
        self._launcher_checked = False

    async def observe(self) -> None:
        self._launcher_checked = False
        await self._cache.refresh(time.monotonic() + OBSERVE_SECONDS)

    def owned_names(self) -> set[str]:
        return {
            service.labels[LABEL_SITE]
            for service in self._cache.services()
            if LABEL_SITE in service.labels and service.labels.get(LABEL_INSTANCE) == self._settings.instance
        }

    async def reconcile(self, site: Site, ctx: ReconcileContext) -> Outcome:
        if site.spec.type != "dynamic" or site.spec.availability == "disabled":
            reason = "the site is static" if site.spec.type != "dynamic" else "the site is disabled"
            return await self._remove(site.name, ctx, reason)
        uid = ctx.needs("files", "uid")
        assert isinstance(uid, int)
        image = await self._images.site_image(site.spec.image or "", ctx.deadline)
        network = await self._cache.network(ctx.deadline)
        if network is None:
            raise RuntimeError(
                f"network {self._settings.network} does not exist yet (the platform reconciler makes it)"
            )
        if not self._launcher_checked:
            await off_loop(ctx.deadline, install_launcher, launcher_host_path(self._settings.state_dir))
            self._launcher_checked = True
        spec = render_site_spec(self._settings, site, image, uid, str(network["Id"]))
        live = await self._read(site.name, ctx)
        if live is not None and not self._summary(live).converged and live.age > UNSETTLED_READ_SECONDS:
            # Unsettled: read it again rather than judge (or update) from a picture seconds old.
            live = self._owned(site.name, await self._cache.read_service(live.name, ctx.deadline))
        refused = self._refused_update(site.name, spec, live)
        if refused is not None:
            return refused
        applied, live = await self._cache.apply_service(spec, live, ctx.deadline)
        if applied.result == "unchanged":
            generation = live.service["Spec"]["Labels"].get(LABEL_GENERATION, "?")
            message = f"service {spec['Name']} matches its spec (generation {generation})"
            step = Step("service", "unchanged", message)
        else:
            step = Step("service", applied.result, applied.message)
            self._sent[site.name] = (spec_hash(spec), _update_started_at(applied.live))
        return _outcome([step], self._summary(live))

    def _refused_update(self, name: str, spec: ServiceSpec, live: SwarmService | None) -> Outcome | None:
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
        await self._cache.remove_service(live, ctx.deadline)
        return Outcome(steps=[Step("service", "deleted", f"removed service {live.name}: {reason}")])

    async def _read(self, name: str, ctx: ReconcileContext) -> SwarmService | None:
        found = await self._cache.service(self._settings.service_name(name), ctx.deadline)
        return self._owned(name, found)

    def _owned(self, name: str, found: SwarmService | None) -> SwarmService | None:
        ours = {LABEL_INSTANCE: self._settings.instance, LABEL_SITE: name}
        if found is not None and not is_owned(found.labels, ours):
            raise ForeignService(f"a service named {found.name} exists that this Director did not create")
        return found

    @staticmethod
    def _summary(live: SwarmService) -> TaskSummary:
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
