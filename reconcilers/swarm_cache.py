"""One picture of this instance's Swarm objects, shared by every reconciler: its services (by name and by id)
with their tasks, the sites' network, and the nodes.

A bulk refresh (the resync's observe) lists services, tasks and the network in three calls. Between two
refreshes Docker's event stream keeps the picture current: an event about a service, a container, the
network or a node marks what it concerns stale, and the next read of a stale entry reads just that one again
(inspect and its tasks). The reconcilers write through here, so the picture holds what Docker answered at
once. The stream is lossy (DESIGN.md, pitfalls): when it breaks or reconnects nothing is trusted, and the
next read lists everything again; an absence believed wrongly shows as a create answered 409 "already
exists", and that service is read and updated instead. The refresh stays the truth: a change it finds that
no event told of is passed to the watchers, so that what it concerns is looked at.

Which answer is newer is decided by a logical clock read when a call begins: a read or a write started after
a listing began wins over the listing, and a mark made while a read was under way outlives that read. State
changes on the event loop's thread only; the Docker calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import docker
import docker.errors

from controller.types import PermanentError
from reconcilers.docker_calls import (
    EDGE_ROLE,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_ROLE,
    LABEL_SITE,
    DeadlineExceeded,
    instance_filter,
    off_loop,
    seconds_left,
)
from reconcilers.swarm_spec import Applied, ServiceSpec, apply_service
from specs.config import Settings

log = logging.getLogger(__name__)

EntryKind = Literal["service", "network", "nodes", "edges"]
# What one stale mark, one read or one write is about: ("service", name), ("network", name), ("nodes", ""),
# ("edges", "").
Entry = tuple[EntryKind, str]
NODES: Entry = ("nodes", "")
# Every Director edge on the Swarm, whatever its instance.
EDGES: Entry = ("edges", "")
# What no listing covers: only their own read speaks for them.
UNLISTED = (NODES, EDGES)
# The labels saying whose a service is: one Director would name so, but labelled otherwise, is someone else's.
OWNER_LABELS = (LABEL_INSTANCE, LABEL_SITE)
HTTP_CONFLICT = 409
# A service still converging is judged (and updated) from a picture at most this old, whatever the events
# said: its tasks move on between them, and on other nodes without any event this node sees.
UNSETTLED_READ_SECONDS = 0.5


class ForeignService(PermanentError):
    """A service has the name Director would give one of its own, without this instance's labels."""


def is_owned(found: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Whether a service labelled `found` belongs where a spec labelled `wanted` says it should."""
    return all(found.get(label) == wanted.get(label) for label in OWNER_LABELS)


@dataclass(frozen=True)
class SwarmService:
    """A service as Docker last described it, its tasks, and when that was read (time.monotonic())."""

    service: dict[str, Any]
    tasks: list[dict[str, Any]]
    read_at: float

    @property
    def id(self) -> str:
        return str(self.service["ID"])

    @property
    def name(self) -> str:
        return str(self.service["Spec"]["Name"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.service["Spec"].get("Labels") or {})

    @property
    def age(self) -> float:
        return time.monotonic() - self.read_at


def _task_states(tasks: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (task["ID"], task.get("DesiredState", ""), task.get("Status", {}).get("State", "")) for task in tasks
    }


def _service_changed(old: SwarmService | None, new: SwarmService | None) -> bool:
    if old is None or new is None:
        return old is not new
    if old.service.get("Version") != new.service.get("Version"):
        return True
    return _task_states(old.tasks) != _task_states(new.tasks)


class SwarmCache:
    """Services, tasks, the network and nodes of one Director instance, as Docker last told them."""

    def __init__(self, settings: Settings, client: docker.DockerClient) -> None:
        self._settings = settings
        self._api: Any = client.api
        self._services: dict[str, SwarmService] = {}
        self._names_by_id: dict[str, str] = {}
        self._networks: dict[str, dict[str, Any]] = {}
        # What the unlisted entries (UNLISTED) were when last read.
        self._unlisted: dict[Entry, list[dict[str, Any]]] = {}
        self._clock = itertools.count(1)
        # When the last complete listing began (0: none yet), and its wall-clock time for the event stream.
        self._listed = 0
        self._listed_wall = 0.0
        self._distrusted = 0
        self._stale: dict[Entry, int] = {}
        # When the last read or write of an entry began, for those read or written since the last listing.
        self._read: dict[Entry, int] = {}
        self._listing: asyncio.Future[None] | None = None
        # Services asked to be read, each with its waiting readers, for the next batch; the latest deadline
        # among them; the task reading the batches.
        self._wanted: dict[str, list[asyncio.Future[SwarmService | None]]] = {}
        self._wanted_until = 0.0
        self._reader: asyncio.Future[None] | None = None
        self._watchers: list[Callable[[Entry], None]] = []
        # Complete listings so far (tests and benchmarks count them).
        self.listings = 0

    # -- what the event stream says ----------------------------------------------------------------

    def forget_service(self, name: str) -> None:
        """An event said this service (or one of its containers) changed: read it again before trusting it."""
        self._stale[("service", name)] = next(self._clock)

    def forget_service_id(self, service_id: str) -> None:
        name = self._names_by_id.get(service_id)
        if name is not None:
            self.forget_service(name)

    def forget_network(self, name: str) -> None:
        self._stale[("network", name)] = next(self._clock)

    def forget_nodes(self) -> None:
        self._stale[NODES] = next(self._clock)

    def forget_edges(self) -> None:
        """An event told of a service named like an edge, of this instance or another."""
        self._stale[EDGES] = next(self._clock)

    def distrust_all(self) -> None:
        """Events may have been lost (the stream broke, dockerd restarted): trust nothing until a listing."""
        self._distrusted = next(self._clock)

    def trusted_since(self) -> float | None:
        """The wall-clock time the trusted listing began (events must be followed from there), or None."""
        return self._listed_wall if self._listing_trusted() else None

    def is_trusted(self, kind: EntryKind, name: str = "") -> bool:
        """Whether a read of this entry would be answered from the picture, without asking Docker."""
        return self._trusted((kind, name))

    def watch(self, changed: Callable[[Entry], None]) -> Callable[[], None]:
        """Call `changed` for each change a listing finds that no event told of; returns the way to stop."""
        self._watchers.append(changed)
        return lambda: self._watchers.remove(changed)

    # -- reads ---------------------------------------------------------------------------------------

    def services(self) -> list[SwarmService]:
        """The services as last listed or read, trusted or not (e.g. to find sites left without a record)."""
        return list(self._services.values())

    async def service(self, name: str, deadline: float) -> SwarmService | None:
        """The service named `name` with its tasks, or None when there is none: from the picture when it is
        trusted, else read (the whole listing when nothing is trusted, else this service alone)."""
        entry: Entry = ("service", name)
        if not self._trusted(entry) and not self._listing_trusted():
            await self.refresh(deadline)
        if self._trusted(entry):
            return self._services.get(name)
        return await self.read_service(name, deadline)

    async def read_service(self, name: str, deadline: float) -> SwarmService | None:
        """Ask Docker for this service and its tasks, whatever the picture says: two calls, shared with the
        reads asked for while the previous ones were under way (a burst of sites starting polls its services
        in a few calls, not two per site and poll)."""
        future: asyncio.Future[SwarmService | None] = asyncio.get_running_loop().create_future()
        # Read, so that a batch failing after its caller gave up is not reported as an error never seen.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._wanted.setdefault(name, []).append(future)
        self._wanted_until = max(self._wanted_until, deadline)
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read_batches())
        try:
            # Shielded: one reader giving up at its deadline must not cancel the batch others wait on.
            return await asyncio.wait_for(asyncio.shield(future), seconds_left(deadline))
        except TimeoutError:
            raise DeadlineExceeded(f"service {name} was not read before the reconcile deadline") from None

    async def network(self, deadline: float) -> dict[str, Any] | None:
        """The sites' network (settings.network) as Docker describes it, or None when it does not exist."""
        name = self._settings.network
        entry: Entry = ("network", name)
        if not self._trusted(entry) and not self._listing_trusted():
            await self.refresh(deadline)
        if self._trusted(entry):
            return self._networks.get(name)
        began = next(self._clock)
        found = await off_loop(deadline, self._find_network)
        self._settle(entry, began, lambda: self._put_network(name, found))
        return found

    async def nodes(self, deadline: float) -> list[dict[str, Any]]:
        """The Swarm's nodes: listed when first asked for and again after a node event, not by the refresh."""
        return await self._read_unlisted(NODES, deadline, self._api.nodes)

    async def edges(self, deadline: float) -> list[dict[str, Any]]:
        """Every Director edge service on the Swarm, of any instance (the host's firewall lets sites reach
        all their published ports): listed when first asked for and again after an event about a service
        named like an edge, not by the refresh, so a resync does not pay a call for them."""
        ours = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_ROLE}={EDGE_ROLE}"]}
        return await self._read_unlisted(EDGES, deadline, lambda: self._api.services(filters=ours))

    async def _read_unlisted(
        self, entry: Entry, deadline: float, read: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        if self._trusted(entry):
            return list(self._unlisted.get(entry, []))
        began = next(self._clock)
        found = await off_loop(deadline, read)

        def put() -> None:
            self._unlisted[entry] = list(found)

        self._settle(entry, began, put)
        return list(found)

    async def refresh(self, deadline: float) -> None:
        """List services, tasks and the network (three calls), unless a listing begun since this call was
        made has completed meanwhile: callers asking at once share one."""
        asked = next(self._clock)
        while self._listed < asked:
            if self._listing is None:
                self._listing = asyncio.ensure_future(self._list_all(deadline))
                self._listing.add_done_callback(self._listing_done)
            # Shielded: one reader giving up at its deadline must not cancel the listing others wait on.
            await asyncio.shield(self._listing)

    # -- writes (through the one client, stored from Docker's answer) ------------------------------

    async def apply_service(
        self, spec: ServiceSpec, live: SwarmService | None, deadline: float
    ) -> tuple[Applied, SwarmService]:
        """Create the service or update it whole when it drifted from `spec` (swarm_spec.apply_service).

        A create answered 409 means the service exists though the picture had none (events lost while
        dockerd restarted...): it is read, and updated instead when it is this instance's.
        """
        name = spec["Name"]
        began = next(self._clock)
        try:
            applied, found = await off_loop(deadline, self._apply, spec, live)
        except BaseException:
            # Whatever Docker did before the failure or the deadline, what it holds now is unknown here.
            self.forget_service(name)
            raise
        if found is None:
            assert live is not None, "apply_service reads what it did not know"
            return applied, live
        self._settle(("service", name), began, lambda: self._put_service(name, found))
        return applied, found

    async def remove_service(self, service: SwarmService, deadline: float) -> None:
        began = next(self._clock)
        try:
            await off_loop(deadline, self._remove, service.id)
        except BaseException:
            self.forget_service(service.name)
            raise
        self._settle(("service", service.name), began, lambda: self._put_service(service.name, None))

    async def create_network(self, deadline: float, **options: Any) -> tuple[dict[str, Any], bool]:
        """Create the sites' network with docker-py's `options`; the network and whether it was created (a
        409 means it exists though the picture had none: then it is read and returned as found)."""
        name = self._settings.network
        began = next(self._clock)
        try:
            network, created = await off_loop(deadline, self._create_network, options)
        except BaseException:
            self.forget_network(name)
            raise
        self._settle(("network", name), began, lambda: self._put_network(name, network))
        return network, created

    # -- the picture's bookkeeping -------------------------------------------------------------------

    def _listing_trusted(self) -> bool:
        return self._listed > self._distrusted

    def _trusted(self, entry: Entry) -> bool:
        listed = 0 if entry in UNLISTED else self._listed
        basis = max(self._read.get(entry, 0), listed)
        return basis > self._distrusted and basis > self._stale.get(entry, 0)

    def _settle(self, entry: Entry, began: int, put: Callable[[], None]) -> None:
        """Store an answer to a call that began at `began`, unless a newer answer is already stored."""
        listed = 0 if entry in UNLISTED else self._listed
        if self._read.get(entry, 0) < began and listed < began:
            put()
            self._read[entry] = began

    def _put_service(self, name: str, found: SwarmService | None) -> None:
        old = self._services.pop(name, None)
        if old is not None:
            self._names_by_id.pop(old.id, None)
        if found is not None:
            self._services[name] = found
            self._names_by_id[found.id] = name

    def _put_network(self, name: str, found: dict[str, Any] | None) -> None:
        if found is None:
            self._networks.pop(name, None)
        else:
            self._networks[name] = found

    def _unmarked(self, entry: Entry) -> bool:
        """No event marked this entry since its picture was taken: a change found now is one no event told."""
        basis = max(self._read.get(entry, 0), self._listed)
        return basis > 0 and self._stale.get(entry, 0) < basis

    async def _list_all(self, deadline: float) -> None:
        began = next(self._clock)
        wall = time.time()
        ours = instance_filter(self._settings.instance)
        services, tasks, networks = await asyncio.gather(
            off_loop(deadline, self._api.services, filters=ours),
            off_loop(deadline, self._api.tasks, filters=ours),
            off_loop(deadline, self._api.networks, names=[self._settings.network]),
        )
        at = time.monotonic()
        tasks_by_service: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            tasks_by_service.setdefault(task["ServiceID"], []).append(task)
        listed = {
            service["Spec"]["Name"]: SwarmService(service, tasks_by_service.get(service["ID"], []), at)
            for service in services
        }
        missed: list[Entry] = []
        for name in sorted(self._services.keys() | listed.keys()):
            entry: Entry = ("service", name)
            if self._read.get(entry, 0) > began:
                continue
            if self._unmarked(entry) and _service_changed(self._services.get(name), listed.get(name)):
                missed.append(entry)
            self._put_service(name, listed.get(name))
        network_name = self._settings.network
        network_entry: Entry = ("network", network_name)
        network = next((net for net in networks if net["Name"] == network_name), None)
        if self._read.get(network_entry, 0) < began:
            old = self._networks.get(network_name)
            if self._unmarked(network_entry) and (old or {}).get("Id") != (network or {}).get("Id"):
                missed.append(network_entry)
            self._put_network(network_name, network)
        self._listed = began
        self._listed_wall = wall
        self.listings += 1
        # Marks and reads older than the listing say nothing it does not: dropped, so the maps stay small.
        self._stale = {entry: at_ for entry, at_ in self._stale.items() if at_ > began or entry in UNLISTED}
        self._read = {entry: at_ for entry, at_ in self._read.items() if at_ > began or entry in UNLISTED}
        for entry in missed:
            for changed in list(self._watchers):
                changed(entry)

    async def _read_batches(self) -> None:
        """Read the services asked for, in batches: those asked while a batch is under way form the next."""
        batch: dict[str, list[asyncio.Future[SwarmService | None]]] = {}
        try:
            while self._wanted:
                batch, self._wanted = self._wanted, {}
                deadline, self._wanted_until = self._wanted_until, 0.0
                # Begun after every read of the batch was asked for: newer than any mark made before that.
                began = next(self._clock)
                try:
                    found = await off_loop(deadline, self._inspect_many, sorted(batch))
                except Exception as error:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(error)
                    continue
                for name, futures in batch.items():
                    service = found.get(name)
                    self._settle(("service", name), began, partial(self._put_service, name, service))
                    for future in futures:
                        if not future.done():
                            future.set_result(service)
        finally:
            self._reader = None
            # Cancelled (the loop is closing): nobody is left waiting for a batch that will not come.
            for futures in [*batch.values(), *self._wanted.values()]:
                for future in futures:
                    future.cancel()
            self._wanted = {}

    def _listing_done(self, listing: asyncio.Future[None]) -> None:
        if self._listing is listing:
            self._listing = None
        if not listing.cancelled():
            # Raised to every reader that waited; read here too so that none waiting is not an error logged.
            listing.exception()

    # -- blocking calls, in worker threads ---------------------------------------------------------

    def _inspect(self, name: str) -> SwarmService | None:
        try:
            service = self._api.inspect_service(name)
        except docker.errors.NotFound:
            return None
        # Docker also looks a name up as an id prefix: only the service of that very name is it.
        if service["Spec"]["Name"] != name:
            return None
        tasks = self._api.tasks(filters={"service": service["ID"]})
        return SwarmService(service, tasks, time.monotonic())

    def _inspect_many(self, names: list[str]) -> dict[str, SwarmService | None]:
        """Each of these services with its tasks (None when there is none), in two calls however many."""
        if len(names) == 1:
            return {names[0]: self._inspect(names[0])}
        wanted = set(names)
        # The name filter matches the beginnings of names: only services of those very names are kept.
        services = [
            service
            for service in self._api.services(filters={"name": names})
            if service["Spec"]["Name"] in wanted
        ]
        tasks: list[dict[str, Any]] = []
        if services:
            try:
                tasks = self._api.tasks(filters={"service": [service["ID"] for service in services]})
            except docker.errors.NotFound:
                # One of them was removed between the two calls, and Docker refuses the whole list for it.
                return {name: self._inspect(name) for name in names}
        at = time.monotonic()
        tasks_by_service: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            tasks_by_service.setdefault(task["ServiceID"], []).append(task)
        found: dict[str, SwarmService | None] = dict.fromkeys(names)
        for service in services:
            own_tasks = tasks_by_service.get(service["ID"], [])
            found[service["Spec"]["Name"]] = SwarmService(service, own_tasks, at)
        return found

    def _apply(self, spec: ServiceSpec, live: SwarmService | None) -> tuple[Applied, SwarmService | None]:
        """Applied, and the service as Docker now describes it (None when nothing was written or read)."""
        try:
            applied = apply_service(self._api, spec, live.service if live else None)
        except docker.errors.APIError as error:
            if live is not None or error.status_code != HTTP_CONFLICT:
                raise
            found = self._inspect(spec["Name"])
            if found is None:
                raise
            if not is_owned(found.labels, spec["Labels"]):
                raise ForeignService(
                    f"a service named {found.name} exists that this Director did not create"
                ) from None
            log.info("service %s exists though none was seen (Docker events were lost): adopted", found.name)
            applied = apply_service(self._api, spec, found.service)
            if applied.result == "unchanged":
                return applied, found
        if applied.result == "unchanged":
            return applied, None
        tasks = self._api.tasks(filters={"service": applied.live["ID"]})
        return applied, SwarmService(applied.live, tasks, time.monotonic())

    def _remove(self, service_id: str) -> None:
        # Gone already is what removing it was for.
        with contextlib.suppress(docker.errors.NotFound):
            self._api.remove_service(service_id)

    def _find_network(self) -> dict[str, Any] | None:
        name = self._settings.network
        # The names filter matches parts of names too.
        return next((net for net in self._api.networks(names=[name]) if net["Name"] == name), None)

    def _create_network(self, options: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        name = self._settings.network
        try:
            created = self._api.create_network(name, **options)
        except docker.errors.APIError as error:
            found = self._find_network() if error.status_code == HTTP_CONFLICT else None
            if found is None:
                raise
            return found, False
        return dict(self._api.inspect_network(created["Id"])), True
