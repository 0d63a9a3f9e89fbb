"""Authentication and authorization, tried on every endpoint both ways."""

from __future__ import annotations

import httpx
import pytest

from tests.api.api_helpers import SITES, site_doc

# (method, path) of every endpoint; {site} is a site alice does not own.
ENDPOINTS = [
    ("GET", "/apis"),
    ("GET", "/apis/director.io/v1"),
    ("GET", SITES),
    ("POST", SITES),
    ("GET", f"{SITES}?watch=true&timeoutSeconds=1"),
    ("GET", f"{SITES}/{{site}}"),
    ("PUT", f"{SITES}/{{site}}"),
    ("PATCH", f"{SITES}/{{site}}"),
    ("DELETE", f"{SITES}/{{site}}"),
    ("GET", f"{SITES}/{{site}}/status"),
    ("GET", f"{SITES}/{{site}}/history"),
    ("GET", f"{SITES}/{{site}}/events"),
    ("GET", f"{SITES}/{{site}}/logs"),
    ("GET", "/apis/director.io/v1/events"),
    ("GET", "/apis/director.io/v1/platforms"),
    ("GET", "/apis/director.io/v1/platforms/edge"),
    ("GET", "/apis/director.io/v1/blockeddomains"),
    ("GET", "/apis/auth.director.io/v1/tokens"),
    ("POST", "/apis/auth.director.io/v1/tokens"),
    ("DELETE", "/apis/auth.director.io/v1/tokens/1"),
    ("POST", "/apis/auth.director.io/v1/login"),
    ("GET", "/apis/auth.director.io/v1/sshkeys"),
    ("POST", "/apis/auth.director.io/v1/sshkeys"),
    ("DELETE", "/apis/auth.director.io/v1/sshkeys/laptop"),
    ("POST", "/shell-server/v1/authenticate"),
    ("GET", "/shell-server/v1/users/alice/sites"),
    ("POST", "/shell-server/v1/publickey"),
]
SHELL_ENDPOINTS = {path for _, path in ENDPOINTS if path.startswith("/shell-server/")}
# Takes a password, never a token: what any bearer token hears there is tested in test_api_credentials.py.
LOGIN = "/apis/auth.director.io/v1/login"
# What alice, an ordinary user, may not reach: bob's site (404, as if it did not exist) and the shell
# server's URLs (403).
HIDDEN_FROM_ALICE = [(method, path) for method, path in ENDPOINTS if "{site}" in path]


@pytest.fixture
def bobs_site(api) -> str:
    with api.client() as client:
        response = client.post(SITES, json=site_doc("bobs", owners=["bob"], type="dynamic", image="nginx:1"))
        assert response.status_code == 201, response.text
    return "bobs"


def _call(client: httpx.Client, method: str, path: str, site: str) -> httpx.Response:
    body = site_doc(site, owners=["alice"])
    headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
    content = None if method in ("GET", "DELETE") else httpx.Request("POST", "/", json=body).content
    return client.request(method, path.format(site=site), content=content, headers=headers)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_without_credentials_is_401(api, bobs_site, method, path):
    with api.client(None) as client:
        response = _call(client, method, path, bobs_site)
        bad_token = client.request(
            method, path.format(site=bobs_site), headers={"Authorization": "Bearer dir_not-a-token"}
        )
    assert response.status_code == 401, response.text
    assert bad_token.status_code == 401
    assert response.json()["kind"] == "Status" and response.json()["reason"] == "Unauthorized"


@pytest.mark.parametrize(("method", "path"), HIDDEN_FROM_ALICE)
def test_a_site_one_may_not_see_is_answered_exactly_as_one_that_does_not_exist(api, bobs_site, method, path):
    """Not 403: that would say the name exists, and a 403 after a 409 or a version check would say more."""
    with api.client("alice") as client:
        hidden = _call(client, method, path, bobs_site)
        missing = _call(client, method, path, "ghost")
    assert hidden.status_code == 404, hidden.text
    assert hidden.text == missing.text.replace("ghost", bobs_site)


@pytest.mark.parametrize(("method", "path"), [e for e in ENDPOINTS if e[1] in SHELL_ENDPOINTS])
def test_the_shell_server_endpoints_are_403_for_a_user(api, method, path):
    with api.client("alice") as client:
        response = _call(client, method, path, "any")
    assert response.status_code == 403, response.text
    assert response.json()["reason"] == "Forbidden"


@pytest.mark.parametrize(
    ("method", "path"), [e for e in ENDPOINTS if e[1] not in SHELL_ENDPOINTS and e[1] != LOGIN]
)
def test_the_shell_server_credential_is_403_outside_shell_server_urls(api, bobs_site, method, path):
    with api.client("shell") as client:
        response = _call(client, method, path, bobs_site)
    assert response.status_code == 403, response.text
    assert "/shell-server/" in response.json()["message"]


def test_the_shell_server_authenticates_a_user_and_lists_the_sites_they_may_enter(api, bobs_site):
    with api.client("alice") as alice:
        alice.post(SITES, json=site_doc("alices"))
    with api.client("shell") as shell:
        entered = shell.post(
            "/shell-server/v1/authenticate", json={"username": "bob", "password": "bob-password"}
        )
        wrong = shell.post("/shell-server/v1/authenticate", json={"username": "bob", "password": "nope"})
        listed = shell.get("/shell-server/v1/users/alice/sites")
        admin = shell.get("/shell-server/v1/users/admin/sites")
    assert entered.status_code == 200, entered.text
    assert entered.json()["username"] == "bob"
    assert [site["name"] for site in entered.json()["sites"]] == ["bobs"]
    assert wrong.status_code == 401
    assert [site["name"] for site in listed.json()["sites"]] == ["alices"]
    assert {site["name"] for site in admin.json()["sites"]} == {"alices", "bobs"}


def test_a_user_sees_only_their_sites_and_an_admin_sees_all(api, bobs_site):
    with api.client("alice") as alice:
        assert alice.post(SITES, json=site_doc("mine")).status_code == 201
        assert [i["metadata"]["name"] for i in alice.get(SITES).json()["items"]] == ["mine"]
        assert alice.get(f"{SITES}/mine/events").status_code == 200
    with api.client() as admin:
        assert [i["metadata"]["name"] for i in admin.get(SITES).json()["items"]] == ["bobs", "mine"]


def test_a_user_may_not_create_a_site_for_others_and_is_made_owner_of_their_own(api):
    with api.client("alice") as alice:
        foreign = alice.post(SITES, json=site_doc("foreign", owners=["bob"]))
        giving_away = alice.post(SITES, json=site_doc("mine2", owners=[]))
        assert giving_away.status_code == 201
        assert giving_away.json()["spec"]["owners"] == ["alice"]
        removed = alice.patch(
            f"{SITES}/mine2",
            json={"spec": {"owners": ["bob"]}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
    assert foreign.status_code == 403
    assert foreign.json()["details"]["causes"][0]["field"] == "spec.owners"
    assert removed.status_code == 403


def test_only_admins_set_reserved_fields(api):
    with api.client("alice") as alice:
        alice.post(SITES, json=site_doc("limits"))
        patch = {"Content-Type": "application/merge-patch+json"}
        disabled = alice.patch(f"{SITES}/limits", json={"spec": {"availability": "disabled"}}, headers=patch)
        big = alice.patch(
            f"{SITES}/limits", json={"spec": {"resources": {"cpus": 4, "memory": "8Gi"}}}, headers=patch
        )
        not_served = alice.patch(
            f"{SITES}/limits", json={"spec": {"availability": "not-served"}}, headers=patch
        )
    assert disabled.status_code == 403
    assert disabled.json()["details"]["causes"][0]["field"] == "spec.availability"
    assert big.status_code == 403
    assert {c["field"] for c in big.json()["details"]["causes"]} == {
        "spec.resources.cpus",
        "spec.resources.memory",
    }
    assert not_served.status_code == 200

    with api.client() as admin:
        assert (
            admin.patch(
                f"{SITES}/limits",
                json={"spec": {"availability": "disabled", "resources": {"cpus": 4}}},
                headers=patch,
            ).status_code
            == 200
        )
    with api.client("alice") as alice:
        # Alice keeps editing other fields of a site an admin disabled and enlarged...
        assert (
            alice.patch(
                f"{SITES}/limits", json={"spec": {"domains": ["limits.example.org"]}}, headers=patch
            ).status_code
            == 200
        )
        # ...but may not enable it again.
        assert (
            alice.patch(
                f"{SITES}/limits", json={"spec": {"availability": "enabled"}}, headers=patch
            ).status_code
            == 403
        )


def test_a_process_limit_above_the_default_is_an_admin_s_and_kept_through_the_owner_s_edits(api):
    patch = {"Content-Type": "application/merge-patch+json"}
    with api.client("alice") as alice:
        created = alice.post(SITES, json=site_doc("forks"))
        lower = alice.patch(f"{SITES}/forks", json={"spec": {"resources": {"pids": 64}}}, headers=patch)
        raised = alice.patch(f"{SITES}/forks", json={"spec": {"resources": {"pids": 257}}}, headers=patch)
        unlimited = alice.patch(f"{SITES}/forks", json={"spec": {"resources": {"pids": 0}}}, headers=patch)
    assert created.status_code == 201 and created.json()["spec"]["resources"]["pids"] == 256
    assert lower.status_code == 200, lower.text
    assert raised.status_code == 403
    assert raised.json()["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.resources.pids",
            "message": "above the limit of 256 for users; only an admin may set more",
        }
    ]
    # 0 would be no limit at all to Docker: refused for everyone, naming the field.
    assert unlimited.status_code == 422
    assert [c["field"] for c in unlimited.json()["details"]["causes"]] == ["spec.resources.pids"]
    with api.client() as admin:
        granted = admin.patch(f"{SITES}/forks", json={"spec": {"resources": {"pids": 1024}}}, headers=patch)
    assert granted.status_code == 200 and granted.json()["spec"]["resources"]["pids"] == 1024
    with api.client("alice") as alice:
        edited = alice.patch(f"{SITES}/forks", json={"spec": {"replicas": 2}}, headers=patch)
    assert edited.status_code == 200 and edited.json()["spec"]["resources"]["pids"] == 1024


def test_tokens_are_created_listed_revoked_and_login_issues_one(api):
    with api.client(None) as anonymous:
        login = anonymous.post("/apis/auth.director.io/v1/login", auth=("alice", "alice-password"))
        wrong = anonymous.post("/apis/auth.director.io/v1/login", auth=("alice", "wrong"))
    assert login.status_code == 201 and login.json()["token"].startswith("dir_")
    assert wrong.status_code == 401
    token = login.json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(verify=api.tls, base_url=api.url, headers=headers) as client:
        assert client.get(SITES).status_code == 200
        created = client.post("/apis/auth.director.io/v1/tokens", json={"name": "ci"})
        assert created.status_code == 201
        listed = client.get("/apis/auth.director.io/v1/tokens").json()["items"]
        assert {"dirctl", "ci"} <= {item["name"] for item in listed}
        assert all("token" not in item for item in listed)
        with api.client("bob") as bob:
            assert bob.delete(f"/apis/auth.director.io/v1/tokens/{login.json()['id']}").status_code == 404
        assert client.delete(f"/apis/auth.director.io/v1/tokens/{login.json()['id']}").status_code == 200
        assert client.get(SITES).status_code == 401

    from api.auth import hash_secret
    from api.models import ApiToken

    stored = ApiToken.objects.get(pk=created.json()["id"])
    assert stored.secret_hash == hash_secret(created.json()["token"])
    assert created.json()["token"] not in stored.secret_hash
