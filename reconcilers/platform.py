"""What every site stands on: the sites' overlay network and the edge Nginx (a global Swarm service).

Both are read from the shared Swarm cache and written through it; only the edge's reload (SIGHUP to its
containers), the probe of what it serves and the listing of every Director edge's published ports (the
ports the host firewall leaves open to sites, reconcilers/host_firewall.py) go to Docker and the edge
directly. The reconciler of the Platform record `edge`: its part of the platform's status says which nodes
run the edge and which revisions of its own files and of the sites' routes the edge here answers.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker

from controller.types import Outcome, PermanentError, ReconcileContext, Request, Step
from reconcilers import nginx_config
from reconcilers.docker_calls import (
    EDGE_ROLE,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_ROLE,
    off_loop,
    seconds_left,
)
from reconcilers.host_firewall import FirewallError, ensure_host_firewall
from reconcilers.images import ImageResolver
from reconcilers.isolation import DROPPED_CAPABILITIES, EDGE_CAPABILITIES, EDGE_LOG_DRIVER
from reconcilers.swarm_cache import UNSETTLED_READ_SECONDS, ForeignService, SwarmCache, SwarmService, is_owned
from reconcilers.swarm_spec import ServiceSpec, nanoseconds, with_hash_label
from reconcilers.tasks import TaskSummary, summarise_tasks
from specs.config import Settings
from specs.platform import KIND_PLATFORM, PLATFORM_NAME, EdgeStatus, NodeTask, Platform, PlatformMeta

PLATFORM = Request(KIND_PLATFORM, PLATFORM_NAME)
LABEL_MOUNTED = "io.director.edge.mounted"
# Puts the edge's route files back as the records' routes make them; the step saying what it did, if it did.
RoutesRepair = Callable[[float], Awaitable[Step | None]]
# How long the edge may take to answer the revision of its files: after a reload, and otherwise.
EDGE_RELOAD_CONFIRM_SECONDS = 5.0
EDGE_CHECK_SECONDS = 0.5


def mounted_directories(settings: Settings) -> str:
    """Which directories the edge's bind mounts name, as device and inode: a directory removed and made
    again is another one, which a running container does not see (it keeps the removed one)."""
    identities = []
    for path in (settings.edge_dir, settings.sites_dir, settings.edge_cache_dir):
        try:
            found = os.stat(path)
        except FileNotFoundError:
            identities.append("absent")
            continue
        identities.append(f"{found.st_dev}:{found.st_ino}")
    return ",".join(identities)


def render_edge_spec(
    settings: Settings, image: str, network_id: str, mounted: str | None = None
) -> ServiceSpec:
    """The edge service's whole spec; `mounted` (see mounted_directories) makes a new one, and so new
    containers, when a directory it mounts was replaced."""
    labels = {LABEL_MANAGED: "true", LABEL_INSTANCE: settings.instance, LABEL_ROLE: EDGE_ROLE}
    container_labels = labels | ({LABEL_MOUNTED: mounted} if mounted is not None else {})
    # Same path inside as outside: the files the host's `nginx -t` passed are the files the edge loads.
    mounts = [
        {"Type": "bind", "Source": str(path), "Target": str(path), "ReadOnly": True}
        for path in (settings.edge_dir, settings.sites_dir)
    ]
    # The one place the edge writes: the cached pages of the dynamic sites that ask for a cache.
    mounts.append(
        {
            "Type": "bind",
            "Source": str(settings.edge_cache_dir),
            "Target": str(settings.edge_cache_dir),
            "ReadOnly": False,
        }
    )
    update = {
        "Parallelism": 1,
        # Host-mode ports cannot be bound twice on one node: the old edge must stop before the new starts.
        "Order": "stop-first",
        "FailureAction": "rollback",
        "Monitor": nanoseconds(5),
        "MaxFailureRatio": 0,
    }
    return with_hash_label(
        {
            "Name": settings.edge_service,
            "Labels": labels,
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": image,
                    "Command": ["nginx", "-c", str(settings.edge_dir / nginx_config.MAIN_CONF)],
                    "Args": ["-g", "daemon off;"],
                    "Labels": container_labels,
                    "Mounts": mounts,
                    "StopGracePeriod": nanoseconds(10),
                    "CapabilityDrop": DROPPED_CAPABILITIES,
                    "CapabilityAdd": EDGE_CAPABILITIES,
                },
                "RestartPolicy": {"Condition": "any", "Delay": nanoseconds(5), "MaxAttempts": 0},
                "LogDriver": EDGE_LOG_DRIVER,
                "Networks": [{"Target": network_id}],
            },
            "Mode": {"Global": {}},
            "UpdateConfig": update,
            "RollbackConfig": {**update, "FailureAction": "pause"},
            "EndpointSpec": {
                "Mode": "dnsrr",
                "Ports": [
                    {
                        "Protocol": "tcp",
                        "TargetPort": 80,
                        "PublishedPort": settings.http_port,
                        "PublishMode": "host",
                    }
                ],
            },
        }
    )


def platform_record(settings: Settings) -> Platform:
    """The platform's one record as Director's settings describe it."""
    return Platform.model_validate(
        {
            "metadata": PlatformMeta(name=PLATFORM_NAME),
            "spec": {"httpPort": settings.http_port, "sitesDomain": settings.sites_domain},
        }
    )


class EdgePlatform:
    """Reconciler of the platform: the network, the edge's static Nginx files and the edge service."""

    name = "platform"
    after: tuple[str, ...] = ()

    def __init__(
        self,
        settings: Settings,
        client: docker.DockerClient,
        cache: SwarmCache,
        images: ImageResolver,
        templates_dir: Path = nginx_config.TEMPLATES_DIR,
        routes_repair: RoutesRepair | None = None,
    ) -> None:
        self._settings = settings
        # The sites' routes live in the same directory: put back with the edge's own files, and in its events.
        self._routes_repair = routes_repair
        # For the reload only (SIGHUP to the edge's containers); services and networks go through the cache.
        self._client = client
        self._cache = cache
        self._images = images
        self._templates = nginx_config.template_environment(templates_dir)
        self._layout = nginx_config.EdgeLayout(settings.edge_dir)

    async def observe(self) -> None:
        """Nothing to list in bulk: the platform is one record, read whole at each reconcile."""

    def owned_names(self) -> set[str]:
        # Never an orphan to finalize: the edge stays up whatever happens to the record.
        return set()

    async def finalize(self, name: str, ctx: ReconcileContext) -> Outcome:
        return Outcome(steps=[Step("edge", "skipped", "the edge and the network are left in place")])

    async def reconcile(self, platform: Platform, ctx: ReconcileContext) -> Outcome:
        outcome, network, edge = await self._converge(ctx)
        nodes = await self._cache.nodes(ctx.deadline)
        revisions = await asyncio.to_thread(self._served_revisions)
        outcome.status = _edge_status(self._settings, network, edge, nodes, revisions)
        return outcome

    def _served_revisions(self) -> dict[str, str]:
        try:
            return nginx_config.served_revisions(self._settings.http_port)
        except OSError:
            return {}

    async def _converge(self, ctx: ReconcileContext) -> tuple[Outcome, dict[str, Any], SwarmService | None]:
        network, network_step = await self._ensure_network(ctx.deadline)
        edges = await self._cache.edges(ctx.deadline)
        firewall_step = await off_loop(ctx.deadline, self._ensure_host_firewall, edges)
        files_step = await off_loop(ctx.deadline, self._ensure_edge_files, ctx.deadline)
        steps = [network_step, firewall_step, files_step]
        if self._routes_repair is not None:
            # Before the service: an edge started anew (its directory was replaced) loads the sites' routes.
            routes_step = await self._routes_repair(ctx.deadline)
            if routes_step is not None:
                steps.append(routes_step)
        image = await self._images.edge_image(ctx.deadline)
        mounted = await asyncio.to_thread(mounted_directories, self._settings)
        spec = render_edge_spec(self._settings, image, str(network["Id"]), mounted)
        service_step, applied = await self._ensure_edge_service(spec, ctx.deadline)
        edge: SwarmService | None = applied
        steps.append(service_step)
        reload: nginx_config.EdgeReload | None = None
        if files_step.result == "updated" and service_step.result == "unchanged":
            reload = await off_loop(ctx.deadline, nginx_config.reload_edge, self._client, self._settings)
            message = f"sent SIGHUP to {reload.containers} edge container(s)"
            steps.append(Step("edge-reload", "updated", message))
        outcome = _outcome(steps, _summary(edge))
        if firewall_step.result == "failed":
            # The edge may serve, but the host is open to its sites: not ready, and said so.
            return (
                replace(outcome, ready=False, message=firewall_step.message, requeue_after=30.0),
                network,
                edge,
            )
        if not outcome.ready and edge is not None and edge.age > UNSETTLED_READ_SECONDS:
            # Starting: its tasks move on between events, so judge it from a fresh reading.
            edge = await self._cache.read_service(spec["Name"], ctx.deadline)
            outcome = _outcome(steps, _summary(edge))
        if outcome.ready:
            wait = EDGE_CHECK_SECONDS if reload is None else EDGE_RELOAD_CONFIRM_SECONDS
            seconds = min(wait, seconds_left(ctx.deadline) / 2)
            served = await self._once_edge_serves_its_files(outcome, seconds, reload)
            if not served.ready:
                # Running by the picture, silent by the probe: the next reconcile asks Docker again.
                self._cache.forget_service(spec["Name"])
            return served, network, edge
        return outcome, network, edge

    async def _once_edge_serves_its_files(
        self, outcome: Outcome, seconds: float, reload: nginx_config.EdgeReload | None
    ) -> Outcome:
        """`outcome`, but not ready while the edge here does not answer the revision of its current files."""
        files = nginx_config.render_static_files(self._templates, self._settings)
        revision = nginx_config.edge_revision(files)
        served = await asyncio.to_thread(
            nginx_config.wait_until_served, self._settings, "edge", revision, seconds, self._client, reload
        )
        if served:
            return outcome
        return replace(
            outcome,
            ready=False,
            message=f"the edge has not loaded its configuration revision {revision} yet",
            requeue_after=1.0,
        )

    async def _ensure_network(self, deadline: float) -> tuple[dict[str, Any], Step]:
        name = self._settings.network
        network = await self._cache.network(deadline)
        created = False
        if network is None:
            network, created = await self._cache.create_network(
                deadline,
                driver="overlay",
                attachable=True,
                check_duplicate=True,
                labels={LABEL_MANAGED: "true", LABEL_INSTANCE: self._settings.instance},
            )
        if created:
            return network, Step("network", "created", f"created attachable overlay network {name}")
        if not network.get("Driver"):
            # Swarm names a new network's driver a moment after creating it: not known yet, not refused.
            self._cache.forget_network(name)
        elif network["Driver"] != "overlay" or not network.get("Attachable"):
            raise PermanentError(
                f"network {name} exists but is not an attachable overlay network "
                f"(driver {network['Driver']}); remove it so Director can create it"
            )
        return network, Step("network", "unchanged", f"overlay network {name} exists")

    def _ensure_host_firewall(self, edges: list[dict[str, Any]]) -> Step:
        """Sites' containers may not open connections to this host, but to its edges' published ports."""
        ports = {self._settings.http_port} | {
            int(port["PublishedPort"])
            for edge in edges
            for port in edge["Spec"].get("EndpointSpec", {}).get("Ports", [])
            if port.get("PublishedPort")
        }
        try:
            changed = ensure_host_firewall(ports)
        except FirewallError as error:
            return Step("host-firewall", "failed", f"sites could reach this host's ports: {error}")
        shown = ", ".join(str(port) for port in sorted(ports))
        if changed:
            message = f"installed the rules ({', '.join(changed)}) refusing sites' connections to this host"
            return Step("host-firewall", "updated", f"{message}, but to ports {shown} and DNS")
        return Step("host-firewall", "unchanged", f"sites may reach no port of this host but {shown} and DNS")

    def _ensure_edge_files(self, deadline: float) -> Step:
        settings = self._settings
        settings.sites_dir.mkdir(parents=True, exist_ok=True)
        # Only the edge (www-data) and each site's own uid go below this; nobody needs to list it.
        settings.sites_dir.chmod(0o711)
        settings.edge_dir.mkdir(parents=True, exist_ok=True)
        settings.edge_cache_dir.mkdir(parents=True, exist_ok=True)
        wanted = nginx_config.render_static_files(self._templates, settings)
        routes = settings.edge_dir / nginx_config.ROUTES_CONF
        # Without routes.conf nginx.conf cannot be validated: an empty one stands in for the check. It is put
        # in place only when nobody rebuilds the sites' routes right after (routes_repair); the repair
        # puts the real one, and until then no reload happens.
        placeholder = not routes.exists()
        if placeholder:
            wanted[nginx_config.ROUTES_CONF] = nginx_config.render_routes(self._templates, "", "", "")
        missing = sorted(name for name in wanted if not (settings.edge_dir / name).exists())
        stale = {
            name: text
            for name, text in wanted.items()
            if name in missing or (settings.edge_dir / name).read_text() != text
        }
        if not stale:
            return Step("edge-config", "unchanged", f"edge configuration in {settings.edge_dir} is current")
        installed = sorted(stale)
        if placeholder and self._routes_repair is not None:
            installed.remove(nginx_config.ROUTES_CONF)
        with nginx_config.edge_dir_lock(settings.edge_dir):
            try:
                staged = nginx_config.stage_and_validate(self._layout, stale, seconds_left(deadline))
            except nginx_config.NginxRejected as rejected:
                raise PermanentError(f"the edge's main configuration was refused: {rejected}") from None
            nginx_config.install_staged(self._layout, staged, installed)
        absent = f" (absent: {', '.join(missing)})" if missing else ""
        return Step("edge-config", "updated", f"wrote and validated {', '.join(installed)}{absent}")

    async def _ensure_edge_service(self, spec: ServiceSpec, deadline: float) -> tuple[Step, SwarmService]:
        live = await self._cache.service(spec["Name"], deadline)
        if live is not None and not is_owned(live.labels, spec["Labels"]):
            raise ForeignService(f"a service named {spec['Name']} exists that Director did not create")
        applied, edge = await self._cache.apply_service(spec, live, deadline)
        message = applied.message or f"edge service {spec['Name']} matches its spec"
        return Step("edge-service", applied.result, message), edge


def _summary(edge: SwarmService | None) -> TaskSummary:
    if edge is None:
        # Removed since it was applied: nothing runs, and the next reconcile creates it again.
        return summarise_tasks([], desired=None)
    return summarise_tasks(
        edge.tasks,
        desired=None,
        update_status=edge.service.get("UpdateStatus"),
        template=edge.service["Spec"]["TaskTemplate"],
    )


def _outcome(steps: list[Step], summary: TaskSummary) -> Outcome:
    ready = summary.running >= 1 and summary.running == summary.desired
    message = "" if ready else summary.problem or "the edge is starting"
    return Outcome(steps=steps, ready=ready, message=message, requeue_after=None if ready else 1.0)


def _edge_status(
    settings: Settings,
    network: dict[str, Any],
    edge: SwarmService | None,
    nodes: list[dict[str, Any]],
    revisions: dict[str, str],
) -> EdgeStatus:
    summary = _summary(edge)
    hostnames = {
        str(node.get("ID", "")): str(node.get("Description", {}).get("Hostname", "")) for node in nodes
    }
    # A global service keeps a history of tasks per node: the newest one says what runs there now.
    newest: dict[str, dict[str, Any]] = {}
    for task in edge.tasks if edge is not None else []:
        node = str(task.get("NodeID", ""))
        if node not in newest or task.get("UpdatedAt", "") > newest[node].get("UpdatedAt", ""):
            newest[node] = task
    per_node = [
        NodeTask(
            node=hostnames.get(node) or node[:12],
            state=str(task.get("Status", {}).get("State", "")),
            desired_state=str(task.get("DesiredState", "")),
            message=str(task.get("Status", {}).get("Err") or task.get("Status", {}).get("Message", "")),
            since=task.get("Status", {}).get("Timestamp"),
        )
        for node, task in sorted(newest.items())
    ]
    return EdgeStatus(
        network=settings.network,
        network_id=str(network.get("Id", ""))[:12] or None,
        service=settings.edge_service,
        running_nodes=summary.running,
        desired_nodes=summary.desired,
        tasks=per_node,
        edge_revision=revisions.get("edge"),
        routes_revision=revisions.get("routes"),
    )


async def wait_for_platform(platform: EdgePlatform, ctx: ReconcileContext, poll: float = 0.5) -> Outcome:
    """Reconcile the platform until the edge runs or the deadline passes (for start-up and tests)."""
    record = platform_record(platform._settings)
    while True:
        outcome = await platform.reconcile(record, ctx)
        if outcome.ready:
            return outcome
        await asyncio.sleep(min(poll, seconds_left(ctx.deadline)))
