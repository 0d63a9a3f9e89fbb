"""dirctl's configuration file: what save_config writes reads back without PyYAML, and whatever that reader
takes it reads exactly as PyYAML does; anything else is left to PyYAML."""

from __future__ import annotations

import itertools

import pytest
import yaml

from cli import config
from cli.config import CliConfig, read_config_file, save_config

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUX2+/abc=\n-----END CERTIFICATE-----\n"
SERVERS = ["https://127.0.0.1:8000", "http://director.example.org/api", "", "yes", "123", "a: b", "x #y"]
TOKENS = ["dir_Ab-3_x9", "", "null", "True", "dir_x:", "-dir", "~"]
CAS = ["", PEM, PEM.rstrip("\n"), "/etc/director/ca.crt", " indented\nfirst line\n", "a\n\nb\n"]
OUTPUTS = ["", "wide", "name"]


def _read(raw: str) -> dict[str, str] | None:
    return config._as_written(raw)


@pytest.mark.parametrize(("server", "token", "ca"), list(itertools.product(SERVERS, TOKENS, CAS)))
def test_what_save_config_writes_reads_back_alike(tmp_path, server, token, ca):
    path = tmp_path / "config.yaml"
    for output in OUTPUTS:
        save_config(CliConfig(server=server, token=token, ca=ca, output=output), path)
        raw = path.read_text()
        fast = _read(raw)
        if fast is not None:
            assert fast == (yaml.safe_load(raw) or {}), raw
        expected = {"server": server, "token": token, "ca": ca, "output": output}
        try:
            read = read_config_file(path)
        except config.ConfigError:
            continue  # a value YAML reads as no text (yes, 123, null...): refused, as before
        assert read._asdict() == expected


def test_the_usual_file_is_read_without_pyyaml(tmp_path):
    path = tmp_path / "config.yaml"
    for ca in (PEM, PEM.rstrip("\n"), "/etc/director/ca.crt", ""):
        save_config(
            CliConfig(server="https://127.0.0.1:8000", token="dir_Ab-3_x9", ca=ca, output="wide"), path
        )
        assert _read(path.read_text()) is not None


@pytest.mark.parametrize(
    "raw",
    [
        "server: https://x:1 # a comment\n",
        "# comment\nserver: https://x\n",
        "server: 'https://x'\n",
        'token: "dir_x"\n',
        "server: http:\n",
        "server: on\n",
        "server: Off\n",
        "token: NULL\n",
        "server: https://x\nserver: https://y\n",
        "unknown: x\n",
        "ca: |\n  a\n   b\n",
        "ca: |\n  a\n\n  b\n",
        "ca: |\n  a\n  \n",
        "ca: |+\n  a\n\n",
        "ca: |2\n   a\n",
        "ca: >\n  a\n  b\n",
        "ca: |\nserver: x\n",
        "server: https://x\r\n",
        "server:\tx\n",
        "---\nserver: https://x\n",
        "{server: https://x}\n",
        "server: https://x\n  more\n",
        "server:\n",
        "",
    ],
)
def test_any_other_file_is_left_to_pyyaml_or_read_alike(raw):
    fast = _read(raw)
    if fast is not None:
        assert fast == (yaml.safe_load(raw) or {})
