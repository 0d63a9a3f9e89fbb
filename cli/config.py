"""dirctl's configuration, as kubectl does it: a file under the user's config directory, overridden by
DIRECTOR_SERVER / DIRECTOR_TOKEN / DIRECTOR_CA, overridden by --server / --token / --ca.

The file (YAML, mode 0600 since it holds a token):

    server: https://127.0.0.1:8000
    token: dir_...
    ca: |               # the CA that signed the API's certificate (PEM), or a path to it; without it,
      -----BEGIN ...    # the system's trusted authorities
    output: wide        # optional default for `get -o`
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import yaml

CONFIG_ENV = "DIRECTOR_CONFIG"
SERVER_ENV = "DIRECTOR_SERVER"
TOKEN_ENV = "DIRECTOR_TOKEN"
CA_ENV = "DIRECTOR_CA"
SETTINGS = ("server", "token", "ca", "output")
OUTPUT_CHOICES = ("", "wide", "yaml", "json", "name")


class ConfigError(Exception):
    """The configuration cannot be used; str() says which file or variable and why."""


class CliConfig(NamedTuple):
    """A named tuple rather than a dataclass: dataclasses take about 8 ms to load, at every command."""

    server: str = ""
    token: str = ""
    # The CA certificate the server's must be signed by: PEM text, or the path of a file holding it.
    ca: str = ""
    output: str = ""


def default_config_path() -> Path:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "director" / "config.yaml"


@functools.cache
def _block_dumper() -> type[yaml.SafeDumper]:
    """A YAML dumper writing multi-line texts (a CA's PEM) as block scalars, readable as they are. Made when
    first needed: PyYAML takes about 15 ms to load, and most commands only read the configuration."""
    import yaml

    class BlockDumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    BlockDumper.add_representer(str, text)
    return BlockDumper


# A plain YAML scalar that is a text as it stands: from a letter or a slash on, without spaces, quotes,
# comments or flow indicators; the few such words YAML reads as booleans or null are excluded below.
_PLAIN_TEXT = re.compile(r"[A-Za-z/][A-Za-z0-9._~:/@%+=-]*")
_NOT_TEXT = frozenset(
    variant
    for word in ("yes", "no", "true", "false", "on", "off", "null")
    for variant in (word, word.capitalize(), word.upper())
)


def _as_written(raw: str) -> dict[str, str] | None:
    """The settings of a file in the shape save_config writes (`key: value` lines, the CA as a `|` or `|-`
    block), read without PyYAML, which takes longer to load than dirctl takes to list 10,000 sites; None
    for anything else (comments, quotes, another layout), which PyYAML then reads. Whatever this reads,
    PyYAML reads the same (tests/cli/test_config.py)."""
    if "\r" in raw or "\t" in raw:
        return None
    document: dict[str, str] = {}
    lines = raw.split("\n")
    if lines[-1] == "":
        lines.pop()
    index = 0
    while index < len(lines):
        key, separator, value = lines[index].partition(": ")
        index += 1
        if not separator or key not in SETTINGS or key in document:
            return None
        if value in ("|", "|-"):
            block = []
            while index < len(lines) and lines[index].startswith(" "):
                block.append(lines[index])
                index += 1
            text = _block_text(block)
            if text is None:
                return None
            document[key] = text + ("\n" if value == "|" else "")
        elif _PLAIN_TEXT.fullmatch(value) and value not in _NOT_TEXT and not value.endswith(":"):
            document[key] = value
        else:
            return None
    return document


def _block_text(lines: list[str]) -> str | None:
    """The text of a literal block's lines, all indented alike and none blank; None for any other block."""
    if not lines:
        return None
    indent = len(lines[0]) - len(lines[0].lstrip(" "))
    if any(len(line) - len(line.lstrip(" ")) != indent or line.isspace() for line in lines):
        return None
    return "\n".join(line[indent:] for line in lines)


def read_config_file(path: Path) -> CliConfig:
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return CliConfig()
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror}") from None
    document = _as_written(raw)
    if document is None:
        import yaml

        try:
            document = yaml.safe_load(raw) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: must be a mapping with server, token, ca and output")
    unknown = sorted(set(document) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting {', '.join(unknown)} (known: {', '.join(SETTINGS)})")
    values = {key: document.get(key) or "" for key in SETTINGS}
    for key, value in values.items():
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a text")
    if values["output"] not in OUTPUT_CHOICES:
        raise ConfigError(f"{path}: output must be one of wide, yaml, json, name; got {values['output']!r}")
    return CliConfig(**values)


def load_config(
    server: str | None = None, token: str | None = None, path: Path | None = None, ca: str | None = None
) -> CliConfig:
    config = read_config_file(path or default_config_path())
    config = config._replace(
        server=os.environ.get(SERVER_ENV) or config.server,
        token=os.environ.get(TOKEN_ENV) or config.token,
        ca=os.environ.get(CA_ENV) or config.ca,
    )
    return config._replace(server=server or config.server, token=token or config.token, ca=ca or config.ca)


def read_ca(path: str) -> str:
    """The PEM text of a CA certificate file, for the config (`dirctl login --ca FILE`)."""
    try:
        text = Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as error:
        problem = getattr(error, "strerror", None) or error
        raise ConfigError(f"--ca {path}: cannot be read: {problem}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(f"--ca {path}: not a PEM certificate (-----BEGIN CERTIFICATE-----)")
    return text


def save_config(config: CliConfig, path: Path | None = None) -> Path:
    import yaml

    target = path or default_config_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {"server": config.server, "token": config.token}
    if config.ca:
        document["ca"] = config.ca
    if config.output:
        document["output"] = config.output
    temporary = target.with_name(f".{target.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        yaml.dump(document, handle, Dumper=_block_dumper(), sort_keys=False)
    os.replace(temporary, target)
    return target
