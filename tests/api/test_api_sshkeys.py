"""SSH keys through the API (`/apis/auth.director.io/v1/sshkeys`), the shell server's key lookup, and who
may open the terminal websockets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as websocket_connect

KEYS = "/apis/auth.director.io/v1/sshkeys"
PUBLICKEY = "/shell-server/v1/publickey"
SESSIONS = "/shell-server/v1/sessions"


def new_key(directory: Path, name: str, *options: str) -> Path:
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-N", "", "-C", f"{name}@laptop", "-f", str(path), *options], check=True
    )
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return new_key(tmp_path, "id_ed25519", "-t", "ed25519")


def test_a_user_adds_lists_shows_and_deletes_a_key(api, key):
    public = key.with_suffix(".pub").read_text()
    with api.client("alice") as alice:
        added = alice.post(KEYS, json={"publicKey": public})
        assert added.status_code == 201, added.text
        document = added.json()
        assert document["name"] == "id_ed25519@laptop"  # the key file's comment
        assert document["fingerprint"].startswith("SHA256:")
        assert public.startswith(document["publicKey"])
        assert [item["name"] for item in alice.get(KEYS).json()["items"]] == ["id_ed25519@laptop"]
        assert alice.get(f"{KEYS}/id_ed25519@laptop").json()["fingerprint"] == document["fingerprint"]
        with api.client("bob") as bob:
            assert bob.get(KEYS).json()["items"] == []
            assert bob.get(f"{KEYS}/id_ed25519@laptop").status_code == 404
        assert alice.delete(f"{KEYS}/id_ed25519@laptop").status_code == 200
        assert alice.get(KEYS).json()["items"] == []


def test_a_key_belongs_to_one_user_and_a_name_to_one_key(api, key, tmp_path):
    public = key.with_suffix(".pub").read_text()
    other = new_key(tmp_path, "second", "-t", "ed25519").with_suffix(".pub").read_text()
    with api.client("alice") as alice, api.client("bob") as bob:
        assert alice.post(KEYS, json={"publicKey": public, "name": "laptop"}).status_code == 201
        again = alice.post(KEYS, json={"publicKey": public, "name": "desk"})
        assert again.status_code == 409 and 'as "laptop"' in again.json()["message"]
        theirs = bob.post(KEYS, json={"publicKey": public})
        assert theirs.status_code == 409 and "by another user" in theirs.json()["message"]
        same_name = alice.post(KEYS, json={"publicKey": other, "name": "laptop"})
        assert same_name.status_code == 409 and "--name" in same_name.json()["message"]
        alice.delete(f"{KEYS}/laptop")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("not a key", "not an OpenSSH public key"),
        ("", "exactly one key line"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
            "exactly one key line",
        ),
    ],
)
def test_what_is_not_one_public_key_is_refused_with_what_to_send(api, text, said):
    with api.client("alice") as alice:
        answer = alice.post(KEYS, json={"publicKey": text})
    assert answer.status_code == 422
    assert said in answer.json()["message"]


def test_a_private_key_is_refused_and_a_weak_rsa_key_too(api, key, tmp_path):
    with api.client("alice") as alice:
        private = alice.post(KEYS, json={"publicKey": "-----BEGIN OPENSSH PRIVATE KEY----- abc"})
        assert private.status_code == 422 and "PRIVATE key" in private.json()["message"]
        weak = new_key(tmp_path, "weak", "-t", "rsa", "-b", "1024").with_suffix(".pub").read_text()
        answer = alice.post(KEYS, json={"publicKey": weak})
        assert answer.status_code == 422 and "too weak" in answer.json()["message"]


def test_a_component_credential_has_no_keys(api):
    with api.client("shell") as shell:
        assert shell.get(KEYS).status_code == 403


def test_the_shell_server_learns_whose_key_it_is_and_nobody_else_may_ask(api, key, tmp_path):
    public = key.with_suffix(".pub").read_text()
    stranger = new_key(tmp_path, "stranger", "-t", "ed25519").with_suffix(".pub").read_text()
    with api.client("alice") as alice:
        assert alice.post(KEYS, json={"publicKey": public, "name": "laptop"}).status_code == 201
        assert alice.post(PUBLICKEY, json={"username": "alice", "publicKey": public}).status_code == 403
    try:
        with api.client("shell") as shell:
            found = shell.post(PUBLICKEY, json={"username": "alice", "publicKey": public})
            assert found.status_code == 200, found.text
            assert (found.json()["username"], found.json()["key"]) == ("alice", "laptop")
            assert shell.post(PUBLICKEY, json={"username": "bob", "publicKey": public}).status_code == 404
            assert shell.post(PUBLICKEY, json={"username": "alice", "publicKey": stranger}).status_code == 404
    finally:
        with api.client("alice") as alice:
            alice.delete(f"{KEYS}/laptop")


def _ws(api, path: str) -> str:
    return "ws" + api.url.removeprefix("http") + path


def connect(url: str, **options):
    """A websocket to the live server, trusting its CA, given the time a busy machine takes to answer."""
    return websocket_connect(url, ssl=API_TLS[0], open_timeout=60, **options)


API_TLS: list = []


@pytest.fixture(autouse=True)
def _trust_the_server(api) -> None:
    API_TLS[:] = [api.tls]


def test_only_the_shell_server_s_credential_opens_its_session_socket(api):
    for who in ("alice", "admin"):
        with pytest.raises(InvalidStatus) as refused:
            connect(_ws(api, SESSIONS), additional_headers={"Authorization": f"Bearer {api.tokens[who]}"})
        assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as anonymous:
        connect(_ws(api, SESSIONS))
    assert anonymous.value.response.status_code == 403


def test_the_shell_server_s_credential_may_not_open_a_browser_terminal(api):
    headers = {"Authorization": f"Bearer {api.tokens['shell']}"}
    with pytest.raises(InvalidStatus) as refused:
        connect(_ws(api, "/ws/sites/hello/terminal"), additional_headers=headers, origin=api.url)
    assert refused.value.response.status_code == 403


def test_a_session_for_someone_else_s_site_is_refused_in_plain_words(api, store):
    from specs.models import ObjectMeta, Site, SiteSpec

    store.create(Site(metadata=ObjectMeta(name="alices"), spec=SiteSpec(owners=["alice"])))
    headers = {"Authorization": f"Bearer {api.tokens['shell']}"}
    with connect(_ws(api, SESSIONS), additional_headers=headers) as socket:
        socket.send(json.dumps({"user": "bob", "site": "alices", "kind": "exec", "command": "true"}))
        answer = json.loads(socket.recv(timeout=30))
    assert answer == {"error": 'you have no site named "alices" (ssh bob@HOST lists yours)'}
    with connect(_ws(api, SESSIONS), additional_headers=headers) as socket:
        socket.send(json.dumps({"user": "alice", "site": "alices", "kind": "nonsense"}))
        assert "kind must be one of" in json.loads(socket.recv(timeout=30))["error"]


def test_the_browser_terminal_needs_this_origin_and_a_logged_in_person(api):
    path = _ws(api, "/ws/sites/hello/terminal")
    for origin in ("http://evil.example", None):
        with pytest.raises(InvalidStatus) as refused:
            connect(path, origin=origin)
        assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as anonymous:
        connect(path, origin=api.url)
    assert anonymous.value.response.status_code == 403
