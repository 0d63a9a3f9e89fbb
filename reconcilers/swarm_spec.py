"""Whole-spec apply of a Swarm service: hash what was rendered, find drift, send it complete with its version.

Partial updates are how the anchors lost fields (DESIGN.md, pitfalls): here a service spec is always rendered
in full from the desired state and sent whole with the live version index.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import docker
import docker.errors
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random

from reconcilers.docker_calls import LABEL_GENERATION, LABEL_SPEC_HASH

ServiceSpec = dict[str, Any]
UPDATE_ATTEMPTS = 5
# Labels whose change alone must not redeploy: the generation moves with every spec edit, even a domain.
_LABELS_IGNORED_FOR_DRIFT = frozenset({LABEL_GENERATION})


def nanoseconds(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def spec_hash(spec: ServiceSpec) -> str:
    """A hash of everything that matters in a rendered spec (its own hash and generation labels excluded)."""
    labels = {
        key: value
        for key, value in spec.get("Labels", {}).items()
        if key not in (LABEL_SPEC_HASH, LABEL_GENERATION)
    }
    canonical = json.dumps({**spec, "Labels": labels}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def with_hash_label(spec: ServiceSpec) -> ServiceSpec:
    return {**spec, "Labels": {**spec["Labels"], LABEL_SPEC_HASH: spec_hash(spec)}}


def _is_empty(value: Any) -> bool:
    return value in (None, {}, [], "", 0, False)


def drift(rendered: Any, live: Any, path: str = "") -> list[str]:
    """Where the live spec differs from the rendered one, read through the rendered spec's shape.

    Docker fills in defaults the renderer never set (Isolation, ForceUpdate, empty Reservations...), so only
    the keys the renderer wrote are compared; an absent live value equals an empty rendered one. Labels are
    compared whole, so a label someone added by hand counts as drift too.
    """
    if isinstance(rendered, dict):
        if not isinstance(live, dict):
            return [] if _is_empty(rendered) and _is_empty(live) else [path or "/"]
        if path.endswith("Labels"):
            wanted = {k: v for k, v in rendered.items() if k not in _LABELS_IGNORED_FOR_DRIFT}
            found = {k: v for k, v in live.items() if k not in _LABELS_IGNORED_FOR_DRIFT}
            return [] if wanted == found else [path]
        found_paths: list[str] = []
        for key, value in rendered.items():
            found_paths += drift(value, live.get(key), f"{path}.{key}" if path else key)
        return found_paths
    if isinstance(rendered, list):
        live_list = live if isinstance(live, list) else []
        if len(rendered) != len(live_list):
            return [path]
        return [path] if any(drift(r, li, path) for r, li in zip(rendered, live_list, strict=True)) else []
    if live is None and _is_empty(rendered):
        return []
    return [] if rendered == live else [path]


ApplyResult = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class Applied:
    result: ApplyResult
    message: str
    live: dict[str, Any]


def _is_out_of_sequence(error: BaseException) -> bool:
    return isinstance(error, docker.errors.APIError) and "out of sequence" in str(error)


def _service_keywords(spec: ServiceSpec) -> dict[str, Any]:
    """docker-py's keywords for all of `spec` but its task template: creating and updating send the same."""
    return {
        "name": spec["Name"],
        "labels": spec["Labels"],
        "mode": spec["Mode"],
        "update_config": spec["UpdateConfig"],
        "rollback_config": spec["RollbackConfig"],
        "endpoint_spec": spec["EndpointSpec"],
    }


def _create(api: Any, spec: ServiceSpec) -> str:
    created = api.create_service(spec["TaskTemplate"], **_service_keywords(spec))
    return str(created["ID"])


def _update_whole(api: Any, service_id: str, spec: ServiceSpec) -> None:
    # The version is read again on every attempt: Swarm bumps it itself while a rolling update runs.
    version = api.inspect_service(service_id)["Version"]["Index"]
    api.update_service(
        service_id,
        version,
        task_template=spec["TaskTemplate"],
        fetch_current_spec=False,
        **_service_keywords(spec),
    )


def apply_service(api: Any, spec: ServiceSpec, live: dict[str, Any] | None) -> Applied:
    """Create the service, or update it whole when its live spec drifted from `spec`. Blocking."""
    if live is None:
        service_id = _create(api, spec)
        # Said whole, because a re-creation is a repair: the service was removed behind Director's back.
        message = f"no service {spec['Name']} found: created it"
        return Applied("created", message, api.inspect_service(service_id))
    differences = drift(spec, live["Spec"])
    if not differences:
        return Applied("unchanged", "", live)
    for attempt in Retrying(
        retry=retry_if_exception(_is_out_of_sequence),
        stop=stop_after_attempt(UPDATE_ATTEMPTS),
        wait=wait_random(0.05, 0.3),
        reraise=True,
    ):
        with attempt:
            _update_whole(api, live["ID"], spec)
    message = f"service {spec['Name']} differed in {', '.join(differences)}: sent the whole spec"
    return Applied("updated", message, api.inspect_service(live["ID"]))
