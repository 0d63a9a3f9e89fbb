"""The one Docker client factory."""

from __future__ import annotations

import pytest
from docker.transport import unixconn

from reconcilers.docker_calls import make_client

pytestmark = pytest.mark.swarm


def test_calls_about_many_services_share_one_connection_to_dockerd(monkeypatch):
    client = make_client()
    if not isinstance(getattr(client.api, "_custom_adapter", None), unixconn.UnixHTTPAdapter):
        pytest.skip("dockerd is not reached through a Unix socket here")
    connects = []
    connect = unixconn.UnixHTTPConnection.connect

    def counted(self: unixconn.UnixHTTPConnection) -> None:
        connects.append(self)
        connect(self)

    monkeypatch.setattr(unixconn.UnixHTTPConnection, "connect", counted)
    try:
        # One URL per service, as each site's reads are: docker-py pooled connections by the whole URL.
        for index in range(40):
            assert client.api.services(filters={"name": [f"no-such-service-{index}"]}) == []
    finally:
        client.close()
    assert len(connects) == 1
