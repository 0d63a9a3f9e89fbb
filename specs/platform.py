"""The Platform resource: one record, `edge`, for what every site stands on (the sites' network and the edge
Nginx on every node). Director writes its spec from its settings; the controller writes its status like any
other record's, so `dirctl get platform` says whether the edge is up, on which nodes, serving which routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import Field

from specs.models import API_VERSION, Condition, ConditionType, LastReconcile, Model, ObjectMeta, Resource

KIND_PLATFORM: Final = "Platform"
PLATFORM_NAME: Final = "edge"


class PlatformMeta(ObjectMeta):
    # The one platform record; "edge" is a reserved site name, so it can be no site's.
    name: Literal["edge"]


class PlatformSpec(Model):
    """What the edge is asked to be, as Director's settings say (informative: the settings decide)."""

    http_port: Annotated[int, Field(ge=1, le=65535, strict=True)] = 8080
    sites_domain: str = "sites.localhost"


class NodeTask(Model):
    """The edge's task on one node."""

    node: str
    state: str
    desired_state: str = ""
    message: str = ""
    since: datetime | None = None


class EdgeStatus(Model):
    """The platform reconciler's part of the platform's status: the network and the edge."""

    network: str = ""
    network_id: str | None = None
    service: str = ""
    # One task per node (a global service): running on how many of the nodes that should run it.
    running_nodes: int = 0
    desired_nodes: int = 0
    tasks: list[NodeTask] = Field(default_factory=list)
    # The revisions the edge on this node answers: of its own files, and of the routes the sites made.
    edge_revision: str | None = None
    routes_revision: str | None = None


class PlatformStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    platform: EdgeStatus | None = None
    last_reconcile: LastReconcile | None = None

    def condition(self, type_: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class Platform(Resource):
    api_version: Literal["director.io/v1"] = API_VERSION
    kind: Literal["Platform"] = KIND_PLATFORM
    metadata: PlatformMeta
    spec: PlatformSpec = Field(default_factory=PlatformSpec)
    status: PlatformStatus | None = None
