"""What a hostile student tried through the API, with two normal users (alice, bob) and an admin."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.api_helpers import SITES, site_doc

MERGE = {"Content-Type": "application/merge-patch+json"}
APPLY = {"Content-Type": "application/apply-patch+yaml"}
BLOCKED = "/apis/director.io/v1/blockeddomains"
# The live server's setting (tests/api/conftest.py): a school's own domain only an admin may give a site.
ADMIN_ONLY = "school.example.edu"


def _until(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _create(who: str, api, name: str, **spec) -> httpx.Response:
    owners = spec.pop("owners", [who] if who != "admin" else ["alice"])
    with api.client(who) as client:
        return client.post(SITES, json=site_doc(name, owners=owners, **spec))


def _causes(response: httpx.Response) -> dict[str, str]:
    return {cause["field"]: cause["message"] for cause in response.json()["details"].get("causes", [])}


# ---- domains ------------------------------------------------------------------------------------------


def test_an_older_site_cannot_take_a_domain_another_site_holds(api):
    assert _create("alice", api, "attacker").status_code == 201
    assert _create("bob", api, "victim", domains=["victim.example.org"]).status_code == 201
    with api.client("alice") as alice:
        hijack = alice.patch(
            f"{SITES}/attacker", json={"spec": {"domains": ["victim.example.org"]}}, headers=MERGE
        )
        applied = alice.patch(
            f"{SITES}/attacker?fieldManager=cli",
            content="metadata: {name: attacker}\n"
            "spec: {owners: [alice], domains: [a.example.org, victim.example.org]}\n",
            headers=APPLY,
        )
    assert hijack.status_code == 409, hijack.text
    assert _causes(hijack) == {
        "spec.domains[0]": "victim.example.org is already served by site 'victim', which claimed it first; "
        "a domain is freed only when its holder lets go of it"
    }
    assert applied.status_code == 409 and "spec.domains[1]" in _causes(applied)
    with api.client() as admin:
        # Not even an admin moves a domain from its holder: the holder lets go first.
        assert (
            admin.patch(
                f"{SITES}/attacker", json={"spec": {"domains": ["victim.example.org"]}}, headers=MERGE
            ).status_code
            == 409
        )
        assert not admin.get(f"{SITES}/attacker").json()["spec"].get("domains")


def test_a_released_domain_is_free_for_the_next_claimant_at_once(api):
    assert _create("bob", api, "holder", domains=["shared.example.org"]).status_code == 201
    assert _create("alice", api, "claimant").status_code == 201
    with api.client("alice") as alice, api.client("bob") as bob:
        claim = {"spec": {"domains": ["shared.example.org"]}}
        assert alice.patch(f"{SITES}/claimant", json=claim, headers=MERGE).status_code == 409
        assert (
            bob.patch(f"{SITES}/holder", json={"spec": {"domains": None}}, headers=MERGE).status_code == 200
        )
        assert alice.patch(f"{SITES}/claimant", json=claim, headers=MERGE).status_code == 200
        assert bob.patch(f"{SITES}/holder", json=claim, headers=MERGE).status_code == 409
        # Deleting the holder frees its domains too, before its finalizers have run.
        assert (
            bob.patch(
                f"{SITES}/holder", json={"spec": {"domains": ["other.example.org"]}}, headers=MERGE
            ).status_code
            == 200
        )
        assert bob.delete(f"{SITES}/holder").status_code == 200
        again = alice.patch(
            f"{SITES}/claimant", json={"spec": {"domains": ["other.example.org"]}}, headers=MERGE
        )
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("127.0.0.1", "IP address"),
        ("10.1.2.3", "IP address"),
        ("sites.localhost", "under the sites domain"),
        ("admin.sites.localhost", "under the sites domain"),
        ("someone-else.sites.localhost", "under the sites domain"),
        ("deep.name.sites.localhost", "under the sites domain"),
        ("my.localhost", "localhost"),
    ],
)
def test_hosts_no_site_may_claim_are_refused_for_everyone(api, host, problem):
    assert _create("alice", api, "claims-much").status_code == 201
    for who in ("alice", "admin"):
        with api.client(who) as client:
            refused = client.patch(f"{SITES}/claims-much", json={"spec": {"domains": [host]}}, headers=MERGE)
        assert refused.status_code == 422, refused.text
        assert problem in _causes(refused)["spec.domains[0]"]


def test_the_blocked_list_is_kept_by_admins_and_refuses_claims(api):
    assert _create("alice", api, "blog").status_code == 201
    entry = {"metadata": {"name": "casino.example"}, "spec": {"reason": "gambling"}}
    with api.client("alice") as alice:
        assert alice.post(BLOCKED, json=entry).status_code == 403
    with api.client() as admin:
        assert admin.post(BLOCKED, json=entry).status_code == 201
        assert admin.post(BLOCKED, json=entry).status_code == 409
        assert [i["metadata"]["name"] for i in admin.get(BLOCKED).json()["items"]] == ["casino.example"]
    try:
        with api.client("alice") as alice:
            refused = alice.patch(
                f"{SITES}/blog", json={"spec": {"domains": ["www.casino.example"]}}, headers=MERGE
            )
        assert refused.status_code == 422
        assert _causes(refused) == {
            "spec.domains[0]": "www.casino.example is blocked by the administrators (casino.example): "
            "gambling"
        }
    finally:
        with api.client() as admin:
            assert admin.delete(f"{BLOCKED}/casino.example").status_code == 200
    with api.client("alice") as alice:
        allowed = alice.patch(
            f"{SITES}/blog", json={"spec": {"domains": ["www.casino.example"]}}, headers=MERGE
        )
    assert allowed.status_code == 200, allowed.text


def test_admin_only_domains_are_given_by_admins_and_kept_through_the_owners_edits(api):
    assert _create("alice", api, "club").status_code == 201
    claim = {"spec": {"domains": [f"robotics.{ADMIN_ONLY}"]}}
    with api.client("alice") as alice:
        refused = alice.patch(f"{SITES}/club", json=claim, headers=MERGE)
    assert refused.status_code == 403
    assert "only an admin may give a site" in _causes(refused)["spec.domains[0]"]
    with api.client() as admin:
        assert admin.patch(f"{SITES}/club", json=claim, headers=MERGE).status_code == 200
    with api.client("alice") as alice:
        edited = alice.patch(f"{SITES}/club", json={"spec": {"replicas": 2}}, headers=MERGE)
    assert edited.status_code == 200, edited.text


def test_racing_writers_never_both_hold_a_domain(api):
    for index in range(8):
        assert _create("alice" if index % 2 else "bob", api, f"racer-{index}").status_code == 201

    def claim(index: int) -> int:
        with api.client("alice" if index % 2 else "bob") as client:
            return client.patch(
                f"{SITES}/racer-{index}", json={"spec": {"domains": ["prize.example.org"]}}, headers=MERGE
            ).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(claim, range(8)))
    assert sorted(codes) == [200] + [409] * 7
    with api.client() as admin:
        holders = [
            site["metadata"]["name"]
            for site in admin.get(SITES).json()["items"]
            if "prize.example.org" in site["spec"].get("domains", [])
        ]
    assert holders == [f"racer-{codes.index(200)}"]


# ---- limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"cpus": 1e-10}, "spec.resources.cpus"),
        ({"cpus": 0.009}, "spec.resources.cpus"),
        ({"uploadLimit": "0"}, "spec.resources.uploadLimit"),
        ({"uploadLimit": "0.5Ki"}, "spec.resources.uploadLimit"),
        ({"uploadLimit": "1"}, "spec.resources.uploadLimit"),
    ],
)
def test_limits_a_backend_would_read_as_unlimited_are_refused(api, resources, field):
    refused = _create("alice", api, "greedy", type="dynamic", image="nginx:1", resources=resources)
    assert refused.status_code == 422, refused.text
    assert field in _causes(refused)


# ---- an admin's decision ----------------------------------------------------------------------------


def test_a_site_an_admin_disabled_stays_disabled_and_keeps_its_name(api):
    assert _create("bob", api, "spam").status_code == 201
    with api.client() as admin:
        assert (
            admin.patch(
                f"{SITES}/spam", json={"spec": {"availability": "disabled"}}, headers=MERGE
            ).status_code
            == 200
        )
    with api.client("bob") as bob:
        deleted = bob.delete(f"{SITES}/spam")
        recreated = bob.post(SITES, json=site_doc("spam", owners=["bob"]))
        enabled = bob.patch(f"{SITES}/spam", json={"spec": {"availability": "enabled"}}, headers=MERGE)
    assert deleted.status_code == 403 and "only an administrator may delete it" in deleted.text
    assert recreated.status_code == 409
    assert enabled.status_code == 403
    with api.client() as admin:
        assert admin.get(f"{SITES}/spam").json()["spec"]["availability"] == "disabled"
        assert admin.delete(f"{SITES}/spam").status_code == 200
    assert _create("bob", api, "spam").status_code == 201


# ---- answers that leak ------------------------------------------------------------------------------


def test_apply_and_delete_answer_a_stranger_alike_whatever_the_site_holds(api):
    with api.client() as admin:
        assert (
            admin.post(
                SITES, json=site_doc("secretive", owners=["bob"], env={"API_KEY": "right"})
            ).status_code
            == 201
        )
        admin.patch(
            f"{SITES}/secretive?fieldManager=api", json={"spec": {"env": {"API_KEY": "right"}}}, headers=MERGE
        )
        version = admin.get(f"{SITES}/secretive").json()["metadata"]["resourceVersion"]

    def apply(value: str) -> httpx.Response:
        body = f"metadata: {{name: secretive}}\nspec: {{owners: [alice], env: {{API_KEY: {value}}}}}\n"
        with api.client("alice") as alice:
            return alice.patch(f"{SITES}/secretive?fieldManager=cli", content=body, headers=APPLY)

    wrong, right = apply("wrong"), apply("right")
    with api.client("alice") as alice:
        stale = alice.delete(f"{SITES}/secretive?resourceVersion=1")
        current = alice.delete(f"{SITES}/secretive?resourceVersion={version}")
        patched = alice.patch(
            f"{SITES}/secretive", json={"metadata": {"resourceVersion": "1"}}, headers=MERGE
        )
    # An apply to a taken name is told the name is taken, nothing else, whatever it would have changed.
    assert wrong.status_code == right.status_code == 409
    assert wrong.text == right.text
    assert json.loads(wrong.text)["message"] == 'site "secretive" already exists; choose another name'
    for response in (stale, current, patched):
        assert response.status_code == 404
        assert response.json()["message"] == 'site "secretive" not found'


def test_a_watcher_who_loses_access_never_sees_the_new_state(api):
    assert _create("alice", api, "handed-over", env={"OLD": "1"}).status_code == 201
    received: list[dict] = []
    stop = threading.Event()

    def watch() -> None:
        with (
            api.client("alice") as client,
            client.stream("GET", f"{SITES}?watch=true&timeoutSeconds=60") as response,
        ):
            for line in response.iter_lines():
                if line:
                    received.append(json.loads(line))
                if stop.is_set() or any(event["type"] == "DELETED" for event in received):
                    return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert _until(lambda: any(e["object"]["metadata"]["name"] == "handed-over" for e in received))
        with api.client() as admin:
            handed = admin.patch(
                f"{SITES}/handed-over",
                json={
                    "metadata": {"annotations": {"example.org/note": "bob's now"}},
                    "spec": {"owners": ["bob"], "env": {"BOBS_SECRET": "s3cret"}},
                },
                headers=MERGE,
            )
            assert handed.status_code == 200, handed.text
        assert _until(lambda: any(e["type"] == "DELETED" for e in received))
    finally:
        stop.set()
        watcher.join(timeout=70)
    [deleted] = [event["object"] for event in received if event["type"] == "DELETED"]
    assert deleted["spec"]["owners"] == ["alice"]
    assert deleted["spec"]["env"] == {"OLD": "1"}
    assert "annotations" not in deleted["metadata"]
    assert "s3cret" not in json.dumps(received) and "bob" not in json.dumps(received)


# ---- owners -----------------------------------------------------------------------------------------


def test_owners_must_be_director_users(api):
    refused = _create("alice", api, "for-friends", owners=["alice", "nobody-by-this-name", "bob"])
    assert refused.status_code == 422
    assert _causes(refused) == {
        "spec.owners[1]": "no user is named 'nobody-by-this-name'; owners must be Director users"
    }
    assert _create("alice", api, "for-friends", owners=["alice", "bob"]).status_code == 201
