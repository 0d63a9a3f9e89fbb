"""Pure rendering and mapping: service specs, drift, Docker events, routes (no Docker, no Nginx needed)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from reconciler_helpers import make_site

from controller.types import Request
from reconcilers.docker_calls import LABEL_GENERATION, LABEL_INSTANCE, LABEL_SITE, LABEL_SPEC_HASH
from reconcilers.docker_events import request_for
from reconcilers.launcher import LAUNCHER_TARGET, launcher_host_path
from reconcilers.platform import PLATFORM
from reconcilers.routes import desired_route
from reconcilers.service import render_site_spec
from reconcilers.swarm_spec import drift, spec_hash
from specs.config import Settings
from specs.models import Site

SETTINGS = Settings(instance="unit")


def _spec(**site_spec):
    site = make_site("web", type="dynamic", image="example.org/web:1", **site_spec)
    return render_site_spec(SETTINGS, site, "example.org/web:1", 200001, "net-id")


def test_site_spec_uses_nanoseconds_whole_configs_and_no_root():
    spec = _spec(resources={"cpus": 0.5, "memory": "128Mi"}, env={"GREETING": "hi"}, replicas=2)
    template = spec["TaskTemplate"]
    assert template["RestartPolicy"] == {
        "Condition": "any",
        "Delay": 5_000_000_000,
        "MaxAttempts": 3,
        "Window": 120_000_000_000,
    }
    assert template["Resources"]["Limits"] == {
        "NanoCPUs": 500_000_000,
        "MemoryBytes": 128 * 1024**2,
        "Pids": 256,
    }
    container = template["ContainerSpec"]
    assert container["User"] == "200001:200001" and container["ReadOnly"] is True
    assert container["Env"] == ["PORT=8080", "HOST=0.0.0.0", "GREETING=hi"]
    # Started through the no-new-privileges launcher, which runs the shell and the site's command.
    assert container["Command"][:3] == [LAUNCHER_TARGET, "/bin/sh", "-c"]
    assert "umask 007" in container["Command"][3]
    assert {m["Target"] for m in container["Mounts"]} == {"/site", "/tmp", "/run", LAUNCHER_TARGET}
    launcher = next(m for m in container["Mounts"] if m["Target"] == LAUNCHER_TARGET)
    assert launcher["ReadOnly"] is True and launcher["Source"] == str(launcher_host_path(SETTINGS.state_dir))
    assert container["CapabilityDrop"] == ["ALL"] and "CapabilityAdd" not in container
    assert {u["Name"]: (u["Soft"], u["Hard"]) for u in container["Ulimits"]} == {
        "nofile": (4096, 4096),
        "core": (0, 0),
    }
    assert template["LogDriver"] == {"Name": "json-file", "Options": {"max-size": "10m", "max-file": "2"}}
    assert spec["UpdateConfig"]["Order"] == "start-first"
    assert spec["UpdateConfig"]["FailureAction"] == "rollback"
    assert spec["EndpointSpec"] == {"Mode": "dnsrr", "Ports": []}
    assert spec["Mode"] == {"Replicated": {"Replicas": 2}}
    assert spec["Labels"][LABEL_SITE] == "web" and spec["Labels"][LABEL_INSTANCE] == "unit"
    assert spec["Labels"][LABEL_SPEC_HASH] == spec_hash(spec)


def test_a_given_command_runs_with_the_umask_and_not_served_means_zero_replicas():
    spec = _spec(command=["python3", "app.py"], availability="not-served")
    assert spec["TaskTemplate"]["ContainerSpec"]["Command"][-2:] == ["python3", "app.py"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Command"][0] == LAUNCHER_TARGET
    assert spec["Mode"] == {"Replicated": {"Replicas": 0}}


def test_an_admin_s_process_limit_reaches_the_service():
    spec = _spec(resources={"pids": 2048})
    assert spec["TaskTemplate"]["Resources"]["Limits"]["Pids"] == 2048


def test_healthcheck_durations_are_nanoseconds():
    spec = _spec(health_check={"path": "/up", "interval": "2s", "timeout": "500ms", "retries": 4})
    check = spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"]
    assert check["Interval"] == 2_000_000_000 and check["Timeout"] == 500_000_000 and check["Retries"] == 4
    assert check["Test"][:4] == ["CMD", LAUNCHER_TARGET, "/bin/sh", "-c"] and "/up" in check["Test"]


def test_generation_alone_is_no_drift_but_an_added_env_or_port_is():
    rendered = _spec()
    live = {
        **rendered,
        "Labels": {**rendered["Labels"], LABEL_GENERATION: "7"},
        "TaskTemplate": {**rendered["TaskTemplate"], "ForceUpdate": 0, "Runtime": "container"},
        "EndpointSpec": {"Mode": "dnsrr"},
    }
    assert drift(rendered, live) == []
    assert spec_hash(rendered) == spec_hash({**rendered, "Labels": live["Labels"]})
    container = rendered["TaskTemplate"]["ContainerSpec"]
    with_env = {**container, "Env": [*container["Env"], "INJECTED=1"]}
    changed = {**live, "TaskTemplate": {**live["TaskTemplate"], "ContainerSpec": with_env}}
    assert drift(rendered, changed) == ["TaskTemplate.ContainerSpec.Env"]
    published = {**live, "EndpointSpec": {"Mode": "dnsrr", "Ports": [{"PublishedPort": 80}]}}
    assert drift(rendered, published) == ["EndpointSpec.Ports"]
    relabelled = {**live, "Labels": {**live["Labels"], "extra": "1"}}
    assert drift(rendered, relabelled) == ["Labels"]


def test_docker_events_map_to_their_site_or_the_platform():
    def event(kind, action, **attributes):
        return {"Type": kind, "Action": action, "Actor": {"Attributes": attributes}}

    assert request_for(event("service", "update", name="unit-site-blog"), SETTINGS) == (
        Request("Site", "blog"),
        "docker:service/update",
    )
    edge_removed = event("service", "remove", name="unit-edge")
    assert request_for(edge_removed, SETTINGS) == (PLATFORM, "docker:service/remove")
    assert request_for(event("service", "update", name="other-site-blog"), SETTINGS) is None
    labelled = {LABEL_INSTANCE: "unit", LABEL_SITE: "blog"}
    assert request_for(event("container", "health_status: unhealthy", **labelled), SETTINGS) == (
        Request("Site", "blog"),
        "docker:container/health_status",
    )
    assert request_for(event("container", "exec_start: sh", **labelled), SETTINGS) is None
    foreign = {LABEL_INSTANCE: "someone-else", LABEL_SITE: "blog"}
    assert request_for(event("container", "die", **foreign), SETTINGS) is None


def test_routes_say_how_a_site_is_served():
    assert desired_route(make_site("gone", availability="disabled"), SETTINGS) == (None, {})
    paused_site = make_site("paused", availability="not-served", domains=["a.example.org"])
    paused, denied = desired_route(paused_site, SETTINGS)
    assert paused is not None and denied == {}
    assert paused.kind == "not-served" and paused.hosts == ("paused.sites.localhost", "a.example.org")
    app, _ = desired_route(make_site("app", type="dynamic", image="x.org/app:1"), SETTINGS)
    assert app is not None and app.kind == "dynamic"


def test_a_route_gets_only_the_domains_its_site_holds_and_may_have():
    site = make_site(
        "club", domains=["mine.example.org", "theirs.example.org", "10.0.0.1", "x.sites.localhost"]
    )
    holders = {"mine.example.org": "club", "theirs.example.org": "first"}
    route, denied = desired_route(site, SETTINGS, holders)
    assert route is not None
    assert route.hosts == ("club.sites.localhost", "mine.example.org")
    assert route.claimed == ("mine.example.org",)
    assert denied == {
        "theirs.example.org": "theirs.example.org is served by site first, which claimed it first",
        "10.0.0.1": "10.0.0.1 is an IP address, not a host name; a site is reached by name",
        "x.sites.localhost": (
            "x.sites.localhost is under the sites domain sites.localhost, whose names are the sites' own "
            "default hosts; a site's default host is <name>.sites.localhost"
        ),
    }


@given(
    cpus=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 20),
    upload=st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,3})?(k|K|M|G|Ki|Mi|Gi)?", fullmatch=True),
    memory=st.from_regex(r"[0-9]{1,11}(\.[0-9]{1,3})?(k|K|M|G|Ki|Mi|Gi)?", fullmatch=True),
    pids=st.integers(-2, 40_000) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=3),
)
@settings(max_examples=300, deadline=None)
def test_every_limit_is_refused_or_rendered_as_a_limit(cpus, upload, memory, pids):
    """Docker reads NanoCPUs 0, MemoryBytes 0 and Pids 0 or -1, Nginx client_max_body_size 0, as no limit."""
    resources = {"cpus": cpus, "uploadLimit": upload, "memory": memory, "pids": pids}
    try:
        site = Site.model_validate(
            {
                "metadata": {"name": "limited"},
                "spec": {"type": "dynamic", "image": "x.org/a:1", "resources": resources},
            }
        )
    except ValidationError:
        return
    limits = render_site_spec(SETTINGS, site, "x.org/a:1", 200001, "net")["TaskTemplate"]["Resources"][
        "Limits"
    ]
    assert limits["NanoCPUs"] >= 10_000_000
    assert limits["MemoryBytes"] >= 6 * 1024 * 1024
    assert isinstance(limits["Pids"], int) and limits["Pids"] >= 16
    route, _ = desired_route(site, SETTINGS)
    assert route is not None and route.upload_limit >= 1024
