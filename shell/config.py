"""The shell server's settings, from the environment, and its host keys in the state directory.

DIRECTOR_SSH_PORT            the port it listens on (2222)
DIRECTOR_SSH_BIND            the address it listens on (0.0.0.0; `director run` uses 127.0.0.1)
DIRECTOR_SSH_PASSWORDS       "yes" (the default) lets people log in with their Director password too; "no"
                             allows SSH keys only
DIRECTOR_API_URL             the API it asks (https://127.0.0.1:$DIRECTOR_API_PORT)
DIRECTOR_API_CA              the CA the API's certificate is signed by (STATE_DIR/tls/ca.crt, the one the API
                             made, when it is there; else the system's authorities)
DIRECTOR_SHELL_TOKEN         its /shell-server/-scoped credential, or else
DIRECTOR_SHELL_TOKEN_FILE    a file holding it (STATE_DIR/shell-server/token, mode 0600)
DIRECTOR_STATE_DIR           where the host keys live (ssh/ssh_host_ed25519_key, ssh/ssh_host_rsa_key)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from specs.config import api_ca_file, default_api_url

DEFAULT_SSH_PORT = 2222
HOST_KEY_ALGORITHMS: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("ed25519", "ssh-ed25519", {}),
    ("rsa", "ssh-rsa", {"key_size": 3072}),
)


class ConfigError(Exception):
    """A setting is wrong; the message names it and says what it must be."""


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name} must be a port number (1-65535), got {raw!r}")
    return int(raw)


def token_file(state_dir: Path) -> Path:
    return state_dir / "shell-server" / "token"


@dataclass(frozen=True)
class ShellSettings:
    port: int
    bind: str
    passwords: bool
    api_url: str
    token: str
    state_dir: Path
    api_ca: Path | None = None

    @property
    def host_key_dir(self) -> Path:
        return self.state_dir / "ssh"

    @classmethod
    def from_env(cls) -> ShellSettings:
        state_dir = Path(os.environ.get("DIRECTOR_STATE_DIR", "var")).resolve()
        passwords = os.environ.get("DIRECTOR_SSH_PASSWORDS", "yes").strip().lower()
        if passwords not in ("yes", "no"):
            raise ConfigError(f"DIRECTOR_SSH_PASSWORDS must be yes or no, got {passwords!r}")
        api_url = os.environ.get("DIRECTOR_API_URL") or default_api_url(_port("DIRECTOR_API_PORT", 8000))
        token = os.environ.get("DIRECTOR_SHELL_TOKEN", "").strip()
        if not token:
            path = Path(os.environ.get("DIRECTOR_SHELL_TOKEN_FILE") or token_file(state_dir))
            try:
                token = path.read_text().strip()
            except OSError as error:
                raise ConfigError(
                    "the shell server's credential is neither in DIRECTOR_SHELL_TOKEN nor readable in "
                    f"{path} "
                    f"({error.strerror}); `director shell-server` issues one when it starts"
                ) from None
        return cls(
            port=_port("DIRECTOR_SSH_PORT", DEFAULT_SSH_PORT),
            bind=os.environ.get("DIRECTOR_SSH_BIND") or "0.0.0.0",
            passwords=passwords == "yes",
            api_url=api_url.rstrip("/"),
            token=token,
            state_dir=state_dir,
            api_ca=api_ca_file(state_dir),
        )


def ensure_host_keys(directory: Path) -> list[asyncssh.SSHKey]:
    """The host keys, made on first start (ed25519 and rsa) and kept: clients remember them."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = []
    for short, algorithm, options in HOST_KEY_ALGORITHMS:
        path = directory / f"ssh_host_{short}_key"
        if not path.exists():
            key = asyncssh.generate_private_key(algorithm, comment=f"director-shell-{short}", **options)
            partial = path.with_suffix(".partial")
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(key.export_private_key("openssh"))
            os.replace(partial, path)
            path.with_name(path.name + ".pub").write_bytes(key.export_public_key("openssh"))
        keys.append(asyncssh.read_private_key(str(path)))
    return keys


def host_key_fingerprints(state_dir: Path) -> list[str]:
    """The fingerprints of the host keys the shell server made in `state_dir` (none before it started)."""
    directory = state_dir / "ssh"
    keys = [
        asyncssh.read_public_key(str(directory / f"ssh_host_{short}_key.pub"))
        for short, _, _ in HOST_KEY_ALGORITHMS
        if (directory / f"ssh_host_{short}_key.pub").exists()
    ]
    return fingerprints(keys)


def fingerprints(keys: list[asyncssh.SSHKey]) -> list[str]:
    """As `ssh-keygen -lf` and the ssh client print them: `SHA256:... (ED25519)`."""
    names = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA"}
    return [
        f"{key.get_fingerprint('sha256')} ({names.get(key.get_algorithm(), key.get_algorithm())})"
        for key in keys
    ]
