"""The confined SFTP server on its own, driven by Debian's sftp client (`sftp -D` runs it as a local
program): what a person sees is the site's directory as `/`, whichever way they try to leave it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import reconcilers.sftp_server as sftp_server

SERVER = Path(sftp_server.__file__)


def sftp(root: Path, batch: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sftp", "-b", "-", "-D", f"{sys.executable} -I {SERVER} {root}"],
        input=batch,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "public").mkdir(parents=True)
    (root / "private").mkdir()
    (root / "public" / "index.html").write_text("<h1>hi</h1>\n")
    return root


def test_put_get_rename_and_remove_inside_the_root(site, tmp_path):
    local = tmp_path / "local.txt"
    local.write_text("from the laptop\n")
    answer = sftp(
        site,
        f"put {local} public/a.txt\nrename public/a.txt public/b.txt\n"
        f"get public/b.txt {tmp_path / 'back.txt'}\n"
        "mkdir public/dir\nrmdir public/dir\nrm public/index.html\nls public\n",
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert (site / "public" / "b.txt").read_text() == "from the laptop\n"
    assert (tmp_path / "back.txt").read_text() == "from the laptop\n"
    assert sorted(path.name for path in (site / "public").iterdir()) == ["b.txt"]


def test_cd_etc_and_dot_dot_stay_in_the_root(site):
    answer = sftp(site, "-cd /etc\npwd\ncd ..\ncd ../..\npwd\nls\n")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.count("Remote working directory: /\n") == 2
    assert "private" in answer.stdout and "public" in answer.stdout


def test_a_link_pointing_out_is_followed_inside_the_root(site, tmp_path):
    (site / "private" / "out").symlink_to("/etc")
    (site / "private" / "up").symlink_to("../../..")
    (site / "private" / "etc-passwd").symlink_to("/etc/passwd")
    batch = (
        f"-get private/out/passwd {tmp_path / 'a'}\n-get private/etc-passwd {tmp_path / 'b'}\n"
        f"-get private/up/etc/passwd {tmp_path / 'c'}\n-put {site / 'public' / 'index.html'} private/out/x\n"
        "cd private/up\npwd\n"
    )
    answer = sftp(site, batch)
    assert answer.returncode == 0, answer.stderr
    assert not any((tmp_path / name).exists() for name in "abc")
    assert not (site / "etc").exists() and not Path("/etc/x").exists()
    # up -> ../../.. from /private climbs no higher than the root.
    assert "Remote working directory: /\n" in answer.stdout


def test_links_made_here_point_where_the_site_s_containers_see_them(site, tmp_path):
    answer = sftp(site, "symlink /public/index.html private/home-page\nsymlink index.html public/alias\n")
    assert answer.returncode == 0, answer.stderr
    assert (site / "private" / "home-page").readlink() == Path("/site/public/index.html")
    assert (site / "public" / "alias").readlink() == Path("index.html")
    # Read through the link, /site/public/index.html is the root's public/index.html.
    fetched = sftp(site, f"get private/home-page {tmp_path / 'page'}\n")
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "page").read_text() == "<h1>hi</h1>\n"


def test_a_large_file_arrives_whole(site, tmp_path):
    data = bytes(range(256)) * 4096 * 5  # 5 MiB
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    answer = sftp(site, f"put {local} private/big.bin\nget private/big.bin {tmp_path / 'again.bin'}\n")
    assert answer.returncode == 0, answer.stderr
    assert (site / "private" / "big.bin").read_bytes() == data
    assert (tmp_path / "again.bin").read_bytes() == data
