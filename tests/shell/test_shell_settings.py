"""The shell server's settings and host keys, without a server."""

from __future__ import annotations

import stat

import pytest

from shell.config import ConfigError, ShellSettings, ensure_host_keys, host_key_fingerprints
from shell.server import DirectorSSHServer, split_username


@pytest.fixture
def environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DIRECTOR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DIRECTOR_SHELL_TOKEN", "dir_test")
    for name in ("DIRECTOR_SSH_PORT", "DIRECTOR_SSH_BIND", "DIRECTOR_SSH_PASSWORDS", "DIRECTOR_API_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_defaults_and_passwords_turned_off(environment):
    settings = ShellSettings.from_env()
    assert (settings.port, settings.bind, settings.passwords) == (2222, "0.0.0.0", True)
    assert DirectorSSHServer(api=None, settings=settings).password_auth_supported()  # type: ignore[arg-type]
    environment.setenv("DIRECTOR_SSH_PASSWORDS", "no")
    off = ShellSettings.from_env()
    assert not DirectorSSHServer(api=None, settings=off).password_auth_supported()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("DIRECTOR_SSH_PORT", "70000", "DIRECTOR_SSH_PORT must be a port number"),
        ("DIRECTOR_SSH_PASSWORDS", "maybe", "DIRECTOR_SSH_PASSWORDS must be yes or no"),
    ],
)
def test_a_wrong_setting_is_named(environment, name, value, said):
    environment.setenv(name, value)
    with pytest.raises(ConfigError, match=said):
        ShellSettings.from_env()


def test_without_a_credential_it_says_where_it_looked(environment, tmp_path):
    environment.delenv("DIRECTOR_SHELL_TOKEN")
    with pytest.raises(ConfigError, match="shell-server/token"):
        ShellSettings.from_env()
    (tmp_path / "shell-server").mkdir()
    (tmp_path / "shell-server" / "token").write_text("dir_from_file\n")
    assert ShellSettings.from_env().token == "dir_from_file"


def test_host_keys_are_made_once_private_and_kept(tmp_path):
    first = ensure_host_keys(tmp_path / "ssh")
    assert [key.get_algorithm() for key in first] == ["ssh-ed25519", "ssh-rsa"]
    for name in ("ssh_host_ed25519_key", "ssh_host_rsa_key"):
        assert stat.S_IMODE((tmp_path / "ssh" / name).stat().st_mode) == 0o600
    again = ensure_host_keys(tmp_path / "ssh")
    assert [key.public_data for key in again] == [key.public_data for key in first]
    printed = host_key_fingerprints(tmp_path)
    assert [line.split()[1] for line in printed] == ["(ED25519)", "(RSA)"]
    assert printed[0].split()[0] == first[0].get_fingerprint("sha256")


def test_a_user_name_may_name_a_site():
    assert split_username("alice/hello") == ("alice", "hello")
    assert split_username("alice") == ("alice", None)
    assert split_username("alice/") == ("alice", None)
