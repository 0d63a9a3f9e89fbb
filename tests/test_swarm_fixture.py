"""The Swarm the other tests rely on does what DESIGN.md says: a dnsrr service on an overlay network is
answered by name from another container on that network (Swarm's virtual IPs carry no traffic here)."""

from __future__ import annotations

import secrets
import subprocess
import time

import docker
import pytest
from docker.types import EndpointSpec, RestartPolicy
from docker_cleanup import (
    INSTANCE_LABEL,
    TEST_LABEL,
    TEST_PID_LABEL,
    TEST_PID_START_LABEL,
    remove_labelled,
    remove_leftovers,
)

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

TASK_START_SECONDS = 60.0


def _wait_for_running_task(service: docker.models.services.Service) -> dict[str, object]:
    deadline = time.monotonic() + TASK_START_SECONDS
    states: list[str] = []
    while time.monotonic() < deadline:
        tasks = service.tasks()
        states = [task["Status"]["State"] for task in tasks]
        for task in tasks:
            if task["Status"]["State"] == "running":
                return dict(task)
            if task["Status"]["State"] in {"failed", "rejected"}:
                pytest.fail(f"task of {service.name} {task['Status']['State']}: {task['Status'].get('Err')}")
        time.sleep(0.25)
    pytest.fail(f"no task of {service.name} running after {TASK_START_SECONDS:.0f} s (task states: {states})")


def test_dnsrr_service_answers_by_name_on_overlay(swarm, base_image, test_labels, run_id):
    network = swarm.networks.create(f"dt-{run_id}-net", driver="overlay", attachable=True, labels=test_labels)
    service_name = f"dt-{run_id}-web"
    service = swarm.services.create(
        base_image,
        command=["python3", "-m", "http.server", "8000"],
        name=service_name,
        networks=[network.id],
        endpoint_spec=EndpointSpec(mode="dnsrr"),
        restart_policy=RestartPolicy(condition="none"),
        labels=test_labels,
        container_labels=test_labels,
    )
    try:
        task = _wait_for_running_task(service)
        assert task["DesiredState"] == "running"
        # The task can be running before its name is in Docker's DNS and before http.server listens.
        answer = swarm.containers.run(
            base_image,
            [
                "curl",
                "--silent",
                "--show-error",
                "--fail",
                "--max-time",
                "5",
                "--retry",
                "30",
                "--retry-delay",
                "1",
                "--retry-all-errors",
                f"http://{service_name}:8000/",
            ],
            network=network.name,
            labels=test_labels,
            remove=True,
        )
        assert b"Directory listing for /" in answer
    finally:
        removed = remove_labelled(swarm, f"{TEST_LABEL}={run_id}")
    assert f"service {service_name}" in removed
    assert f"network {network.name}" in removed
    assert swarm.services.list(filters={"label": f"{TEST_LABEL}={run_id}"}) == []
    # The manager drops a removed overlay network from the node's list a moment after answering.
    deadline = time.monotonic() + 10
    while swarm.networks.list(filters={"label": f"{TEST_LABEL}={run_id}"}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert swarm.networks.list(filters={"label": f"{TEST_LABEL}={run_id}"}) == []


def test_leftovers_of_dead_runs_go_and_live_runs_stay(swarm, test_labels, run_id):
    dead_child = subprocess.Popen(["true"])
    dead_child.wait()
    dead_labels = {
        TEST_LABEL: f"{run_id}dead",
        TEST_PID_LABEL: str(dead_child.pid),
        TEST_PID_START_LABEL: "1",
    }
    live_labels = {**test_labels, TEST_LABEL: f"{run_id}live"}
    unregistered_instance = f"dt{secrets.token_hex(3)}"
    dead = swarm.networks.create(f"dt-{run_id}-dead", driver="overlay", labels=dead_labels)
    live = swarm.networks.create(f"dt-{run_id}-live", driver="overlay", labels=live_labels)
    orphan = swarm.networks.create(
        f"{unregistered_instance}-sites", driver="overlay", labels={INSTANCE_LABEL: unregistered_instance}
    )
    try:
        removed = remove_leftovers(swarm, run_id, ())
        assert f"network {dead.name}" in removed
        assert f"network {orphan.name}" in removed
        assert f"network {live.name}" not in removed
        assert swarm.networks.get(live.id).name == live.name
    finally:
        remove_labelled(swarm, f"{TEST_LABEL}={run_id}live")
