"""The files reconciler on a real directory tree: layout, ownership, repair, archive and pruning."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reconciler_helpers import context, make_site

from controller.types import PermanentError
from reconcilers import files as files_module
from reconcilers.files import EDGE_GID, FIRST_SITE_UID, SiteFiles
from specs.config import Settings
from specs.models import Site


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


async def test_a_converged_site_is_checked_without_converging_again_until_its_directories_change(
    files_settings, monkeypatch
):
    files = SiteFiles(files_settings)
    site = make_site("gamma")
    await files.reconcile(site, context())
    converges = 0
    converge = files._converge

    def counted(site: Site) -> tuple[list[Any], int]:
        nonlocal converges
        converges += 1
        return converge(site)

    monkeypatch.setattr(files, "_converge", counted)
    again = await files.reconcile(site, context())
    assert [s.result for s in again.steps] == ["unchanged"] and converges == 0
    assert again.provides == {"uid": files.uid_of("gamma")}

    # Any change to a directory (its mode, an entry removed, a replacement) is converged again.
    public = files_settings.sites_dir / "gamma" / "public"
    public.chmod(0o777)
    repaired = await files.reconcile(site, context())
    assert converges == 1 and [s.result for s in repaired.steps] == ["updated"]
    assert _owner_mode(public)[2] == 0o2770
    await files.reconcile(site, context())
    assert converges == 1
    # Another site's directory made beside it changes nothing of this one's.
    await files.reconcile(make_site("delta"), context())
    await files.reconcile(site, context())
    assert converges == 2  # delta's own
    (files_settings.sites_dir / "gamma" / "private").rmdir()
    await files.reconcile(site, context())
    assert converges == 3 and (files_settings.sites_dir / "gamma" / "private").is_dir()
    # So is a new ask of the same directories: a dynamic site without a command gets its starter run.sh.
    await files.reconcile(make_site("gamma", type="dynamic", image="director-local/site:latest"), context())
    assert converges == 4 and (files_settings.sites_dir / "gamma" / "run.sh").exists()


async def test_a_burst_of_new_sites_is_converged_in_a_few_thread_hops_each_with_its_own_outcome(
    files_settings, monkeypatch
):
    files = SiteFiles(files_settings)
    files_settings.sites_dir.mkdir(parents=True)
    (files_settings.sites_dir / "blocked").write_text("a file where the directory goes")
    hops = 0
    to_thread = asyncio.to_thread

    async def counted(call: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await to_thread(call, *args, **kwargs)

    monkeypatch.setattr(files_module.asyncio, "to_thread", counted)
    names = [f"burst-{index}" for index in range(40)]
    outcomes = await asyncio.gather(
        *(files.reconcile(make_site(name), context()) for name in [*names, "blocked"]), return_exceptions=True
    )
    # A thread hop per site cost more than its converge: the burst shares a few.
    assert 1 <= hops <= 3
    *converged, blocked = outcomes
    assert isinstance(blocked, PermanentError) and "blocked exists but is not a directory" in str(blocked)
    uids = set()
    for name, outcome in zip(names, converged, strict=True):
        assert not isinstance(outcome, BaseException)
        assert outcome.provides == {"uid": files.uid_of(name)}
        uids.add(outcome.provides["uid"])
        assert (files_settings.sites_dir / name / "public" / "index.html").exists()
    assert len(uids) == len(names)


async def test_what_is_kept_of_a_converged_site_is_small(files_settings):
    # One is kept per site for the life of the controller: at 10,000 sites, a kilobyte each is 10 MB.
    files = SiteFiles(files_settings)
    names = [f"kept-{index}" for index in range(50)]
    for name in names:
        await files.reconcile(make_site(name), context())

    def size(value: object) -> int:
        if isinstance(value, (tuple, list)):
            return sys.getsizeof(value) + sum(size(item) for item in value)
        if hasattr(value, "__slots__") and not hasattr(value, "__dict__"):
            return sys.getsizeof(value) + sum(size(getattr(value, slot)) for slot in value.__slots__)
        if hasattr(value, "__dict__"):
            return (
                sys.getsizeof(value) + sys.getsizeof(vars(value)) + sum(size(v) for v in vars(value).values())
            )
        # Small ints and booleans are shared by everyone.
        return (
            0
            if isinstance(value, bool) or (isinstance(value, int) and -5 <= value <= 256)
            else sys.getsizeof(value)
        )

    kept = [size(files._converged[name]) for name in names]
    assert max(kept) <= 300, kept


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


def _real_etc() -> tuple[tuple[int, int, int], tuple[int, int, int], bool]:
    """What no reconcile may ever change: /etc's and /etc/passwd's owner and mode; no starter file in /etc.

    (Not /etc's whole contents: other programs on this machine may change those meanwhile.)
    """
    etc = Path("/etc")
    starter_files = any((etc / name).exists() for name in ("index.html", "run.sh"))
    return _owner_mode(etc), _owner_mode(etc / "passwd"), starter_files


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory outside every site, standing in for /etc: root's, with a file and a directory in it."""
    stand_in = tmp_path / "etc"
    (stand_in / "ssh").mkdir(parents=True)
    (stand_in / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (stand_in / "ssh" / "sshd_config").write_text("PermitRootLogin no\n")
    os.chmod(stand_in, 0o755)
    os.chmod(stand_in / "passwd", 0o644)
    return stand_in


def _tree(root: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    """Every name under root with its owner, group, mode and (for files) contents, links not followed."""
    found: dict[str, tuple[int, int, int, bytes | None]] = {}
    for directory, names, files in os.walk(root):
        for name in ["", *names, *files]:
            path = Path(directory) / name
            contents = path.read_bytes() if path.is_file() and not path.is_symlink() else None
            found[str(path.relative_to(root))] = (*_owner_mode(path), contents)
    return found


class SiteActsBeforeACall:
    """Stands in for `os` in reconcilers.files: right before the reconciler's Nth call into it, the site swaps
    one entry of its directory for a symbolic link to `target` (moving a real entry aside, as `mv` would).

    Run for every N, it is every instant a site could pick to race the reconciler's checks.
    """

    def __init__(self, site_dir: Path, entry: str, target: Path, at_call: int) -> None:
        self.site_dir = site_dir
        self.entry = entry
        self.target = target
        self.at_call = at_call
        self.calls = 0
        self.acted = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(os, name)
        if not callable(attribute):
            return attribute

        def called(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self.at_call:
                self._swap()
            return attribute(*args, **kwargs)

        return called

    def _swap(self) -> None:
        path = self.site_dir / self.entry
        if path.is_symlink() or not path.parent.is_dir() or path.parent.is_symlink():
            return
        if path.exists():
            os.rename(path, path.with_name(f"{path.name}.moved"))
        os.symlink(self.target, path)
        self.acted = True


async def _new_site(settings: Settings) -> None:
    """Nothing: the reconcile under test creates the site."""


async def _drifted_site(settings: Settings) -> None:
    """A converged site whose every directory has drifted and whose run.sh is gone: all of it is redone."""
    await SiteFiles(settings).reconcile(_racing_site(), context())
    site_dir = settings.sites_dir / "raced"
    os.chmod(site_dir, 0o755)
    os.chmod(site_dir / "public", 0o777)
    os.chown(site_dir / "private", 0, 0)
    (site_dir / "run.sh").unlink()


def _racing_site() -> Site:
    return make_site("raced", type="dynamic", image="director-local/site:latest")


@pytest.mark.parametrize("prepare", [_new_site, _drifted_site], ids=["creating", "repairing"])
@pytest.mark.parametrize("entry", ["public", "private", "public/index.html", "run.sh"])
async def test_a_site_swapping_in_a_link_at_any_instant_never_gets_the_target_touched(
    tmp_path, outside, entry: str, prepare: Callable[[Settings], Awaitable[None]], monkeypatch
):
    etc_before = _real_etc()
    outside_before = _tree(outside)
    target = outside if entry in ("public", "private") else outside / "passwd"

    async def reconcile_with(at_call: int) -> tuple[SiteActsBeforeACall, str]:
        settings = Settings(state_dir=tmp_path / f"run-{at_call}", instance="files-test")
        await prepare(settings)
        files = SiteFiles(settings)
        site_os = SiteActsBeforeACall(settings.sites_dir / "raced", entry, target, at_call)
        with monkeypatch.context() as patched:
            patched.setattr(files_module, "os", site_os)
            try:
                await files.reconcile(_racing_site(), context())
            except PermanentError as refused:
                return site_os, str(refused)
        return site_os, ""

    calls = (await reconcile_with(at_call=0))[0].calls
    assert calls > 5
    acted = 0
    refusals: list[str] = []
    for at_call in range(1, calls + 1):
        site_os, refusal = await reconcile_with(at_call)
        assert _tree(outside) == outside_before, (
            f"the target was touched when the site acted before call {at_call}"
        )
        acted += site_os.acted
        refusals += [refusal] if refusal else []
    assert acted > calls // 2
    # Each reconcile either did its work on what was there when it looked, or says what is in the way.
    for refusal in refusals:
        assert f"raced/{entry.split('/')[0]} is not a directory" in refusal
        assert "never follows links" in refusal
    assert _real_etc() == etc_before


async def test_links_to_etc_left_in_a_site_are_reported_and_never_followed(files_settings):
    files = SiteFiles(files_settings)
    site = make_site("linker", type="dynamic", image="director-local/site:latest")
    await files.reconcile(site, context())
    site_dir = files_settings.sites_dir / "linker"
    etc_before = _real_etc()

    for entry in ("public", "private"):
        os.rename(site_dir / entry, site_dir / f"{entry}.real")
        os.symlink("/etc", site_dir / entry)
        with pytest.raises(PermanentError, match=f"linker/{entry} is not a directory .* move it away"):
            await files.reconcile(site, context())
        assert _real_etc() == etc_before
        os.unlink(site_dir / entry)
        os.rename(site_dir / f"{entry}.real", site_dir / entry)

    # A starter file is written only where there is nothing: a link to /etc/passwd stays a link.
    (site_dir / "run.sh").unlink()
    os.symlink("/etc/passwd", site_dir / "run.sh")
    outcome = await files.reconcile(site, context())
    assert [s.result for s in outcome.steps] == ["unchanged"]
    assert os.readlink(site_dir / "run.sh") == "/etc/passwd"
    assert _real_etc() == etc_before


async def test_archiving_and_pruning_a_site_full_of_links_follows_none(files_settings, outside):
    files = SiteFiles(files_settings)
    await files.reconcile(make_site("leaving"), context())
    site_dir = files_settings.sites_dir / "leaving"
    for entry in ("public", "private"):
        os.rename(site_dir / entry, site_dir / f"{entry}.real")
        os.symlink(outside, site_dir / entry)
    outside_before = _tree(outside)

    assert (await files.finalize("leaving", context())).steps[0].result == "deleted"
    [archived] = list(files_settings.trash_dir.iterdir())
    assert not site_dir.exists() and not archived.is_symlink()
    assert os.readlink(archived / "public") == str(outside)
    assert _tree(outside) == outside_before

    expired_stamp = (datetime.now(UTC) - timedelta(days=8)).strftime("%Y%m%dT%H%M%SZ")
    archived.rename(archived.with_name(f"leaving-{expired_stamp}"))
    await files.observe()
    assert list(files_settings.trash_dir.iterdir()) == []
    assert _tree(outside) == outside_before
