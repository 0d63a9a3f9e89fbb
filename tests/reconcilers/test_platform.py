"""The platform reconciler on the real Swarm: network and edge created; a removed or edited edge repaired."""

from __future__ import annotations

import asyncio

import pytest
from docker_cleanup import remove_labelled
from reconciler_helpers import context, edge_settings, http_get

from reconcilers import nginx_config
from reconcilers.images import ImageResolver
from reconcilers.isolation import EDGE_CAPABILITIES
from reconcilers.platform import EdgePlatform, platform_record, wait_for_platform
from reconcilers.swarm_cache import SwarmCache
from specs.platform import EdgeStatus

pytestmark = [pytest.mark.swarm, pytest.mark.slow]


async def test_platform_creates_network_and_edge_then_repairs_them(
    swarm, base_image, test_run, tmp_path, monkeypatch
):
    settings = edge_settings(test_run, tmp_path, base_image)
    cache = SwarmCache(settings, swarm)
    platform = EdgePlatform(settings, swarm, cache, ImageResolver(swarm, settings))
    try:
        first = await platform.reconcile(platform_record(settings), context())
        assert [(s.step, s.result) for s in first.steps] == [
            ("network", "created"),
            # Another Director on this machine may have installed the host's rules already.
            ("host-firewall", "updated" if first.steps[1].result == "updated" else "unchanged"),
            ("edge-config", "updated"),
            ("edge-service", "created"),
        ]
        network = swarm.networks.get(settings.network)
        assert network.attrs["Driver"] == "overlay" and network.attrs["Attachable"]

        ready = await wait_for_platform(platform, context(60))
        assert ready.ready and isinstance(ready.status, EdgeStatus) and ready.status.running_nodes == 1
        # The host's rules follow every Director edge on the machine, which other runs may add meanwhile.
        assert [s.result for s in ready.steps if s.step != "host-firewall"] == ["unchanged"] * 3
        assert await asyncio.to_thread(http_get, settings, "nothing.sites.localhost") == (404, _page(404))

        spec = swarm.api.inspect_service(settings.edge_service)["Spec"]
        assert spec["Mode"] == {"Global": {}}
        assert spec["UpdateConfig"]["Order"] == "stop-first"
        assert spec["EndpointSpec"]["Ports"][0]["PublishMode"] == "host"
        mounts = {m["Target"]: m for m in spec["TaskTemplate"]["ContainerSpec"]["Mounts"]}
        assert mounts[str(settings.edge_dir)]["Source"] == str(settings.edge_dir)
        assert mounts[str(settings.sites_dir)]["ReadOnly"] is True
        # The edge's master and workers hold only the capabilities Nginx needs, raw sockets not among them.
        assert _edge_capabilities(swarm, settings) == set(EDGE_CAPABILITIES)

        # Someone removes the edge (Docker's event says so to the cache): the next reconcile creates it again.
        swarm.api.remove_service(settings.edge_service)
        cache.forget_service(settings.edge_service)
        repaired = await platform.reconcile(platform_record(settings), context())
        assert repaired.steps[3].result == "created"
        assert (await wait_for_platform(platform, context(60))).ready

        # Someone edits the main configuration: it is rendered, validated and put back, and the edge reloaded.
        main_conf = settings.edge_dir / nginx_config.MAIN_CONF
        main_conf.write_text(main_conf.read_text().replace("worker_connections 4096", "worker_connections 7"))
        fixed = await platform.reconcile(platform_record(settings), context())
        assert [(s.step, s.result) for s in fixed.steps][2:] == [
            ("edge-config", "updated"),
            ("edge-service", "unchanged"),
            ("edge-reload", "updated"),
        ]
        assert "worker_connections 4096" in main_conf.read_text()

        # No iptables to install the host's rules with: the edge still serves, but the platform is not ready,
        # and says why.
        with monkeypatch.context() as patched:
            patched.setenv("PATH", str(tmp_path / "no-programs-here"))
            open_host = await platform.reconcile(platform_record(settings), context())
        assert not open_host.ready and open_host.steps[1].result == "failed"
        assert open_host.message == (
            "sites could reach this host's ports: iptables is not installed: apt-get install iptables "
            "(Docker needs it too)"
        )
        assert (await platform.reconcile(platform_record(settings), context())).ready
    finally:
        remove_labelled(swarm, f"io.director.instance={settings.instance}")


def _page(status: int) -> str:
    text = (nginx_config.TEMPLATES_DIR / "site_locations.conf.j2").read_text()
    start = text.index(f'return {status} "') + len(f'return {status} "')
    return text[start : text.index('";', start)].replace("\\n", "\n")


# Bit numbers of linux/capability.h, for the capabilities an edge might hold.
_CAPABILITY_BITS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
    "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18, "MKNOD": 27,
    "AUDIT_WRITE": 29, "SETFCAP": 31,
}  # fmt: skip


def _edge_capabilities(swarm, settings) -> set[str]:
    """The effective capabilities of the edge's Nginx master, read from its /proc inside its container."""
    containers = swarm.containers.list(
        filters={"label": f"com.docker.swarm.service.name={settings.edge_service}"}
    )
    assert len(containers) == 1
    status = containers[0].exec_run(["cat", "/proc/1/status"]).output.decode()
    effective = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)
    assert effective & ~sum(1 << bit for bit in _CAPABILITY_BITS.values()) == 0, hex(effective)
    return {name for name, bit in _CAPABILITY_BITS.items() if effective >> bit & 1}
