"""GitSources, secrets, the controller's credential and the webhook, through a live API server."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

from tests.api.api_helpers import SITES, site_doc

SOURCES = "/apis/director.io/v1/gitsources"
SECRETS = "/apis/director.io/v1/secrets"
APPLY = {"Content-Type": "application/apply-patch+yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}


def source_doc(name: str, url: str = "https://git.example.org/club/sites.git", **spec) -> dict:
    return {
        "apiVersion": "director.io/v1",
        "kind": "GitSource",
        "metadata": {"name": name},
        "spec": {"url": url, **spec},
    }


def apply(client: httpx.Client, document: dict, manager: str = "cli") -> httpx.Response:
    name = document["metadata"]["name"]
    return client.patch(
        f"{SOURCES}/{name}", params={"fieldManager": manager}, content=json.dumps(document), headers=APPLY
    )


@pytest.fixture(scope="module")
def controller_token(api) -> str:
    from django.contrib.auth.models import User

    from api.auth import CONTROLLER_SCOPE, CONTROLLER_USER, issue_token

    user, _ = User.objects.get_or_create(username=CONTROLLER_USER)
    User.objects.get_or_create(username="carol")
    return issue_token(user, "controller", scope=CONTROLLER_SCOPE)[1]


@pytest.fixture(autouse=True)
def _no_sources_left(api):
    yield
    from api.models import Secret
    from store.records import GitSourceStore

    store = GitSourceStore(api.state_dir)
    for source in store.list()[0]:
        for finalizer in source.metadata.finalizers:
            store.remove_finalizer(source.name, finalizer)
        store.delete(source.name)
    Secret.objects.all().delete()


def test_a_user_applies_a_source_that_applies_as_them_and_only_they_and_admins_see_it(api):
    with api.client("alice") as alice:
        created = apply(alice, source_doc("club", path="sites/", prune=True))
        assert created.status_code == 201, created.text
        assert created.headers["Director-Outcome"] == "created"
        assert created.json()["spec"]["applyAs"] == "alice"
        again = apply(alice, source_doc("club", path="sites/", prune=True))
        assert again.headers["Director-Outcome"] == "unchanged"
        assert [item["metadata"]["name"] for item in alice.get(SOURCES).json()["items"]] == ["club"]
    with api.client("bob") as bob:
        assert bob.get(f"{SOURCES}/club").status_code == 404
        assert bob.get(SOURCES).json()["items"] == []
        taken = apply(bob, source_doc("club"))
        assert taken.status_code == 409
        assert bob.delete(f"{SOURCES}/club").status_code == 404
    with api.client("admin") as admin:
        assert admin.get(f"{SOURCES}/club").json()["spec"]["applyAs"] == "alice"


def test_only_an_admin_names_another_user_or_a_file_url(api, controller_token):
    with api.client("alice") as alice:
        refused = apply(alice, source_doc("club", applyAs="bob"))
        assert refused.status_code == 403
        assert refused.json()["details"]["causes"][0]["field"] == "spec.applyAs"
        local = apply(alice, source_doc("club", url="file:///etc/secret-repo.git"))
        assert local.status_code == 403
        assert "file://" in local.json()["message"]
    with api.client("admin") as admin:
        assert apply(admin, source_doc("club", applyAs="carol")).status_code == 201
        assert apply(admin, source_doc("ghost", applyAs="nobody")).status_code == 422
        assert apply(admin, source_doc("local", url="file:///srv/git/x.git")).status_code == 201


def test_an_invalid_source_names_the_field(api):
    with api.client("alice") as alice:
        refused = apply(alice, source_doc("club", url="https://u:p@example.org/x.git", interval="1s"))
    assert refused.status_code == 422
    fields = {cause["field"] for cause in refused.json()["details"]["causes"]}
    assert fields == {"spec.url", "spec.interval"}


def test_suspend_and_reconcile_are_merge_patches(api):
    with api.client("alice") as alice:
        apply(alice, source_doc("club"))
        patched = alice.patch(
            f"{SOURCES}/club", params={"fieldManager": "cli"}, json={"spec": {"suspend": True}}, headers=MERGE
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["spec"]["suspend"] is True
        assert patched.json()["metadata"]["generation"] == 2


def test_secrets_are_never_returned_and_each_user_sees_only_their_own(api, controller_token):
    secret = {"metadata": {"name": "club-git"}, "stringData": {"username": "alice", "password": "hunter22"}}
    with api.client("alice") as alice:
        created = alice.post(SECRETS, json=secret)
        assert created.status_code == 201, created.text
        assert "hunter22" not in created.text
        assert created.json()["keys"] == ["password", "username"]
        listed = alice.get(SECRETS)
        assert "hunter22" not in listed.text
        assert [item["metadata"]["name"] for item in listed.json()["items"]] == ["club-git"]
        assert "hunter22" not in alice.get(f"{SECRETS}/club-git").text
        assert alice.post(SECRETS, json=secret).status_code == 409
        unknown = alice.post(SECRETS, json={"metadata": {"name": "x"}, "stringData": {"pasword": "p"}})
        assert unknown.status_code == 422
        apply(alice, source_doc("club", secretRef={"name": "club-git"}))
        # A person's token never reaches the controller's endpoint.
        assert alice.get("/controller/v1/gitsources/club/credentials").status_code == 403
    with api.client("bob") as bob:
        assert bob.get(SECRETS).json()["items"] == []
        assert bob.get(f"{SECRETS}/club-git").status_code == 404
        assert bob.get(f"{SECRETS}/club-git", params={"owner": "alice"}).status_code == 403
    headers = {"Authorization": f"Bearer {controller_token}"}
    with httpx.Client(verify=api.tls, base_url=api.url, headers=headers) as controller:
        values = controller.get("/controller/v1/gitsources/club/credentials")
        assert values.status_code == 200, values.text
        assert values.json()["stringData"] == {"username": "alice", "password": "hunter22"}
        # Confined: the controller's credential reads no site, and makes no token.
        assert controller.get(SITES).status_code == 403
        assert controller.get(SECRETS).status_code == 403
    with api.client("alice") as alice:
        assert alice.delete(f"{SECRETS}/club-git").status_code == 200
    with httpx.Client(verify=api.tls, base_url=api.url, headers=headers) as controller:
        assert controller.get("/controller/v1/gitsources/club/credentials").status_code == 404


def test_a_dry_run_delete_of_a_secret_is_refused_and_deletes_nothing(api):
    # `kubectl delete --dry-run=server` asks in the body (DeleteOptions); a secret's delete cannot be tried.
    secret = {"metadata": {"name": "kept"}, "stringData": {"token": "t0ken"}}
    with api.client("alice") as alice:
        assert alice.post(SECRETS, json=secret).status_code == 201
        for body in (b'{"dryRun": ["All"]}', b"preconditions: {}\ndryRun:\n- All\n"):
            kind = "application/json" if body.startswith(b"{") else "application/yaml"
            refused = alice.request("DELETE", f"{SECRETS}/kept", content=body, headers={"Content-Type": kind})
            assert refused.status_code == 400, refused.text
            assert "cannot be tried without being done" in refused.json()["message"]
        assert alice.get(f"{SECRETS}/kept").status_code == 200
        assert alice.request("DELETE", f"{SECRETS}/kept", content=b"{}").status_code == 200
        assert alice.get(f"{SECRETS}/kept").status_code == 404


def test_a_source_reads_only_the_secrets_of_its_apply_as_user(api, controller_token):
    with api.client("bob") as bob:
        bob.post(SECRETS, json={"metadata": {"name": "bobs-key"}, "stringData": {"token": "bob-only"}})
    with api.client("alice") as alice:
        apply(alice, source_doc("club", secretRef={"name": "bobs-key"}))
    headers = {"Authorization": f"Bearer {controller_token}"}
    with httpx.Client(verify=api.tls, base_url=api.url, headers=headers) as controller:
        answer = controller.get("/controller/v1/gitsources/club/credentials")
    assert answer.status_code == 404
    assert "bob-only" not in answer.text


def test_only_the_controller_may_act_as_a_user_and_only_through_a_source_manager(api, controller_token):
    with api.client("alice") as alice:
        refused = alice.get(SITES, headers={"Impersonate-User": "admin"})
        assert refused.status_code == 403
    acting = {"Authorization": f"Bearer {controller_token}", "Impersonate-User": "alice"}
    document = site_doc("gitmade", owners=["alice"])
    document["metadata"]["labels"] = {"director.io/gitsource": "club"}
    with httpx.Client(verify=api.tls, base_url=api.url, headers=acting) as controller:
        as_cli = controller.patch(
            f"{SITES}/gitmade", params={"fieldManager": "cli"}, content=json.dumps(document), headers=APPLY
        )
        assert as_cli.status_code == 403
        made = controller.patch(
            f"{SITES}/gitmade",
            params={"fieldManager": "gitsource-club", "force": "true"},
            content=json.dumps(document),
            headers=APPLY,
        )
        assert made.status_code == 201, made.text
        # The controller acting as alice is alice: it cannot make a site alice could not.
        over = site_doc("greedy", owners=["alice"], replicas=9, type="dynamic", image="nginx:1")
        over["metadata"]["labels"] = {"director.io/gitsource": "club"}
        refused = controller.patch(
            f"{SITES}/greedy",
            params={"fieldManager": "gitsource-club", "force": "true"},
            content=json.dumps(over),
            headers=APPLY,
        )
        assert refused.status_code == 403
        assert refused.json()["details"]["causes"][0]["field"] == "spec.replicas"
        # No other URL is open to it as a user.
        assert controller.get("/apis/auth.director.io/v1/tokens").status_code == 403
    from api.models import WriteRecord

    record = WriteRecord.objects.filter(site="gitmade").first()
    assert (record.username, record.field_manager) == ("alice", "gitsource-club")
    # Nobody but the controller writes with a source's field manager.
    with api.client("alice") as alice:
        spoofed = alice.patch(
            f"{SITES}/gitmade",
            params={"fieldManager": "gitsource-club"},
            content=json.dumps(document),
            headers=APPLY,
        )
        assert spoofed.status_code == 403


def test_a_source_never_takes_over_nor_deletes_a_site_it_did_not_create(api, controller_token):
    with api.client("alice") as alice:
        assert alice.post(SITES, json=site_doc("handmade")).status_code == 201
    other = site_doc("othersource", owners=["alice"])
    other["metadata"]["labels"] = {"director.io/gitsource": "other"}
    acting = {"Authorization": f"Bearer {controller_token}", "Impersonate-User": "alice"}
    with httpx.Client(verify=api.tls, base_url=api.url, headers=acting) as controller:
        assert (
            controller.patch(
                f"{SITES}/othersource",
                params={"fieldManager": "gitsource-other"},
                content=json.dumps(other),
                headers=APPLY,
            ).status_code
            == 201
        )
        mine = site_doc("handmade")
        mine["metadata"]["labels"] = {"director.io/gitsource": "club"}
        for name in ("handmade", "othersource"):
            mine["metadata"]["name"] = name
            taken = controller.patch(
                f"{SITES}/{name}",
                params={"fieldManager": "gitsource-club", "force": "true"},
                content=json.dumps(mine),
                headers=APPLY,
            )
            assert taken.status_code == 409, taken.text
            assert "never takes over" in taken.json()["message"]
            deleted = controller.delete(f"{SITES}/{name}", params={"fieldManager": "gitsource-club"})
            assert deleted.status_code == 409


def _signature(key: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def test_the_webhook_takes_only_a_good_signature_and_wakes_the_source(api):
    from store.records import GitSourceStore

    body = b'{"ref": "refs/heads/main"}'
    with api.client("alice") as alice:
        alice.post(SECRETS, json={"metadata": {"name": "club-hook"}, "stringData": {"hmac": "s3cret"}})
        apply(alice, source_doc("club", webhook={"secretRef": {"name": "club-hook"}}))
    store = GitSourceStore(api.state_dir)
    before = store.get("club").metadata.annotations
    with httpx.Client(verify=api.tls, base_url=api.url) as anyone:
        assert anyone.post("/hooks/gitsources/club", content=body).status_code == 401
        wrong = anyone.post(
            "/hooks/gitsources/club", content=body, headers={"X-Hub-Signature-256": _signature("guess", body)}
        )
        assert wrong.status_code == 401
        assert store.get("club").metadata.annotations == before
        good = anyone.post(
            "/hooks/gitsources/club",
            content=body,
            headers={"X-Hub-Signature-256": _signature("s3cret", body)},
        )
        assert good.status_code == 202, good.text
        requested = store.get("club").metadata.annotations["director.io/reconcile-requested-at"]
        assert requested.endswith("webhook")
        gitea = anyone.post(
            "/hooks/gitsources/club",
            content=body,
            headers={"X-Gitea-Signature": _signature("s3cret", body).removeprefix("sha256=")},
        )
        assert gitea.status_code == 202
        assert anyone.post(
            "/hooks/gitsources/club", content=body, headers={"X-Gitlab-Token": "s3cret"}
        ).status_code in (202, 429)
        huge = b"x" * (1024 * 1024 + 1)
        assert (
            anyone.post(
                "/hooks/gitsources/club",
                content=huge,
                headers={"X-Hub-Signature-256": _signature("s3cret", huge)},
            ).status_code
            == 413
        )
        assert anyone.post("/hooks/gitsources/nosuch", content=body).status_code == 404


def test_a_storm_of_webhook_calls_is_rate_limited(api):
    body = b"{}"
    with api.client("alice") as alice:
        alice.post(SECRETS, json={"metadata": {"name": "storm-hook"}, "stringData": {"hmac": "k"}})
        apply(alice, source_doc("storm", webhook={"secretRef": {"name": "storm-hook"}}))
    headers = {"X-Hub-Signature-256": _signature("k", body)}
    with httpx.Client(verify=api.tls, base_url=api.url) as anyone:
        codes = [
            anyone.post("/hooks/gitsources/storm", content=body, headers=headers).status_code
            for _ in range(40)
        ]
    assert set(codes) <= {202, 429}
    assert codes.count(202) <= 15
    assert 429 in codes


@pytest.fixture
def dirctl(api, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]

    def run(*args: str, who: str = "alice") -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTOR_")}
        environment |= {
            "DIRECTOR_SERVER": api.url,
            "DIRECTOR_CA": str(api.ca_file),
            "DIRECTOR_CONFIG": str(tmp_path / "dirctl.yaml"),
            "DIRECTOR_TOKEN": api.tokens[who],
        }
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=repo,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


def test_dirctl_applies_gets_describes_suspends_and_deletes_a_gitsource_and_its_secrets(
    api, dirctl, tmp_path
):
    documents = tmp_path / "club.yaml"
    documents.write_text(
        "apiVersion: director.io/v1\nkind: GitSource\nmetadata: {name: club}\n"
        "spec:\n  url: https://git.example.org/club/sites.git\n  path: sites/\n  prune: true\n"
        "  secretRef: {name: club-git}\n"
        "---\n"
        + "apiVersion: director.io/v1\nkind: Site\nmetadata: {name: clubsite}\nspec: {owners: [alice]}\n"
    )
    offline = dirctl("apply", "--dry-run=client", "-f", str(documents))
    assert offline.returncode == 0, offline.stderr
    assert "gitsource/club configured (dry run)" in offline.stdout
    applied = dirctl("apply", "-f", str(documents))
    assert applied.returncode == 0, applied.stderr
    assert "site/clubsite created" in applied.stdout and "gitsource/club created" in applied.stdout
    secret = tmp_path / "password"
    secret.write_text("s3cret-value")
    created = dirctl(
        "create",
        "secret",
        "club-git",
        "--from-literal",
        "username=alice",
        "--from-file",
        f"password={secret}",
    )
    assert created.returncode == 0, created.stderr
    assert "s3cret-value" not in created.stdout
    listed = dirctl("get", "secrets")
    assert "club-git" in listed.stdout and "password, username" in listed.stdout
    assert "s3cret-value" not in listed.stdout
    table = dirctl("get", "gitsources")
    assert table.returncode == 0, table.stderr
    assert table.stdout.split("\n")[1].split()[:2] == ["club", "Unknown"]
    assert dirctl("suspend", "gitsource", "club").stdout.strip() == "gitsource/club suspended"
    assert "Suspended: True" in dirctl("describe", "gitsource", "club").stdout
    assert dirctl("resume", "gitsource/club").returncode == 0
    requested = dirctl("reconcile", "gitsource", "club")
    assert requested.returncode == 0 and "fetch requested" in requested.stdout
    described = dirctl("describe", "gitsource", "club")
    assert "URL:           https://git.example.org/club/sites.git" in described.stdout
    assert "Suspended: False" in described.stdout
    invalid = tmp_path / "bad.yaml"
    invalid.write_text(
        "apiVersion: director.io/v1\nkind: GitSource\nmetadata: {name: bad}\nspec:\n  url: ftp://x/y\n"
    )
    refused = dirctl("apply", "-f", str(invalid))
    assert refused.returncode == 1
    assert "bad.yaml: document 1: spec.url (line 5, column 8)" in refused.stderr
    schema = dirctl("schema", "gitsource")
    assert json.loads(schema.stdout)["properties"]["kind"]["const"] == "GitSource"
    assert dirctl("delete", "secret", "club-git").returncode == 0
    assert dirctl("delete", "gitsource", "club").stdout.startswith("gitsource/club")
    assert dirctl("get", "gitsource", "club").returncode == 4
