"""Sites served through a real edge Nginx on the real Swarm, converged by the real reconcilers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pydantic
import pytest
from reconciler_helpers import context, http_get, make_site, wait_for_http

from controller.types import PermanentError
from reconcilers import nginx_config
from specs.models import ServiceStatus

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

RUN_SH = """#!/bin/sh
cd /site/public
exec python3 -m http.server "$PORT" --bind "$HOST"
"""


async def test_static_site_is_served_and_an_edit_is_served(stack, write_site_file):
    site = make_site("static-one")
    outcomes = await stack.converge(site)
    assert [s.result for s in outcomes["files"].steps] == ["created", "created"]
    assert outcomes["routes"].steps[0].result == "updated"
    host = f"static-one.{stack.settings.sites_domain}"
    wait_for_http(stack.settings, host, 200, "This site is new")

    write_site_file("static-one", "public/index.html", "<h1>edited by its owner</h1>")
    assert http_get(stack.settings, host) == (200, "<h1>edited by its owner</h1>")
    again = await stack.converge(site)
    assert {name: [s.result for s in o.steps] for name, o in again.items()} == {
        "files": ["unchanged"],
        "service": ["unchanged"],
        "routes": ["unchanged"],
    }
    assert http_get(stack.settings, host)[1] == "<h1>edited by its owner</h1>", "never overwrite user files"

    # A symlink out of public/ is not followed (disable_symlinks on); a missing page is a plain 404.
    os.symlink("/etc/passwd", stack.settings.sites_dir / "static-one" / "public" / "leak.txt")
    status, body = http_get(stack.settings, host, "/leak.txt")
    assert status in (403, 404) and "root:" not in body and "not being served" not in body
    assert http_get(stack.settings, host, "/nothing-here.html")[0] == 404

    # private/ is never served: not by a link in public/ to it or to a file in it, not by a path climbing
    # out of public/ (the edge could not read it anyway: it is the site's alone, 0700).
    site_dir = stack.settings.sites_dir / "static-one"
    write_site_file("static-one", "private/secret.txt", "the owner's secret")
    os.symlink("../private/secret.txt", site_dir / "public" / "secret.txt")
    os.symlink("../private", site_dir / "public" / "private")
    climbing = ("/../private/secret.txt", "/%2e%2e/private/secret.txt")
    for path in ("/secret.txt", "/private/secret.txt", *climbing):
        status, body = http_get(stack.settings, host, path)
        assert status in (400, 403, 404) and "secret" not in body, (path, status)


async def test_dynamic_site_is_served_through_the_edge(stack, write_site_file):
    site = make_site("dyn-one", type="dynamic", image="director-local/site:latest")
    await stack.files.reconcile(site, context())
    write_site_file("dyn-one", "run.sh", RUN_SH, 0o750)
    write_site_file("dyn-one", "public/index.html", "hello from a dynamic site")
    outcomes = await stack.converge(site)
    assert outcomes["service"].steps[0].result == "created"
    ready = await stack.until_ready(site)
    assert ready.ready, ready.message
    assert isinstance(ready.status, ServiceStatus)
    assert (ready.status.running_tasks, ready.status.desired_tasks) == (1, 1)
    wait_for_http(stack.settings, f"dyn-one.{stack.settings.sites_domain}", 200, "hello from a dynamic site")
    # What a dynamic site's paths mean is its own server's call, those with a dot-segment too.
    write_site_file("dyn-one", "public/.notes", "the site's server answers this")
    assert http_get(stack.settings, f"dyn-one.{stack.settings.sites_domain}", "/.notes") == (
        200,
        "the site's server answers this",
    )

    service = stack.client.api.inspect_service(stack.settings.service_name("dyn-one"))
    template = service["Spec"]["TaskTemplate"]
    assert template["RestartPolicy"]["Delay"] == 5_000_000_000
    uid = stack.files.uid_of("dyn-one")
    assert template["ContainerSpec"]["User"] == f"{uid}:{uid}"
    assert template["ContainerSpec"]["ReadOnly"] is True
    assert service["Spec"]["EndpointSpec"]["Mode"] == "dnsrr"

    # Drift 1: someone adds an env var by hand; the next reconcile sends the whole spec back.
    subprocess.run(
        ["docker", "service", "update", "--detach", "--env-add", "INJECTED=1", service["Spec"]["Name"]],
        check=True,
        capture_output=True,
    )
    stack.cache.forget_service(service["Spec"]["Name"])
    repaired = await stack.services.reconcile(site, stack.ctx(site))
    assert repaired.steps[0].result == "updated"
    assert "Env" in repaired.steps[0].message
    env = stack.client.api.inspect_service(service["ID"])["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    assert "INJECTED=1" not in env
    assert (await stack.services.reconcile(site, stack.ctx(site))).steps[0].result == "unchanged"

    # Drift 2: the service is removed; the next reconcile creates it again and the site is served again.
    stack.client.api.remove_service(service["ID"])
    stack.cache.forget_service(service["Spec"]["Name"])
    recreated = await stack.services.reconcile(site, stack.ctx(site))
    assert recreated.steps[0].result == "created"
    assert (await stack.until_ready(site)).ready
    wait_for_http(stack.settings, f"dyn-one.{stack.settings.sites_domain}", 200, "hello from a dynamic site")


async def test_a_service_director_did_not_label_is_never_touched(stack, test_labels):
    name = stack.settings.service_name("not-ours")
    stack.client.services.create(
        "director-local/site:latest", name=name, labels=test_labels, mode={"Replicated": {"Replicas": 0}}
    )
    site = make_site("not-ours", type="dynamic", image="director-local/site:latest")
    await stack.files.reconcile(site, context())
    with pytest.raises(PermanentError, match="did not create"):
        await stack.services.reconcile(site, stack.ctx(site))
    finalized = await stack.services.finalize("not-ours", context())
    assert finalized.steps[0].result == "skipped"
    assert stack.client.services.get(name).attrs["Spec"]["Labels"] == test_labels
    stack.client.services.get(name).remove()


async def test_missing_image_is_not_ready_with_dockers_message(stack):
    site = make_site("no-image", type="dynamic", image="director-test/missing:nope")
    await stack.converge(site)
    outcome = await stack.until(site, lambda outcome: "No such image" in outcome.message)
    assert not outcome.ready
    assert "No such image: director-test/missing:nope" in outcome.message


async def test_a_taken_custom_domain_is_refused_and_the_first_site_keeps_serving(stack, write_site_file):
    first = make_site("first-claim", domains=["shared.example.org"])
    await stack.converge(first)
    write_site_file("first-claim", "public/index.html", "the first claim")
    wait_for_http(stack.settings, "shared.example.org", 200, "the first claim")

    second = make_site("second-claim", domains=["shared.example.org"])
    await stack.files.reconcile(second, context())
    with pytest.raises(PermanentError, match=r"shared\.example\.org is already served by site first-claim"):
        await stack.routes.reconcile(second, context())
    assert http_get(stack.settings, "shared.example.org") == (200, "the first claim")


async def test_a_health_checked_site_is_ready_once_its_probe_passes(stack, write_site_file):
    site = make_site(
        "checked",
        type="dynamic",
        image="director-local/site:latest",
        health_check={"path": "/index.html", "interval": "1s", "timeout": "1s", "retries": 3},
    )
    await stack.files.reconcile(site, context())
    write_site_file("checked", "run.sh", RUN_SH, 0o750)
    write_site_file("checked", "public/index.html", "healthy")
    await stack.converge(site)
    ready = await stack.until_ready(site)
    assert ready.ready, ready.message
    health = stack.client.api.inspect_service(stack.settings.service_name("checked"))
    assert health["Spec"]["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Interval"] == 1_000_000_000


async def test_an_update_to_a_missing_image_rolls_back_and_the_site_keeps_serving(stack, write_site_file):
    site = make_site("rolls-back", type="dynamic", image="director-local/site:latest")
    await stack.files.reconcile(site, context())
    write_site_file("rolls-back", "run.sh", RUN_SH, 0o750)
    write_site_file("rolls-back", "public/index.html", "still here")
    await stack.converge(site)
    assert (await stack.until_ready(site)).ready
    host = f"rolls-back.{stack.settings.sites_domain}"
    wait_for_http(stack.settings, host, 200, "still here")

    broken = make_site(
        "rolls-back",
        created=site.metadata.creation_timestamp,
        generation=2,
        type="dynamic",
        image="director-test/missing:nope",
    )
    assert (await stack.services.reconcile(broken, stack.ctx(broken))).steps[0].result == "updated"
    messages = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("rolled back" in m for m in messages):
        outcome = await stack.services.reconcile(broken, stack.ctx(broken))
        assert not outcome.ready
        messages.append(outcome.message)
        await asyncio.sleep(1)
    assert any("No such image: director-test/missing:nope" in m for m in messages), messages
    assert "Swarm rolled back this spec" in messages[-1], messages
    assert outcome.steps[0].result == "failed", "a rolled-back spec is not sent again and again"
    assert http_get(stack.settings, host) == (200, "still here")


async def test_a_static_sites_dot_paths_answer_as_missing_files_except_well_known(stack, write_site_file):
    # One site served by the shared server, one by its own (a different upload limit): the rule is in both.
    sites = [make_site("dotted"), make_site("dotted-limited", resources={"uploadLimit": "5Mi"})]
    for site in sites:
        await stack.converge(site)
        for directory in (".git", ".well-known", ".well-known/acme-challenge", "sub"):
            path = stack.settings.sites_dir / site.name / "public" / directory
            path.mkdir()
            os.chown(path, stack.files.uid_of(site.name) or 0, 33)
            path.chmod(0o2770)
        for relative, text in {
            ".env": "SECRET=1",
            ".htaccess": "Deny from all",
            ".git/config": "[core]",
            "sub/.secret": "hidden too",
            "sub/a.b.html": "dots inside a name are fine",
            ".well-known/security.txt": "Contact: mailto:someone@example.org",
            ".well-known/acme-challenge/token": "challenge answer",
            ".well-known/acme-challenge/.hidden": "not this one",
        }.items():
            write_site_file(site.name, f"public/{relative}", text)
        host = f"{site.name}.{stack.settings.sites_domain}"
        wait_for_http(stack.settings, host, 200, "This site is new")

        missing = http_get(stack.settings, host, "/no-such-file")
        assert missing[0] == 404
        for path in (
            "/.env",
            "/.htaccess",
            "/.git/config",
            "/.git/",
            "/%2egit/config",
            "/sub/../.env",
            "/sub/.secret",
            "/sub/%2Esecret",
            "/.well-known/acme-challenge/.hidden",
            "/.no-such-file",
        ):
            # The same answer as a missing file: nothing tells an existing dotfile from an absent one.
            assert http_get(stack.settings, host, path) == missing, path
        assert http_get(stack.settings, host, "/sub/a.b.html") == (200, "dots inside a name are fine")
        assert http_get(stack.settings, host, "/.well-known/acme-challenge/token") == (
            200,
            "challenge answer",
        )
        assert http_get(stack.settings, host, "/.well-known/security.txt")[0] == 200

    # The edge's own /.director-edge/ locations are matched before the rule.
    assert "routes" in nginx_config.served_revisions(stack.settings.http_port)


async def test_sites_named_like_nginx_map_words_are_served(stack, write_site_file):
    sites = [
        make_site("include", domains=["include.example.org"]),
        make_site("hostnames", resources={"uploadLimit": "5Mi"}),
        make_site("volatile"),
        # Nginx reads \n, \r and \t as control characters: a key's escape must not make one.
        make_site("names", domains=["rewrite.example.org", "tabs.example.org"]),
    ]
    for site in sites:
        outcomes = await stack.converge(site)
        assert outcomes["routes"].steps[0].result == "updated"
        write_site_file(site.name, "public/index.html", f"the site called {site.name}")
    for site in sites:
        for host in (f"{site.name}.{stack.settings.sites_domain}", *site.spec.domains):
            wait_for_http(stack.settings, host, 200, f"the site called {site.name}")
    # `default` stays reserved: the name of the map's fallback, and of Director's own default host.
    with pytest.raises(pydantic.ValidationError, match="reserved"):
        make_site("default")
