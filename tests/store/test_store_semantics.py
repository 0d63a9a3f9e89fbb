from __future__ import annotations

import gc
import os
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import make_site

from specs import plainyaml, yamlio
from specs.models import Condition, LastReconcile, ObjectMeta, Site, SiteSpec, SiteStatus
from store import records
from store.records import (
    AlreadyExists,
    BeingDeleted,
    Conflict,
    InvalidRecord,
    NotFound,
    RecordError,
    SiteStore,
)

FINALIZER = "director.io/cleanup"


def test_create_sets_server_fields_and_drops_status(store: SiteStore):
    site = make_site("blog", type="static")
    site.status = SiteStatus(observed_generation=7)
    site.metadata.generation = 42
    created = store.create(site)
    assert created.metadata.generation == 1
    assert created.metadata.uid and created.metadata.resource_version == "1"
    assert created.metadata.creation_timestamp is not None
    assert created.status is None
    fetched = store.get("blog")
    assert fetched == created


def test_create_existing_name_is_refused_also_while_deleting(store: SiteStore):
    store.create(make_site("blog"))
    with pytest.raises(AlreadyExists, match="'blog' already exists"):
        store.create(make_site("blog"))
    store.add_finalizer("blog", FINALIZER)
    store.delete("blog")
    with pytest.raises(AlreadyExists):
        store.create(make_site("blog"))


def test_generation_rises_on_spec_change_only(store: SiteStore):
    site = store.create(make_site("blog"))
    site.metadata.labels = {"team": "web"}
    relabelled = store.update(site)
    assert relabelled.metadata.generation == 1
    assert int(relabelled.metadata.resource_version or 0) > int(site.metadata.resource_version or 0)
    relabelled.spec.owners = ["alice"]
    changed = store.update(relabelled)
    assert changed.metadata.generation == 2
    with_status = store.update_status("blog", SiteStatus(observed_generation=2))
    assert with_status.metadata.generation == 2
    assert int(with_status.metadata.resource_version or 0) > int(changed.metadata.resource_version or 0)


def test_unchanged_update_writes_nothing(store: SiteStore):
    site = store.create(make_site("blog"))
    again = store.update(site)
    assert again.metadata.resource_version == site.metadata.resource_version


def test_resource_version_is_store_wide_and_monotonic(store: SiteStore):
    versions = [int(store.create(make_site(f"site-{i}")).metadata.resource_version or 0) for i in range(5)]
    versions.append(int(store.update_status("site-0", SiteStatus()).metadata.resource_version or 0))
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    # A second store object on the same directory continues the same counter.
    other = SiteStore(store.state_dir)
    assert int(other.create(make_site("later")).metadata.resource_version or 0) > versions[-1]


def test_stale_resource_version_conflicts(store: SiteStore):
    first = store.create(make_site("blog"))
    mine = store.get("blog")
    theirs = store.get("blog")
    theirs.spec.replicas = 3
    store.update(theirs)
    mine.spec.replicas = 2
    with pytest.raises(Conflict, match="resourceVersion"):
        store.update(mine)
    with pytest.raises(Conflict):
        store.delete("blog", resource_version=first.metadata.resource_version)
    assert store.get("blog").spec.replicas == 3


def test_status_write_does_not_make_a_spec_writer_stale(store: SiteStore):
    store.create(make_site("blog"))
    mine = store.get("blog")
    store.update_status("blog", SiteStatus(observed_generation=1))
    mine.spec.replicas = 2
    assert store.update(mine).spec.replicas == 2
    # A made-up future version is refused too.
    later = store.get("blog")
    later.metadata.resource_version = "999999"
    later.spec.replicas = 3
    with pytest.raises(Conflict):
        store.update(later)


def test_server_fields_cannot_be_changed_by_the_caller(store: SiteStore):
    created = store.create(make_site("blog"))
    forged = created.model_copy(deep=True)
    forged.metadata.uid = "0000"
    forged.metadata.generation = 99
    forged.metadata.creation_timestamp = None
    forged.metadata.labels = {"a": "b"}
    updated = store.update(forged)
    assert updated.metadata.uid == created.metadata.uid
    assert updated.metadata.generation == 1
    assert updated.metadata.creation_timestamp == created.metadata.creation_timestamp
    assert updated.metadata.deletion_timestamp is None


def test_update_status_keeps_spec_and_is_merged_on_read(store: SiteStore, tmp_path):
    store.create(make_site("blog"))
    status = SiteStatus(
        observed_generation=1,
        conditions=[
            Condition(
                type="Ready", status="True", reason="Running", last_transition_time="2026-01-01T00:00:00Z"
            )
        ],
    )
    store.update_status("blog", status)
    site = store.get("blog")
    assert site.status is not None and site.status.condition("Ready") is not None
    spec_text = store.spec_path("blog").read_text()
    assert "status" not in yaml.safe_load(spec_text)
    assert yaml.safe_load(store.status_path("blog").read_text())["status"]["observedGeneration"] == 1
    with pytest.raises(NotFound):
        store.update_status("missing", status)


def test_a_status_record_reads_back_unchanged_whatever_its_messages_hold(store: SiteStore):
    # Characters YAML readers would fold (NEL, LS, PS) or refuse (C1 controls, DEL, BOM, non-characters)
    # beside the ones JSON itself escapes, in a record written as JSON and read as YAML.
    odd = 'a\x85b\u2028c\u2029d\ufeffe\x9bf\x7fg\ufffeh\tI\r\n"j\\k\u00e9\U0001f600 #: - [x] {y}'
    store.create(make_site("blog"))
    status = SiteStatus(
        observed_generation=1,
        conditions=[
            Condition(
                type="Ready",
                status="False",
                reason="Failed",
                message=odd,
                last_transition_time="2026-01-01T00:00:00Z",
            )
        ],
        last_reconcile=LastReconcile(
            time="2026-01-01T00:00:01Z", result="failed", duration_seconds=0.001, message=odd
        ),
    )
    store.update_status("blog", status)
    text = store.status_path("blog").read_text()
    document = yaml.safe_load(text)["status"]
    assert document["conditions"][0]["message"] == odd
    assert document["lastReconcile"] == {
        "time": "2026-01-01T00:00:01Z",
        "result": "failed",
        "durationSeconds": 0.001,
        "message": odd,
    }
    # Another process's store, which has not seen the write, parses the file.
    fresh = SiteStore(store.state_dir).get("blog")
    assert fresh.status == status


def test_delete_without_finalizers_removes_both_records(store: SiteStore):
    store.create(make_site("blog"))
    store.update_status("blog", SiteStatus())
    assert store.delete("blog") is None
    assert not store.spec_path("blog").exists() and not store.status_path("blog").exists()
    with pytest.raises(NotFound):
        store.get("blog")
    with pytest.raises(NotFound):
        store.delete("blog")


def test_delete_with_finalizers_waits_for_the_last_one(store: SiteStore):
    store.create(make_site("blog"))
    store.add_finalizer("blog", FINALIZER)
    store.add_finalizer("blog", "director.io/routes")
    deleting = store.delete("blog")
    assert deleting is not None and deleting.metadata.deletion_timestamp is not None
    again = store.delete("blog")
    assert again is not None and again.metadata.deletion_timestamp == deleting.metadata.deletion_timestamp
    with pytest.raises(BeingDeleted):
        store.add_finalizer("blog", "director.io/other")
    remaining = store.remove_finalizer("blog", FINALIZER)
    assert remaining is not None and remaining.metadata.finalizers == ["director.io/routes"]
    assert store.remove_finalizer("blog", "director.io/routes") is None
    with pytest.raises(NotFound):
        store.get("blog")


def test_update_removing_last_finalizer_of_deleting_record_deletes_it(store: SiteStore):
    store.create(make_site("blog"))
    store.add_finalizer("blog", FINALIZER)
    store.delete("blog")
    site = store.get("blog")
    site.metadata.finalizers = []
    store.update(site)
    with pytest.raises(NotFound):
        store.get("blog")


def test_history_keeps_previous_generations_bounded(store: SiteStore):
    site = store.create(make_site("blog"))
    for replicas in range(2, 8):
        site.spec.replicas = replicas
        site = store.update(site)
    history = store.history("blog")
    assert [h.metadata.generation for h in history] == [6, 5, 4]
    assert [h.spec.replicas for h in history] == [6, 5, 4]
    store.delete("blog")
    assert store.history("blog") == []


def test_list_is_sorted_and_reports_broken_records(store: SiteStore):
    for name in ["zeta", "alpha", "mid"]:
        store.create(make_site(name))
    store.spec_path("mid").write_text("apiVersion: director.io/v1\nkind: Site\nmetadata: {name: mid\nspec: [")
    (store.specs_dir / "bad-spec.yaml").write_text(
        "apiVersion: director.io/v1\nkind: Site\nmetadata:\n  name: bad-spec\nspec:\n  replicas: 99\n"
    )
    sites, errors = store.list()
    assert [s.name for s in sites] == ["alpha", "zeta"]
    by_name = {e.name: e for e in errors}
    assert set(by_name) == {"bad-spec", "mid"}
    assert "line" in by_name["mid"].message
    assert "spec.replicas" in by_name["bad-spec"].message
    with pytest.raises(InvalidRecord, match=r"spec\.replicas"):
        store.get("bad-spec")
    # A broken record can still be deleted.
    assert store.delete("mid") is None
    assert [e.name for e in store.list()[1]] == ["bad-spec"]


def test_hand_edited_record_is_read_back(store: SiteStore):
    store.create(make_site("blog"))
    store.list()
    path = store.spec_path("blog")
    path.write_text(path.read_text().replace("replicas: 1", "replicas: 4"))
    assert store.get("blog").spec.replicas == 4
    assert store.list()[0][0].spec.replicas == 4


def test_record_name_must_match_file(store: SiteStore):
    store.create(make_site("blog"))
    (store.specs_dir / "copy.yaml").write_text(store.spec_path("blog").read_text())
    sites, errors = store.list()
    assert [s.name for s in sites] == ["blog"]
    assert "does not match the file name" in errors[0].message


def test_names_cannot_escape_the_state_dir(store: SiteStore):
    with pytest.raises(NotFound, match="not a valid site name"):
        store.get("../../etc/passwd")
    with pytest.raises(NotFound):
        store.get("blog\n")


def test_stale_status_of_an_earlier_incarnation_is_ignored(store: SiteStore):
    store.create(make_site("blog"))
    store.update_status("blog", SiteStatus(observed_generation=1))
    leftover = store.status_path("blog").read_bytes()
    store.delete("blog")
    store.create(make_site("blog"))
    store.status_path("blog").write_bytes(leftover)
    assert store.get("blog").status is None


def test_returned_objects_do_not_alias_the_cache(store: SiteStore):
    store.create(make_site("blog"))
    first = store.get("blog")
    first.spec.replicas = 5
    assert store.get("blog").spec.replicas == 1
    site = store.get("blog")
    site.spec.replicas = 2
    assert store.update(site).metadata.generation == 2


def test_cached_records_share_their_models_field_sets_and_copies_get_sets_of_their_own(store: SiteStore):
    # Pydantic keeps a set of the given fields in every model: 85 MB of a controller holding 10,000 Sites.
    for name in ("one", "two"):
        store.create(make_site(name))
        conditions = [
            Condition(
                type=kind, status="False", reason="Waiting", last_transition_time="2026-01-01T00:00:00Z"
            )
            for kind in ("Ready", "Stalled")
        ]
        store.write_status(name, SiteStatus(observed_generation=1, conditions=conditions))
    # Another process reads them from their files, where what was None is left out: not given.
    reader = SiteStore(store.state_dir)
    (one, two), _ = reader.list()
    assert one.status is not None and two.status is not None
    assert one.metadata.__pydantic_fields_set__ is two.metadata.__pydantic_fields_set__
    assert (
        one.status.conditions[0].__pydantic_fields_set__ is two.status.conditions[1].__pydantic_fields_set__
    )
    assert "observed_generation" not in one.status.conditions[0].model_fields_set

    copy = reader.get("one")
    assert copy.status is not None
    copy.status.conditions[0].observed_generation = 1
    assert "observed_generation" in copy.status.conditions[0].model_fields_set
    assert "observed_generation" not in copy.status.conditions[1].model_fields_set
    assert "observed_generation" not in one.status.conditions[0].model_fields_set
    assert "observedGeneration" not in two.status.conditions[0].model_dump(by_alias=True, exclude_unset=True)


def test_a_cached_status_is_kept_without_the_status_files_wrapping_models(store: SiteStore):
    # The file's apiVersion/kind/metadata wrapper is two models a record: 5 MB of a controller at 10,000 sites
    store.create(make_site("blog"))
    store.write_status("blog", SiteStatus(observed_generation=1))
    reader = SiteStore(store.state_dir)
    (listed,), _ = reader.list()
    assert listed.status is not None and listed.status.observed_generation == 1
    assert (
        listed.metadata.resource_version
        == yaml.safe_load(store.status_path("blog").read_text())["metadata"]["resourceVersion"]
    )
    gc.collect()
    wrappers = [
        o for o in gc.get_objects() if type(o).__name__ in ("_StatusMeta", "_StatusRecord[SiteStatus]")
    ]
    assert wrappers == []


def test_records_are_readable_yaml(store: SiteStore):
    store.create(Site(metadata=ObjectMeta(name="blog"), spec=SiteSpec(owners=["alice"])))
    text = store.spec_path("blog").read_text()
    assert "{" not in text.split("metadata:")[1].split("labels")[0]
    assert "  owners:\n  - alice\n" in text
    assert "resourceVersion:" in text and "creationTimestamp:" in text


def test_lost_counter_resumes_above_every_record(store: SiteStore):
    for name in ("one", "two"):
        store.create(make_site(name))
    store.update_status("two", SiteStatus())
    highest = int(store.get("two").metadata.resource_version or 0)
    (store.state_dir / ".resource-version").unlink()
    reopened = SiteStore(store.state_dir)
    assert int(reopened.create(make_site("three")).metadata.resource_version or 0) > highest


def test_hand_written_record_is_listed_and_completed_by_the_first_update(store: SiteStore):
    (store.specs_dir / "manual.yaml").write_text(
        "apiVersion: director.io/v1\nkind: Site\nmetadata:\n  name: manual\nspec:\n  owners:\n  - alice\n"
    )
    sites, errors = store.list()
    assert errors == [] and [s.name for s in sites] == ["manual"]
    site = store.get("manual")
    site.spec.replicas = 2
    updated = store.update(site)
    assert updated.metadata.uid and updated.metadata.creation_timestamp is not None
    assert updated.metadata.generation == 1 and updated.metadata.resource_version
    assert store.get("manual").spec.owners == ["alice"]


def test_shared_index_spares_a_new_process_the_yaml_parse_but_not_the_truth(store: SiteStore):
    for i in range(80):
        store.create(make_site(f"site-{i:03d}"))
    store.update_status("site-000", SiteStatus(observed_generation=1))
    assert len(SiteStore(store.state_dir).list()[0]) == 80  # a cold reader writes the index
    index = store.state_dir / ".cache" / "sites.json"
    assert index.exists()
    path = store.spec_path("site-005")
    path.write_text(path.read_text().replace("replicas: 1", "replicas: 3"))
    fresh = SiteStore(store.state_dir)
    sites, errors = fresh.list()
    assert errors == [] and len(sites) == 80
    assert fresh._cache.parses == 1  # only the file changed since the index was written
    by_name = {s.name: s for s in sites}
    assert by_name["site-005"].spec.replicas == 3
    assert by_name["site-000"].status is not None and by_name["site-000"].status.observed_generation == 1
    index.write_text('{"format": 2, "specs": {"site-001": {"key": "bogus"}}, "status": [')
    assert len(SiteStore(store.state_dir).list()[0]) == 80


def test_the_identities_kept_of_a_record_s_files_are_small_and_tell_every_version_apart(store: SiteStore):
    store.create(make_site("old"))
    store.update_status("old", SiteStatus(observed_generation=1))
    store.list()
    # Several are kept per record, for every record, as long as the process runs.
    spec_key, status_key = store._entries["old"][0]
    assert status_key is not None

    def size(key: object) -> int:
        parts = key if isinstance(key, tuple) else ()
        return sys.getsizeof(key) + sum(sys.getsizeof(part) for part in parts)

    assert size(spec_key) + size(status_key) <= 2 * 64
    # A file dated before 1970, of the same size, rewritten in place of the other: a new identity each time.
    path = store.spec_path("old")
    seen = {records._file_key(path)}
    for mtime_ns in (-(10**18), -1, 0, 1):
        os.utime(path, ns=(mtime_ns, mtime_ns))
        seen.add(records._file_key(path))
    assert len(seen) == 5


def test_update_cannot_add_a_finalizer_while_deleting(store: SiteStore):
    store.create(make_site("blog"))
    store.add_finalizer("blog", FINALIZER)
    store.delete("blog")
    site = store.get("blog")
    site.metadata.finalizers = [FINALIZER, "director.io/late"]
    with pytest.raises(BeingDeleted):
        store.update(site)


def test_history_can_be_turned_off(tmp_path):
    store = SiteStore(tmp_path, history_limit=0)
    site = store.create(make_site("blog"))
    site.spec.replicas = 2
    store.update(site)
    assert store.history("blog") == []


def test_write_listeners_hear_every_write_with_the_record_already_on_disk(store: SiteStore):
    heard: list[tuple[str, str | None]] = []

    def listener(name: str) -> None:
        current = store.current(name)
        heard.append((name, current.metadata.resource_version if isinstance(current, Site) else None))

    store.add_write_listener(listener)
    created = store.create(make_site("blog"))
    store.create(make_site("blog2"), dry_run=True)
    site = store.get("blog")
    store.update(site)  # unchanged: nothing written
    site.spec.replicas = 2
    site.spec.domains = ["dry.example.org"]
    store.update(site, dry_run=True)
    site.spec.domains = []
    changed = store.update(site)
    status = store.update_status("blog", SiteStatus(observed_generation=2))
    finalized = store.add_finalizer("blog", FINALIZER)
    deleting = store.delete("blog")
    assert deleting is not None
    store.remove_finalizer("blog", FINALIZER)
    assert heard == [
        ("blog", created.metadata.resource_version),
        ("blog", changed.metadata.resource_version),
        ("blog", status.metadata.resource_version),
        ("blog", finalized.metadata.resource_version),
        ("blog", deleting.metadata.resource_version),
        ("blog", None),
    ]


def test_a_failing_write_listener_does_not_fail_the_write(store: SiteStore):
    def listener(name: str) -> None:
        raise RuntimeError(f"listener broke on {name}")

    store.add_write_listener(listener)
    store.create(make_site("blog"))
    assert store.get("blog").metadata.generation == 1


def test_current_is_the_listed_record(store: SiteStore):
    store.create(make_site("blog"))
    store.spec_path("broken").write_text("metadata: [unclosed\n")
    listed, errors = store.list()
    assert store.current("blog") is listed[0]
    broken = store.current("broken")
    assert isinstance(broken, RecordError) and broken == errors[0]
    assert store.current("absent") is None
    assert store.current("../escape") is None


def test_cached_is_the_listed_record_until_either_file_changes(store: SiteStore):
    store.create(make_site("blog"))
    store.spec_path("broken").write_text("metadata: [unclosed\n")
    assert store.cached("blog") is None  # never read by this store yet: it would have to parse
    listed, _ = store.list()
    assert store.cached("blog") is listed[0]
    assert store.cached("broken") is None and store.cached("absent") is None
    assert store.cached("../escape") is None
    # Another process's writes, of the status and then of the spec, are never hidden by the cache.
    other = SiteStore(store.state_dir)
    other.update_status("blog", SiteStatus(observed_generation=1))
    assert store.cached("blog") is None
    assert store.get("blog").status == SiteStatus(observed_generation=1)
    current = store.current("blog")
    assert store.cached("blog") is current
    site = other.get("blog")
    site.spec.replicas = 2
    other.update(site)
    assert store.cached("blog") is None
    assert store.get("blog").spec.replicas == 2
    # This store's own status write leaves the record as it now stands, for the next reader.
    store.update_status("blog", SiteStatus(observed_generation=2))
    written = store.cached("blog")
    assert written is not None and written == store.get("blog")
    assert written.status == SiteStatus(observed_generation=2) and written.spec.replicas == 2


def test_a_spec_record_is_the_yaml_that_yaml_dump_writes(store: SiteStore):
    # Values a YAML writer must quote, escape or fold: what the store writes must read back the same, and
    # be the very text libyaml's dump gives, as it always was (diffs of history see no change of style).
    odd = [
        "",
        " leading space",
        "yes",
        "null",
        "~",
        "1.0",
        "0x1F",
        "2026-01-01",
        "a: b",
        "# not a comment",
        "- item",
        "line one\nline two\n",
        "tab\there",
        "quote ' and \" and \\",
        "é ü 中文 \U0001f600",
        "\x85\u2028\u2029\ufeff\x7f\x9b",
        "{flow} [seq] &anchor *alias !tag %directive @at `tick`",
        "x" * 200,
    ]
    env = {f"VALUE_{index}": value for index, value in enumerate(odd)}
    annotations = {f"example.org/a{index}": value for index, value in enumerate(odd)}
    for name, cpus in (("plain", 0.5), ("whole", 2.0), ("small", 0.01), ("odd", 1.2345678901234)):
        site = Site(
            metadata=ObjectMeta(name=name, annotations=annotations),
            spec=SiteSpec.model_validate(
                {
                    "type": "dynamic",
                    "image": "example.org/app:1",
                    "command": ["sh", "-c", "echo 'a: b' # {x}"],
                    "env": env,
                    "resources": {"cpus": cpus},
                }
            ),
        )
        stored = store.add_finalizer(store.create(site).name, FINALIZER)
        text = store.spec_path(name).read_text()
        document = stored.to_document(include_status=False)
        assert text == yaml.dump(
            document, Dumper=yaml.CSafeDumper, default_flow_style=False, sort_keys=False, allow_unicode=True
        )
        assert yaml.safe_load(text) == document
        assert SiteStore(store.state_dir).get(name) == stored


# Strings of the shapes the store writes without libyaml's emitter, and strings close to them that it must
# leave to the emitter (or quote as the emitter does): each document must be the emitter's very text.
_NEAR_PLAIN = st.one_of(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,12}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_.+-][A-Za-z0-9_.:+ #'-]{0,12}", fullmatch=True),
    # Led by an indicator (JSON text among them), long enough to pass the line width.
    st.from_regex(r"""[#,\[\]{}&*!|>'"%@`?:-][ -~\té]{0,100}""", fullmatch=True),
    st.sampled_from(
        [
            "",
            "yes",
            "No",
            "on",
            "NULL",
            "~",
            "1",
            "-1",
            "+1",
            "0x1F",
            "0o17",
            "1_000",
            "1e3",
            "1.5",
            ".inf",
            "-.Inf",
            ".NaN",
            "2026-11-30",
            "2026-11-30T14:31:09Z",
            "12:30",
            "1:2:3",
            "0777",
            "a:b",
            "a: b",
            "-a",
            "- a",
            "...",
            "---",
            "a#b",
            "a #b",
            "x" * 100,
            "<<",
            "=",
            "é",
            '{"cli":{"operation":"Apply","time":"2026-11-30T17:16:42Z","fields":[["spec","owners"]]}}',
            "{" + "x" * 200 + "}",
            "'",
            "''a'",
            "[a, b]",
        ]
    ),
)
_SCALARS = st.one_of(
    _NEAR_PLAIN, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(), st.just(0.6)
)
_DOCUMENTS = st.dictionaries(
    _NEAR_PLAIN,
    st.recursive(
        _SCALARS,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_NEAR_PLAIN, inner, max_size=3)),
        max_leaves=12,
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=500, deadline=None)
@given(_DOCUMENTS)
def test_any_record_is_written_as_the_very_text_of_libyaml_s_emitter(document: dict[str, object]):
    expected = yaml.dump(
        document, Dumper=yaml.CSafeDumper, default_flow_style=False, sort_keys=False, allow_unicode=True
    )
    assert records._dump(document).decode() == expected


def test_a_plain_record_is_written_without_the_emitter(store: SiteStore, monkeypatch: pytest.MonkeyPatch):
    # Names, versions and timestamps only (every record the controller adds its finalizer to, unless its
    # spec says more): writing them costs a fraction of the emitter's time.
    def no_emitter(*args: object, **kwargs: object) -> str:
        raise AssertionError("the emitter was used for a plain record")

    site = make_site("plain")
    site.metadata.labels = {"team": "web"}
    created = store.create(site)
    monkeypatch.setattr(records.yaml, "serialize", no_emitter)
    stored = store.add_finalizer(created.name, FINALIZER)
    monkeypatch.undo()
    assert store.spec_path("plain").read_text() == yaml.dump(
        stored.to_document(include_status=False),
        Dumper=yaml.CSafeDumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
    )


@settings(max_examples=300, deadline=None)
@given(
    _DOCUMENTS,
    st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(list(" -:'\n{}[]#0a1.eT_\""))), max_size=3),
)
def test_a_record_read_without_the_yaml_reader_is_what_the_yaml_reader_reads(
    document: dict[str, object], edits: list[tuple[int, str]]
):
    text = records._dump(document).decode()
    for position, character in edits:
        at = position % (len(text) + 1)
        text = text[:at] + character + text[at:]
    read = plainyaml.read(text.encode(), yamlio.MAX_DEPTH)
    if read is not None:
        # Types too: 1, 1.0 and True are equal in Python, not in a record.
        assert repr(read) == repr(yaml.safe_load(text))


def test_a_plain_record_is_read_without_the_yaml_reader(store: SiteStore, monkeypatch: pytest.MonkeyPatch):
    def no_reader(text: bytes) -> object:
        raise AssertionError("the YAML reader was used for a plain record")

    site = make_site("plain")
    site.metadata.labels = {"team": "web"}
    stored = store.add_finalizer(store.create(site).name, FINALIZER)
    monkeypatch.setattr(yamlio, "_FastLoader", no_reader)
    fresh = SiteStore(store.state_dir)
    assert fresh.get("plain") == stored
    # Any other text is left to the YAML reader, as before.
    path = store.spec_path("plain")
    path.write_text(path.read_text().replace("team: web", "team: 'web'  # a comment"))
    with pytest.raises(AssertionError, match="YAML reader"):
        SiteStore(store.state_dir).get("plain")


def test_records_read_with_equal_specs_share_one_and_each_still_changes_alone(store: SiteStore):
    # Thousands of sites often ask the same (the defaults): one spec held for all of them, not one each.
    for name in ("one", "two", "three"):
        store.create(make_site(name))
    store.create(make_site("other", replicas=2))
    fresh = SiteStore(store.state_dir)
    by_name = {site.name: site for site in fresh.list()[0]}
    assert by_name["one"].spec is by_name["two"].spec is by_name["three"].spec
    assert by_name["other"].spec is not by_name["one"].spec and by_name["other"].spec.replicas == 2
    changed = fresh.get("two")
    changed.spec.replicas = 3
    fresh.update(changed)
    assert {site.name: site.spec.replicas for site in fresh.list()[0]} == {
        "one": 1,
        "other": 2,
        "three": 1,
        "two": 3,
    }
    assert fresh.get("one").spec == by_name["three"].spec


def test_a_record_nested_deeper_than_the_yaml_reader_reads_is_refused_as_before(store: SiteStore):
    store.create(make_site("deep"))
    path = store.spec_path("deep")
    nested = "".join(f"{'  ' * depth}k:\n" for depth in range(3000)) + f"{'  ' * 3000}k: 1\n"
    path.write_text(path.read_text() + nested.replace("k:", "extra:", 1))
    with pytest.raises(InvalidRecord):
        SiteStore(store.state_dir).get("deep")
