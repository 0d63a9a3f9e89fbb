"""Writes of many records in one locked write (the controller's statuses and finalizers after a burst of
reconciles): each record ends as its own write would leave it, a failure of one name touches no other,
and a failure of the disk writes none of them."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from store_helpers import make_site

from specs.models import Site, SiteStatus
from store import durable
from store.durable import Counter, write_many_atomic
from store.records import BeingDeleted, InsufficientStorage, NotFound, SiteStore

FINALIZER = "director.io/cleanup"


def _versions(store: SiteStore, names: list[str]) -> list[int]:
    return [int(store.get(name).metadata.resource_version or 0) for name in names]


def test_counter_gives_each_floor_its_own_rising_value(tmp_path: Path):
    counter = Counter(tmp_path / "counter")
    counter.seed(10)
    assert counter.advance_each([0, 30, 5, 31]) == [11, 31, 32, 33]
    assert counter.advance() == 34
    assert counter.advance_each([]) == []
    assert counter.advance() == 35


def test_write_statuses_is_what_each_write_status_would_leave(store: SiteStore):
    names = [f"site-{index}" for index in range(20)]
    for name in names:
        store.create(make_site(name))
    before = max(_versions(store, names))
    results = store.write_statuses({name: SiteStatus(observed_generation=1, urls=[name]) for name in names})
    assert results == dict.fromkeys(names)
    versions = _versions(store, names)
    # Store-wide and distinct, as if written one by one, and newer than anything before.
    assert len(set(versions)) == len(names) and min(versions) > before
    for name in names:
        record = store.get(name)
        assert record.status is not None and record.status.urls == [name]
        listed = store.current(name)
        assert listed is not None and not isinstance(listed, Exception)
        assert listed.status == record.status


def test_a_handed_over_status_is_kept_as_it_is_and_any_other_is_copied(store: SiteStore):
    store.create(make_site("given"))
    store.create(make_site("lent"))
    given, lent = SiteStatus(observed_generation=1), SiteStatus(observed_generation=1)
    store.write_statuses({"given": given}, handed_over=True)
    store.write_statuses({"lent": lent})
    # The caller that hands a status over has validated it: the store keeps it rather than validate a copy.
    handed = store.current("given")
    assert isinstance(handed, type(store.get("given"))) and handed.status is given
    # A status only lent may be changed by its caller afterwards: the store keeps a validated copy.
    copied = store.current("lent")
    assert isinstance(copied, type(store.get("lent"))) and copied.status is not lent
    assert copied.status == lent


def test_write_statuses_refuses_a_missing_record_and_writes_the_others(store: SiteStore):
    store.create(make_site("here"))
    results = store.write_statuses(
        {"here": SiteStatus(observed_generation=1), "gone": SiteStatus(observed_generation=1)}
    )
    assert results["here"] is None
    assert isinstance(results["gone"], NotFound)
    status = store.get("here").status
    assert status is not None and status.observed_generation == 1
    assert not store.status_path("gone").exists()


def test_add_finalizers_adds_each_and_says_why_not_for_the_others(store: SiteStore):
    for name in ("one", "two", "leaving", "done"):
        store.create(make_site(name))
    store.add_finalizer("leaving", "director.io/other")
    store.delete("leaving")
    store.add_finalizer("done", FINALIZER)
    done_version = store.get("done").metadata.resource_version
    results = store.add_finalizers(["one", "two", "leaving", "done", "missing"], FINALIZER)
    for name in ("one", "two"):
        added = results[name]
        assert not isinstance(added, Exception) and FINALIZER in added.metadata.finalizers
        assert store.get(name).metadata.finalizers == [FINALIZER]
    assert isinstance(results["leaving"], BeingDeleted)
    assert isinstance(results["missing"], NotFound)
    # One that has it already is not written again.
    assert store.get("done").metadata.resource_version == done_version
    # Each written spec is a record on its own: deleting it now waits for the finalizer.
    store.delete("one")
    assert store.get("one").metadata.deletion_timestamp is not None


def test_a_reader_woken_by_any_rename_of_a_group_write_finds_the_record_written_without_parsing_it(
    store: SiteStore, monkeypatch: pytest.MonkeyPatch
):
    names = [f"site-{index}" for index in range(8)]
    for name in names:
        store.create(make_site(name))
    store.list()
    parse = store._parse_spec
    parses = 0

    def counted(path: Path) -> Site:
        nonlocal parses
        parses += 1
        return parse(path)

    replace = os.replace
    read_back: list[Site] = []

    def replace_then_read(source: Path, target: Path) -> None:
        replace(source, target)
        # A watcher on the loop reads each renamed record while the writer's thread is still renaming.
        found = store.current(Path(target).stem)
        assert isinstance(found, Site)
        read_back.append(found)

    monkeypatch.setattr(store, "_parse_spec", counted)
    monkeypatch.setattr(durable.os, "replace", replace_then_read)
    store.add_finalizers(names, FINALIZER)
    monkeypatch.setattr(durable.os, "replace", replace)
    assert parses == 0
    assert [site.metadata.finalizers for site in read_back] == [[FINALIZER]] * len(names)


def test_a_full_disk_writes_none_of_the_batch(store: SiteStore, monkeypatch: pytest.MonkeyPatch):
    names = [f"site-{index}" for index in range(6)]
    for name in names:
        store.create(make_site(name))
    written = durable._written_temp
    calls = 0

    def out_of_space_on_the_fourth(path: Path, data: bytes) -> Path:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return written(path, data)

    monkeypatch.setattr(durable, "_written_temp", out_of_space_on_the_fourth)
    with pytest.raises(InsufficientStorage, match="is full"):
        store.write_statuses({name: SiteStatus(observed_generation=1) for name in names})
    monkeypatch.setattr(durable, "_written_temp", written)
    assert all(store.get(name).status is None for name in names)
    # No temp file is left behind for the next start to find.
    assert not [path for path in store.status_dir.iterdir() if path.name.startswith(".")]


def test_write_many_atomic_renames_none_when_one_fails(tmp_path: Path):
    (tmp_path / "kept").write_text("old")
    (tmp_path / "blocked").mkdir()
    with pytest.raises(OSError):
        # The second cannot be written: its temp file would go in a directory that is not there.
        write_many_atomic(
            [(tmp_path / "kept", b"new"), (tmp_path / "missing" / "file", b"x"), (tmp_path / "third", b"y")]
        )
    assert (tmp_path / "kept").read_text() == "old"
    assert not (tmp_path / "third").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["blocked", "kept"]
    write_many_atomic([(tmp_path / "kept", b"new"), (tmp_path / "third", b"y")])
    assert (tmp_path / "kept").read_text() == "new" and (tmp_path / "third").read_text() == "y"
