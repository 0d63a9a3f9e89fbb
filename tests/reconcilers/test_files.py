"""The files reconciler on a real directory tree: layout, ownership, repair, archive and pruning."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta

import pytest
from reconciler_helpers import context, make_site

from reconcilers.files import EDGE_GID, FIRST_SITE_UID, SiteFiles
from specs.config import Settings


@pytest.fixture
def files_settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, instance="files-test", trash_retention_days=7)


def _owner_mode(path) -> tuple[int, int, int]:
    found = path.lstat()
    return found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)


async def test_new_sites_get_their_own_uid_and_a_layout_the_edge_can_read(files_settings):
    files = SiteFiles(files_settings)
    first = await files.reconcile(make_site("alpha"), context())
    await files.reconcile(make_site("beta", type="dynamic", image="director-local/site:latest"), context())
    assert [(s.step, s.result) for s in first.steps] == [("directories", "created"), ("index", "created")]

    alpha = files_settings.sites_dir / "alpha"
    uid = files.uid_of("alpha")
    assert uid is not None and uid >= FIRST_SITE_UID
    assert files.uid_of("beta") not in (None, uid)
    assert _owner_mode(alpha) == (uid, EDGE_GID, 0o750)
    assert _owner_mode(alpha / "public") == (uid, EDGE_GID, 0o2770)
    assert _owner_mode(alpha / "private") == (uid, uid, 0o700)
    assert _owner_mode(alpha / "public" / "index.html") == (uid, EDGE_GID, 0o660)
    # A new dynamic site without a command gets a starter run.sh (private to the site) serving public/.
    beta = files_settings.sites_dir / "beta"
    beta_uid = files.uid_of("beta")
    assert _owner_mode(beta / "run.sh") == (beta_uid, beta_uid, 0o770)
    assert "http.server" in (beta / "run.sh").read_text()
    assert (beta / "public" / "index.html").exists()
    assert stat.S_IMODE(files_settings.sites_dir.stat().st_mode) == 0o711

    # The uid is recorded by the directory itself: a new process finds the same one.
    restarted = SiteFiles(files_settings)
    await restarted.observe()
    assert restarted.uid_of("alpha") == uid
    assert restarted.owned_names() == {"alpha", "beta"}
    unchanged = await restarted.reconcile(make_site("alpha"), context())
    assert [s.result for s in unchanged.steps] == ["unchanged"]


async def test_drifted_permissions_are_repaired_and_user_files_kept(files_settings):
    files = SiteFiles(files_settings)
    await files.reconcile(make_site("gamma"), context())
    public = files_settings.sites_dir / "gamma" / "public"
    (public / "index.html").write_text("mine")
    os.chmod(public, 0o777)
    os.chown(files_settings.sites_dir / "gamma" / "private", 0, 0)

    repaired = await files.reconcile(make_site("gamma"), context())
    assert [(s.step, s.result) for s in repaired.steps] == [("permissions", "updated")]
    assert "public was" in repaired.steps[0].message and "777" in repaired.steps[0].message
    uid = files.uid_of("gamma")
    assert _owner_mode(public) == (uid, EDGE_GID, 0o2770)
    assert _owner_mode(public.parent / "private") == (uid, uid, 0o700)
    assert (public / "index.html").read_text() == "mine"


async def test_finalize_archives_and_observe_prunes_expired_archives(files_settings):
    files = SiteFiles(files_settings)
    await files.reconcile(make_site("delta"), context())
    uid = files.uid_of("delta")
    archived = await files.finalize("delta", context())
    assert archived.steps[0].result == "deleted"
    [kept] = list(files_settings.trash_dir.iterdir())
    assert kept.name.startswith("delta-") and (kept / "public" / "index.html").exists()

    expired_stamp = (datetime.now(UTC) - timedelta(days=8)).strftime("%Y%m%dT%H%M%SZ")
    expired = files_settings.trash_dir / f"old-site-{expired_stamp}"
    expired.mkdir()
    await files.observe()
    assert sorted(p.name for p in files_settings.trash_dir.iterdir()) == [kept.name]

    # An archived site's uid is not handed to the next new site while its files still exist.
    await files.reconcile(make_site("epsilon"), context())
    assert files.uid_of("epsilon") != uid
