"""Users and tokens through dirctl against the live API: an admin creates, lists, describes, disables, enables
and deletes users, and makes, lists and deletes tokens; expiry, disabling and deleting a user with sites."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.api.api_helpers import SITES, site_doc

REPO = Path(__file__).resolve().parents[2]
LOGIN = "/apis/auth.director.io/v1/login"
# The users these tests make (and remove after each), besides the session's admin, alice and bob.
MADE_HERE = ["cora", "dean", "erin", "mallory"]


@pytest.fixture
def dirctl(api, tmp_path):
    """Run dirctl with a token: one of api.tokens by name, or a secret as it is."""

    def run(*args: str, who: str = "admin", stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTOR_")} | {
            "DIRECTOR_SERVER": api.url,
            "DIRECTOR_CONFIG": str(tmp_path / "dirctl.yaml"),
            "DIRECTOR_CA": str(api.ca_file),
            "DIRECTOR_TOKEN": api.tokens.get(who, who),
        }
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=REPO,
            env=environment,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


@pytest.fixture(autouse=True)
def _no_users_left(api):
    yield
    from django.contrib.auth.models import User

    User.objects.filter(username__in=MADE_HERE).delete()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nout: {result.stdout}\nerr: {result.stderr}"
    return result.stdout


def secret_of(output: str) -> str:
    found = re.search(r"^secret: (dir_\S+)", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def rows(table: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in table.splitlines()[1:]}


def status_with(api, token: str) -> int:
    with httpx.Client(base_url=api.url, verify=api.tls, timeout=30) as client:
        return client.get(SITES, headers={"Authorization": f"Bearer {token}"}).status_code


def test_an_admin_creates_users_and_only_an_admin_may(api, dirctl):
    created = ok(dirctl("create", "user", "cora"))
    password = re.search(r"^password: (\S+)", created, re.MULTILINE)
    assert created.startswith("user/cora created") and password
    with httpx.Client(base_url=api.url, verify=api.tls, timeout=30) as client:
        assert client.post(LOGIN, auth=("cora", password.group(1))).status_code == 201

    chosen = ok(dirctl("create", "user", "dean", "--admin", "--password-stdin", stdin="a-Long-passw0rd!x\n"))
    assert chosen.strip() == "user/dean created (admin)"
    with httpx.Client(base_url=api.url, verify=api.tls, timeout=30) as client:
        assert client.post(LOGIN, auth=("dean", "a-Long-passw0rd!x")).status_code == 201

    listed = rows(ok(dirctl("get", "users")))
    assert listed["cora"][1:4] == ["no", "no", "0"] and listed["dean"][1:3] == ["yes", "no"]
    assert ok(dirctl("get", "users", "-o", "name")).split()[:3] == ["user/admin", "user/alice", "user/bob"]

    again = dirctl("create", "user", "cora")
    assert again.returncode == 1 and 'a user named "cora" exists already' in again.stderr
    bad = dirctl("create", "user", "Not A Name")
    assert bad.returncode == 1 and "is not a user name" in bad.stderr
    weak = dirctl("create", "user", "erin", "--password-stdin", stdin="123\n")
    assert weak.returncode == 1 and "the password is not good enough" in weak.stderr

    refused = dirctl("create", "user", "mallory", who="alice")
    assert refused.returncode == 1 and "only administrators manage users" in refused.stderr
    assert dirctl("get", "users", who="alice").returncode == 1
    # A user reads their own entry.
    assert "Name:        alice" in ok(dirctl("describe", "user", "alice", who="alice"))
    assert dirctl("describe", "user", "bob", who="alice").returncode == 1


def test_tokens_are_made_shown_once_listed_and_deleted(api, dirctl):
    ok(dirctl("create", "user", "cora"))
    made = ok(dirctl("create", "token", "--user", "cora", "--name", "ci", "--expires", "30d"))
    assert "created for cora (ci)" in made and "shown once" in made
    secret = secret_of(made)
    assert status_with(api, secret) == 200

    listed = ok(dirctl("get", "tokens", "--user", "cora"))
    [(token_id, row)] = rows(listed).items()
    assert row[1:3] == ["ci", "cora"] and secret not in listed and row[3] == secret[:12] + "..."
    # cora lists her own; she may not make one for another user, nor see theirs.
    assert list(rows(ok(dirctl("get", "tokens", who=secret)))) == [token_id]
    own = ok(dirctl("create", "token", "--name", "laptop", "--expires", "1h", who=secret))
    assert "created for cora (laptop)" in own
    other = dirctl("create", "token", "--user", "bob", "--name", "x", who=secret)
    assert other.returncode == 1 and "admins only" in other.stderr
    assert dirctl("get", "tokens", "--user", "bob", who=secret).returncode == 1

    too_long = dirctl("create", "token", "--user", "cora", "--name", "forever", "--expires", "400d")
    assert (
        too_long.returncode == 1 and "expiresInSeconds must be a whole number of seconds" in too_long.stderr
    )
    assert dirctl("create", "token", "--name", "x", "--expires", "soon").returncode == 2

    assert ok(dirctl("delete", "token", token_id)).startswith(f"token/{token_id} deleted")
    assert status_with(api, secret) == 401
    # Tokens made with it go with it.
    assert status_with(api, secret_of(own)) == 401
    assert dirctl("delete", "token", token_id).returncode == 4


def test_a_token_expires(api, dirctl):
    ok(dirctl("create", "user", "cora"))
    secret = secret_of(ok(dirctl("create", "token", "--user", "cora", "--name", "brief", "--expires", "2s")))
    deadline = time.monotonic() + 60
    while status_with(api, secret) == 200:
        assert time.monotonic() < deadline, "a 2 s token still works after 60 s"
        time.sleep(0.2)
    refused = dirctl("get", "sites", who=secret)
    assert refused.returncode == 3 and "expired" in refused.stderr


def test_a_disabled_users_tokens_stop_at_once_and_work_again_when_enabled(api, dirctl):
    ok(dirctl("create", "user", "cora"))
    secret = secret_of(ok(dirctl("create", "token", "--user", "cora", "--name", "ci")))
    assert ok(dirctl("get", "sites", who=secret)) == ""
    assert ok(dirctl("disable", "user", "cora")).strip() == "user/cora disabled"
    refused = dirctl("get", "sites", who=secret)
    assert refused.returncode == 3
    assert rows(ok(dirctl("get", "users")))["cora"][2] == "yes"
    assert "Disabled:    yes" in ok(dirctl("describe", "user/cora"))
    assert ok(dirctl("enable", "user", "cora")).strip() == "user/cora enabled"
    assert dirctl("get", "sites", who=secret).returncode == 0
    yourself = dirctl("disable", "user", "admin")
    assert yourself.returncode == 1 and "you cannot disable yourself" in yourself.stderr
    assert dirctl("disable", "user", "bob", who=secret).returncode == 1


def test_deleting_a_user_with_sites_needs_someone_to_take_them_over(api, dirctl, tmp_path):
    from tests.api.test_api_sshkeys import new_key

    ok(dirctl("create", "user", "cora"))
    secret = secret_of(ok(dirctl("create", "token", "--user", "cora", "--name", "ci")))
    with api.client() as admin:
        for name, owners in (("coras", ["cora"]), ("shared", ["cora", "alice"])):
            assert admin.post(SITES, json=site_doc(name, owners=owners)).status_code == 201
    key = new_key(tmp_path, "id_ed25519", "-t", "ed25519").with_suffix(".pub").read_text()
    with httpx.Client(base_url=api.url, verify=api.tls, timeout=30) as cora:
        added = cora.post(
            "/apis/auth.director.io/v1/sshkeys",
            json={"publicKey": key},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert added.status_code == 201, added.text

    described = ok(dirctl("describe", "user", "cora"))
    assert "Sites:       coras, shared" in described
    assert re.search(r"^  \d+\s+ci\s+cora\s", described, re.MULTILINE), described
    assert "id_ed25519@laptop   SHA256:" in described
    assert rows(ok(dirctl("get", "users")))["cora"][3] == "2"

    refused = dirctl("delete", "user", "cora")
    assert refused.returncode == 1
    assert 'user "cora" owns site(s) coras, shared' in refused.stderr and "--reassign-to" in refused.stderr
    assert status_with(api, secret) == 200
    nobody = dirctl("delete", "user", "cora", "--reassign-to", "nobody-here")
    assert nobody.returncode == 1 and 'no active user is named "nobody-here"' in nobody.stderr

    deleted = ok(dirctl("delete", "user", "cora", "--reassign-to", "bob"))
    assert deleted.strip() == "user/cora deleted (their sites are now bob's)"
    with api.client() as admin:
        assert admin.get(f"{SITES}/coras").json()["spec"]["owners"] == ["bob"]
        assert admin.get(f"{SITES}/shared").json()["spec"]["owners"] == ["bob", "alice"]
    assert status_with(api, secret) == 401
    gone = dirctl("describe", "user", "cora")
    assert gone.returncode == 4 and 'no user is named "cora"' in gone.stderr
    assert dirctl("delete", "user", "cora").returncode == 4
    assert dirctl("delete", "user", "bob", who="alice").returncode == 1


def test_a_user_a_gitsource_applies_as_is_not_deleted(api, dirctl):
    ok(dirctl("create", "user", "cora"))
    source = {
        "apiVersion": "director.io/v1",
        "kind": "GitSource",
        "metadata": {"name": "coras-repo"},
        "spec": {"url": "https://git.example.org/cora/sites.git", "applyAs": "cora"},
    }
    with api.client() as admin:
        assert admin.post("/apis/director.io/v1/gitsources", json=source).status_code == 201
        try:
            refused = dirctl("delete", "user", "cora", "--reassign-to", "bob")
            assert refused.returncode == 1 and "gitsource(s) coras-repo apply as" in refused.stderr
        finally:
            admin.delete("/apis/director.io/v1/gitsources/coras-repo")
