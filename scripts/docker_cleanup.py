"""Find and remove the Docker objects of Director's test runs and of one Director instance, nothing else.

The Swarm is shared (other people's test runs, the demo), so removal always goes by label:
- a test's own objects carry `io.director.test=<run id>` plus the pid and start time of the process that
  made them; they are leftovers once that process is gone;
- objects Director's code makes for a test carry `io.director.instance=dt<6 chars>`; the test run registers
  each such instance in a file naming its process, written before any object of the instance exists.

Used by tests/conftest.py and by `make clean` (`python scripts/docker_cleanup.py --instance director`).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors

TEST_LABEL = "io.director.test"
TEST_PID_LABEL = "io.director.test.pid"
# The pid alone could have been reused by an unrelated process since an interrupted run.
TEST_PID_START_LABEL = "io.director.test.pid-start"
INSTANCE_LABEL = "io.director.instance"
MANAGED_LABEL = "io.director.managed"
TEST_INSTANCE_PATTERN = re.compile(r"^dt[a-z0-9]{6}$")
INSTANCE_REGISTRY = Path(tempfile.gettempdir()) / "director-test-instances"
NETWORK_REMOVAL_SECONDS = 30.0


def process_start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; the fields after the last ')' do not.
    return stat.rsplit(")", 1)[1].split()[19]


def owner_alive(pid: str | None, pid_start: str | None) -> bool:
    if pid is None or not pid.isdigit():
        # Not made through the test fixtures: nobody can tell whether its owner is done with it.
        return True
    start = process_start_ticks(int(pid))
    return start is not None and (not pid_start or pid_start == start)


def register_instance(instance: str, run_id: str, pid: str, pid_start: str) -> None:
    INSTANCE_REGISTRY.mkdir(parents=True, exist_ok=True)
    owner = {"run_id": run_id, "pid": pid, "pid_start": pid_start}
    (INSTANCE_REGISTRY / instance).write_text(json.dumps(owner))


def unregister_instance(instance: str) -> None:
    (INSTANCE_REGISTRY / instance).unlink(missing_ok=True)


def _instance_owner_alive(instance: str) -> bool:
    try:
        owner = json.loads((INSTANCE_REGISTRY / instance).read_text())
    except (OSError, ValueError):
        return False
    return owner_alive(str(owner.get("pid")), owner.get("pid_start"))


def remove_labelled(client: docker.DockerClient, label_filters: str | Sequence[str]) -> list[str]:
    """Remove every service, container, network, volume, config and secret matching all `label_filters`.

    Returns what it removed, as `kind name` strings. Objects another cleaner removed first are fine.
    """
    filters = {"label": [label_filters] if isinstance(label_filters, str) else list(label_filters)}
    removed: list[str] = []
    swarm_active = client.info()["Swarm"]["LocalNodeState"] == "active"
    if swarm_active:
        for service in client.services.list(filters=filters):
            _ignore_gone(service.remove)
            removed.append(f"service {service.name}")
    for container in client.containers.list(all=True, filters=filters, ignore_removed=True):
        _ignore_gone(functools.partial(container.remove, force=True))
        removed.append(f"container {container.name}")
    networks = client.networks.list(filters=filters)
    # A network stays in use until the removed services' tasks have stopped, which takes a moment.
    deadline = time.monotonic() + NETWORK_REMOVAL_SECONDS
    while networks:
        still_in_use = []
        for network in networks:
            try:
                network.remove()
                removed.append(f"network {network.name}")
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                if time.monotonic() > deadline:
                    raise
                still_in_use.append(network)
        networks = still_in_use
        if networks:
            time.sleep(0.5)
    for volume in client.volumes.list(filters=filters):
        _ignore_gone(functools.partial(volume.remove, force=True))
        removed.append(f"volume {volume.name}")
    if swarm_active:
        for config in client.configs.list(filters=filters):
            _ignore_gone(config.remove)
            removed.append(f"config {config.name}")
        for secret in client.secrets.list(filters=filters):
            _ignore_gone(secret.remove)
            removed.append(f"secret {secret.name}")
    return removed


def _ignore_gone(remove: Callable[[], Any]) -> None:
    try:
        remove()
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as error:
        # Swarm removes a removed service's containers itself: one may already be on its way out.
        if error.status_code != 409 or "already in progress" not in str(error):
            raise


def _label_sets(client: docker.DockerClient, key: str) -> list[dict[str, str]]:
    """The label sets of every object carrying label `key`, over all the kinds remove_labelled removes."""
    filters = {"label": key}
    label_sets: list[dict[str, str]] = []
    label_sets += [
        container.labels
        for container in client.containers.list(all=True, filters=filters, ignore_removed=True)
    ]
    label_sets += [network.attrs.get("Labels") or {} for network in client.networks.list(filters=filters)]
    label_sets += [volume.attrs.get("Labels") or {} for volume in client.volumes.list(filters=filters)]
    if client.info()["Swarm"]["LocalNodeState"] == "active":
        for collection in (client.services, client.configs, client.secrets):
            items = collection.list(filters=filters)
            label_sets += [item.attrs["Spec"].get("Labels") or {} for item in items]
    return label_sets


def remove_leftovers(
    client: docker.DockerClient, current_run_id: str | None = None, current_instances: Collection[str] = ()
) -> list[str]:
    """Remove what test runs whose process is gone left behind; never what a live run still uses."""
    removed: list[str] = []
    stale_runs = {
        labels[TEST_LABEL]
        for labels in _label_sets(client, TEST_LABEL)
        if labels[TEST_LABEL] != current_run_id
        and not owner_alive(labels.get(TEST_PID_LABEL), labels.get(TEST_PID_START_LABEL))
    }
    for run_id in sorted(stale_runs):
        removed += remove_labelled(client, f"{TEST_LABEL}={run_id}")
    test_instances = {
        labels[INSTANCE_LABEL]
        for labels in _label_sets(client, INSTANCE_LABEL)
        if TEST_INSTANCE_PATTERN.match(labels[INSTANCE_LABEL])
    }
    registered = {path.name for path in INSTANCE_REGISTRY.glob("dt*")}
    for instance in sorted(test_instances | registered):
        if instance in current_instances or _instance_owner_alive(instance):
            continue
        removed += remove_labelled(client, f"{INSTANCE_LABEL}={instance}")
        unregister_instance(instance)
    return removed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Remove leftovers of finished test runs and the Docker objects of one Director instance."
    )
    parser.add_argument(
        "--instance",
        action="append",
        default=[],
        help="also remove the objects labelled io.director.managed and io.director.instance=INSTANCE",
    )
    args = parser.parse_args(argv)
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        print(f"no Docker engine answers ({error}): nothing to remove", file=sys.stderr)
        return 0
    try:
        removed = remove_leftovers(client)
        for instance in args.instance:
            removed += remove_labelled(client, [MANAGED_LABEL, f"{INSTANCE_LABEL}={instance}"])
    finally:
        client.close()
    for item in removed:
        print(f"removed {item}")
    if not removed:
        print("no Director objects to remove")
    return 0


if __name__ == "__main__":
    sys.exit(main())
