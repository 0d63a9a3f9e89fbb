"""dirctl's configuration, as kubectl does it: a file under the user's config directory, overridden by
DIRECTOR_SERVER / DIRECTOR_TOKEN, overridden by --server / --token.

The file (YAML, mode 0600 since it holds a token):

    server: http://127.0.0.1:8000
    token: dir_...
    output: wide        # optional default for `get -o`
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

CONFIG_ENV = "DIRECTOR_CONFIG"
SERVER_ENV = "DIRECTOR_SERVER"
TOKEN_ENV = "DIRECTOR_TOKEN"
OUTPUT_CHOICES = ("", "wide", "yaml", "json", "name")


class ConfigError(Exception):
    """The configuration cannot be used; str() says which file or variable and why."""


@dataclass(frozen=True)
class CliConfig:
    server: str = ""
    token: str = ""
    output: str = ""


def default_config_path() -> Path:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "director" / "config.yaml"


def read_config_file(path: Path) -> CliConfig:
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return CliConfig()
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror}") from None
    try:
        document = yaml.safe_load(raw) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: must be a mapping with server, token and output")
    unknown = sorted(set(document) - {"server", "token", "output"})
    if unknown:
        raise ConfigError(f"{path}: unknown setting {', '.join(unknown)} (known: server, token, output)")
    values = {key: document.get(key) or "" for key in ("server", "token", "output")}
    for key, value in values.items():
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a text")
    if values["output"] not in OUTPUT_CHOICES:
        raise ConfigError(f"{path}: output must be one of wide, yaml, json, name; got {values['output']!r}")
    return CliConfig(**values)


def load_config(server: str | None = None, token: str | None = None, path: Path | None = None) -> CliConfig:
    config = read_config_file(path or default_config_path())
    config = replace(
        config,
        server=os.environ.get(SERVER_ENV) or config.server,
        token=os.environ.get(TOKEN_ENV) or config.token,
    )
    return replace(config, server=server or config.server, token=token or config.token)


def save_config(config: CliConfig, path: Path | None = None) -> Path:
    target = path or default_config_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {"server": config.server, "token": config.token}
    if config.output:
        document["output"] = config.output
    temporary = target.with_name(f".{target.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        yaml.safe_dump(document, handle, sort_keys=False)
    os.replace(temporary, target)
    return target
