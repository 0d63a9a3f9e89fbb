"""The Docker-backed log source the API server is composed with, against the real Swarm."""

from __future__ import annotations

import threading
import time

import docker
import pytest
from docker.types import RestartPolicy

from reconcilers.service_logs import DockerServiceLogs

pytestmark = pytest.mark.swarm


def test_service_logs_tail_follow_and_a_missing_service(swarm, base_image, settings, test_labels):
    from docker_cleanup import INSTANCE_LABEL

    service = swarm.services.create(
        base_image,
        command=["sh", "-c", "echo one; echo two; echo three; sleep 300"],
        name=settings.service_name("talky"),
        labels={**test_labels, INSTANCE_LABEL: settings.instance},
        restart_policy=RestartPolicy(condition="none"),
    )
    source = DockerServiceLogs(settings, docker.from_env())
    try:
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = list(source.logs("talky", follow=False, tail=None))
            if len(lines) >= 3:
                break
            time.sleep(0.5)
        assert [line.strip() for line in lines] == ["one", "two", "three"]
        assert [line.strip() for line in source.logs("talky", follow=False, tail=1)] == ["three"]

        followed = source.logs("talky", follow=True, tail=2)
        assert [next(followed).strip(), next(followed).strip()] == ["two", "three"]
        followed.close()

        # A reader waiting for the next line of a quiet service, on another thread, gets the end at once.
        waiting = source.logs("talky", follow=True, tail=0)
        ended = threading.Event()
        reader = threading.Thread(target=lambda: (list(waiting), ended.set()), daemon=True)
        reader.start()
        assert not ended.wait(1.0), "a followed log of a quiet service ended by itself"
        waiting.close()
        assert ended.wait(30), "closing a followed log did not end the read waiting in it"

        with pytest.raises(LookupError):
            list(source.logs("no-such-site", follow=False, tail=None))
    finally:
        service.remove()
