"""A site's files through the API: confined to the site's directory, never through a link, written as the
site's own uid, within its upload limit, and answered like the site itself for those who may not see it."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from api_helpers import SITES, site_doc

from reconcilers.files import EDGE_GID, SiteFiles
from specs.config import Settings


@pytest.fixture
def site_dir(api, store):
    """Site `papers` of alice, with the directory the files reconciler makes."""
    with api.client() as admin:
        created = admin.post(SITES, json=site_doc("papers", ["alice"], resources={"uploadLimit": "2Ki"}))
        assert created.status_code == 201, created.text
    directory = api.state_dir / "sites" / "papers"
    shutil.rmtree(directory, ignore_errors=True)
    SiteFiles(Settings(state_dir=api.state_dir))._converge(store.get("papers"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


FILES = f"{SITES}/papers/files"


def test_write_read_list_rename_chmod_and_delete_as_the_sites_uid(api, site_dir):
    uid = site_dir.stat().st_uid
    with api.client("alice") as alice:
        written = alice.put(f"{FILES}/public/about.html", content=b"<h1>about</h1>")
        assert written.status_code == 201, written.text
        assert written.json()["type"] == "file" and written.json()["size"] == 14
        about = site_dir / "public" / "about.html"
        assert (about.stat().st_uid, about.stat().st_gid) == (uid, EDGE_GID)
        assert stat.S_IMODE(about.stat().st_mode) == 0o660

        replaced = alice.put(f"{FILES}/public/about.html", content=b"<h1>again</h1>")
        assert replaced.status_code == 200 and about.read_bytes() == b"<h1>again</h1>"
        download = alice.get(f"{FILES}/public/about.html")
        assert download.status_code == 200 and download.content == b"<h1>again</h1>"
        assert "attachment" in download.headers["Content-Disposition"]

        made = alice.put(f"{FILES}/private/notes?type=directory")
        assert made.status_code == 201
        notes = site_dir / "private" / "notes"
        assert (notes.stat().st_uid, stat.S_IMODE(notes.stat().st_mode)) == (uid, 0o700)

        tree = alice.get(FILES, params={"depth": 3}).json()
        public = next(item for item in tree["items"] if item["name"] == "public")
        assert {child["name"] for child in public["children"]} >= {"about.html", "index.html"}

        renamed = alice.patch(f"{FILES}/public/about.html", json={"name": "public/info.html"})
        assert renamed.status_code == 200 and renamed.json()["path"] == "public/info.html"
        made_executable = alice.patch(f"{FILES}/public/info.html", json={"executable": True})
        assert made_executable.json()["executable"] is True
        assert stat.S_IMODE((site_dir / "public" / "info.html").stat().st_mode) & 0o100

        uploaded = alice.post(
            f"{FILES}/public", files=[("files", ("a.txt", b"a")), ("files", ("b.txt", b"b"))]
        )
        assert uploaded.status_code == 201, uploaded.text
        assert [item["path"] for item in uploaded.json()["items"]] == ["public/a.txt", "public/b.txt"]
        assert (site_dir / "public" / "b.txt").stat().st_uid == uid

        assert alice.delete(f"{FILES}/public/info.html").status_code == 200
        assert not (site_dir / "public" / "info.html").exists()
        layout = alice.delete(f"{FILES}/public")
        assert layout.status_code == 403 and "part of every site" in layout.json()["message"]


@pytest.mark.parametrize(
    ("path", "code", "words"),
    [
        ("public/../../../etc/passwd", 400, "give a path inside the site"),
        ("public/%2e%2e/%2e%2e/etc/passwd", 400, "give a path inside the site"),
        ("public/out/passwd", 403, "symbolic link"),
        ("public/out", 403, "symbolic link"),
        ("public/hosts-link", 403, "symbolic link"),
    ],
)
def test_paths_leaving_the_site_and_links_are_refused(api, site_dir, path, code, words):
    os.symlink("/etc", site_dir / "public" / "out")
    os.symlink("/etc/hosts", site_dir / "public" / "hosts-link")
    hosts = Path("/etc/hosts").read_bytes()
    read = _raw(api, "GET", f"{FILES}/{path}")
    written = _raw(api, "PUT", f"{FILES}/{path}", b"owned")
    assert read[0] == code and words in read[1]["message"], read
    assert written[0] in (400, 403) and words in written[1]["message"], written
    assert Path("/etc/hosts").read_bytes() == hosts
    assert not os.path.exists("/etc/owned")


def _raw(api, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    """A request with its path sent exactly as written: HTTP clients would resolve `..` themselves."""
    host, port = api.url.removeprefix("https://").split(":")
    connection = http.client.HTTPSConnection(host, int(port), timeout=30, context=api.tls)
    try:
        connection.request(
            method, path, body=body, headers={"Authorization": f"Bearer {api.tokens['alice']}"}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_deleting_a_link_removes_the_link_only(api, site_dir):
    os.symlink("/etc", site_dir / "public" / "out")
    with api.client("alice") as alice:
        assert alice.delete(f"{FILES}/public/out").status_code == 200
    assert not os.path.lexists(site_dir / "public" / "out") and os.path.isdir("/etc")


def test_uploads_past_the_sites_limit_are_refused_and_leave_nothing(api, site_dir):
    with api.client("alice") as alice:
        too_big = alice.put(f"{FILES}/public/big.bin", content=b"x" * 4096)
        upload = alice.post(
            f"{FILES}/public", files=[("files", ("a.bin", b"x" * 1500)), ("files", ("b.bin", b"x" * 1500))]
        )
    assert too_big.status_code == 413
    assert "takes uploads of at most 2.0 KiB" in too_big.json()["message"]
    assert upload.status_code == 413 and "the upload of 2 files is 2.9 KiB" in upload.json()["message"]
    assert sorted(os.listdir(site_dir / "public")) == ["index.html"]


def test_a_site_one_may_not_see_has_no_files_and_a_disabled_one_is_read_only(api, site_dir):
    with api.client("bob") as bob:
        for response in (
            bob.get(FILES),
            bob.get(f"{FILES}/public/index.html"),
            bob.put(f"{FILES}/public/x", content=b"x"),
        ):
            assert response.status_code == 404 and response.json()["message"] == 'site "papers" not found'
    with api.client() as admin:
        disabled = admin.patch(
            f"{SITES}/papers",
            json={"spec": {"availability": "disabled"}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert disabled.status_code == 200, disabled.text
    with api.client("alice") as alice:
        assert alice.get(f"{FILES}/public/index.html").status_code == 200
        refused = alice.put(f"{FILES}/public/index.html", content=b"x")
        assert refused.status_code == 403 and "disabled by an administrator" in refused.json()["message"]
