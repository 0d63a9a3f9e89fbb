"""`director run`, what `make run` execs: the whole of Director with the examples, then Ctrl-C.

Run as a user would, with its own instance, state dir, ports and dirctl configuration so it never meets the
demo or another test on the shared Swarm.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from swarm_helpers import eventually, free_tcp_port, host_of, serves

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DIRECTOR = Path(sys.executable).with_name("director")
DIRCTL = Path(sys.executable).with_name("dirctl")


def test_director_run_applies_the_examples_prints_urls_and_leaves_sites_serving_on_ctrl_c(
    make_settings, base_image, swarm, tmp_path
):
    settings = make_settings()
    environment = os.environ | {
        "DIRECTOR_STATE_DIR": str(settings.state_dir),
        "DIRECTOR_INSTANCE": settings.instance,
        "DIRECTOR_HTTP_PORT": str(settings.http_port),
        "DIRECTOR_API_PORT": str(free_tcp_port()),
        "DIRECTOR_SSH_PORT": str(ssh_port := free_tcp_port()),
        "DIRECTOR_CONFIG": str(tmp_path / "dirctl.yaml"),
    }
    output = tmp_path / "director-run.out"
    with output.open("wb") as sink:
        run = subprocess.Popen(
            [str(DIRECTOR), "run", "--examples", "examples"],
            cwd=ROOT,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            # The summary's last line, printed with a flush: the lines before it are all written by then.
            eventually(lambda: "Ctrl-C stops the controller" in output.read_text(), 240, "director run ready")
            printed = output.read_text()
            for name in ("hello", "clock", "club"):
                assert f"http://{name}.{settings.sites_domain}:{settings.http_port}/" in printed
                assert f"site/{name} condition met: Ready" in printed
            assert f"http://robotics.example.org:{settings.http_port}/" in printed
            # The web UI's address, with the demo admin's password kept in the state directory.
            password = (settings.state_dir / "demo-admin-password").read_text().strip()
            api_url = f"https://127.0.0.1:{environment['DIRECTOR_API_PORT']}"
            assert f"web UI:     {api_url}/   (sign in as user admin, password {password};" in printed
            ca_file = settings.state_dir / "tls" / "ca.crt"
            assert _signs_in(api_url, "admin", password, ca_file)

            # The dirctl configuration it wrote works at once, as the README promises.
            listed = subprocess.run(
                [str(DIRCTL), "get", "sites", "-o", "name"],
                env=environment,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert listed.returncode == 0, listed.stderr
            assert listed.stdout.split() == ["site/clock", "site/club", "site/hello"]
            # And the kubeconfig it wrote, with the command it printed, as the README shows.
            kubeconfig = settings.state_dir / "kubeconfig"
            assert f"export KUBECONFIG={kubeconfig}" in printed
            kubectl = subprocess.run(
                [shutil.which("kubectl") or str(Path(sys.executable).with_name("kubectl")), "get", "sites"],
                env=environment | {"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert kubectl.returncode == 0, kubectl.stderr
            assert [line.split()[:2] for line in kubectl.stdout.splitlines()] == [
                ["NAME", "TYPE"],
                ["clock", "dynamic"],
                ["club", "dynamic"],
                ["hello", "static"],
            ]
            assert serves(settings, host_of(settings, "hello"), 200, "<h1>hello</h1>")
            assert serves(settings, "robotics.example.org", 200)
            assert f"ssh -p {ssh_port} USER/SITE@127.0.0.1" in printed
            assert "host key SHA256:" in printed and "(ED25519)" in printed
            _ssh_and_sftp_as_the_readme_shows(environment, ssh_port, tmp_path)
        finally:
            run.send_signal(signal.SIGINT)
            status = run.wait(60)
    assert status == 0, output.read_text()
    assert "the sites keep serving in Swarm" in output.read_text()
    # Director's processes are gone; Swarm keeps serving what they converged.
    time.sleep(1)
    assert serves(settings, host_of(settings, "hello"), 200, "<h1>hello</h1>")
    assert serves(settings, host_of(settings, "clock"), 200)


def _signs_in(url: str, username: str, password: str, ca_file: Path) -> bool:
    import re
    import ssl

    import httpx

    trusted = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(base_url=url, timeout=30, verify=trusted) as client:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get("/login").text)
        assert token is not None
        form = {"csrfmiddlewaretoken": token[1], "username": username, "password": password}
        # Over HTTPS Django's CSRF check wants the page's origin, as a browser sends it.
        return client.post("/login", data=form, headers={"Origin": url}).status_code == 302


def _ssh_and_sftp_as_the_readme_shows(environment: dict[str, str], port: int, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    added = subprocess.run(
        [str(DIRCTL), "keys", "add", f"{key}.pub"],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    options = [
        "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
        "-F", "/dev/null", "-i", str(key),
    ]  # fmt: skip
    shell = subprocess.run(
        ["ssh", "-p", str(port), *options, "admin/hello@127.0.0.1", "cat /site/public/index.html; exit 3"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shell.returncode == 3, shell.stderr
    assert "<h1>hello</h1>" in shell.stdout
    listed = subprocess.run(
        ["sftp", "-P", str(port), *options, "-b", "-", "admin/hello@127.0.0.1"],
        input="ls public\n", capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "public/index.html" in listed.stdout
