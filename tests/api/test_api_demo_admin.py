"""What `make run` uses: a demo admin and a dirctl config, so `dirctl get sites` works right away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_admin_is_created_once_and_its_config_works(api, tmp_path):
    from django.contrib.auth.models import User

    from orchestrator.api_server import ensure_demo_admin

    config = tmp_path / "config" / "director" / "config.yaml"
    first = ensure_demo_admin(api.url, config, username="demo")
    first_token = yaml.safe_load(config.read_text())["token"]
    second = ensure_demo_admin(api.url, config, username="demo")
    saved = yaml.safe_load(config.read_text())
    assert first.password is not None and second.password is None
    assert User.objects.filter(username="demo").count() == 1
    assert saved["server"] == api.url and saved["token"] != first_token
    assert oct(config.stat().st_mode & 0o777) == "0o600"

    # The older demo token was revoked, the new one is an admin's.
    sites = f"{api.url}/apis/director.io/v1/sites"
    assert (
        httpx.get(sites, headers={"Authorization": f"Bearer {first_token}"}, verify=api.tls).status_code
        == 401
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTOR_")}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "get", "sites"],
        cwd=REPO,
        env=environment | {"DIRECTOR_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
