"""The plain shape of YAML (specs/plainyaml.py): written as libyaml's emitter writes it, read as the YAML
reader reads it, and API bodies in that shape read without the reader under the same bounds."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from specs import plainyaml, yamlio
from specs.errors import InvalidSpec
from specs.yamlio import MAX_DEPTH, load_data


def _emitted(document: object) -> str:
    return yaml.dump(
        document, Dumper=yaml.CSafeDumper, default_flow_style=False, sort_keys=False, allow_unicode=True
    )


def _nested(levels: int, innermost: object) -> dict[str, object]:
    """`levels` collections one inside another, lists and mappings in turn, mappings innermost and
    outermost."""
    value: object = {"k": innermost}
    for level in range(levels - 2):
        value = [value] if level % 2 == 0 else {"k": value}
    return {"k": value} if levels > 1 else {"k": innermost}


_JSON_TEXT = st.recursive(
    st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
).map(lambda value: json.dumps(value, separators=(",", ":")))


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["a", "director.io/managed-fields", "b-c"]),
        st.one_of(_JSON_TEXT, st.from_regex(r"""[#,\[\]{}&*!|>'"%@`?:-][ -~é]{0,120}""", fullmatch=True)),
        min_size=1,
    )
)
def test_json_text_and_indicator_led_strings_are_written_as_the_emitter_writes_them(document):
    # The managed-fields annotation every apply writes is JSON: written here, not by the emitter.
    written = plainyaml.write(document)
    if written is not None:
        assert written == _emitted(document)
    read = plainyaml.read(_emitted(document).encode(), MAX_DEPTH)
    if read is not None:
        assert repr(read) == repr(yaml.safe_load(_emitted(document)))


def test_an_apply_s_record_is_of_the_plain_shape():
    record = {
        "metadata": {
            "name": "blog",
            "annotations": {"director.io/managed-fields": '{"cli":{"fields":[["spec","owners"]]}}'},
        },
        "spec": {"owners": ["alice"], "replicas": 2, "env": {}, "resources": {"cpus": 0.5}},
    }
    assert plainyaml.write(record) == _emitted(record)
    assert plainyaml.read(_emitted(record).encode(), MAX_DEPTH) == record


@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 3 * MAX_DEPTH])
@pytest.mark.parametrize("innermost", ["leaf", {}, []])
def test_text_deeper_than_the_bound_is_left_to_the_reader(levels, innermost):
    document = _nested(levels, innermost)
    depth = levels + (1 if innermost in ({}, []) else 0)
    read = plainyaml.read(_emitted(document).encode(), MAX_DEPTH)
    assert read == (document if depth <= MAX_DEPTH else None)


def test_an_api_body_in_the_emitter_s_shape_is_read_without_the_yaml_reader(monkeypatch):
    # What programs send (yaml.safe_dump's text), read as the reader reads it in a fraction of its time.
    document = {
        "apiVersion": "director.io/v1",
        "kind": "Site",
        "metadata": {"name": "blog", "labels": {"team": "web"}},
        "spec": {"owners": ["alice"], "replicas": 2, "resources": {"cpus": 0.5, "memory": "200M"}},
    }
    text = yaml.safe_dump(document, sort_keys=False).encode()

    def no_reader(*args: object, **kwargs: object) -> None:
        raise AssertionError("the YAML reader was used")

    monkeypatch.setattr(yamlio, "_compose_document", no_reader)
    assert load_data(text, "body", allow_aliases=False) == document
    # Any other text still goes to the reader.
    with pytest.raises(AssertionError, match="YAML reader"):
        load_data(b"spec:\n  owners: [alice]\n", "body")


@pytest.mark.parametrize("innermost", ["leaf", {}])
def test_an_api_body_in_the_emitter_s_shape_keeps_the_reader_s_bounds(innermost):
    too_deep = _emitted(_nested(MAX_DEPTH + 1, innermost)).encode()
    with pytest.raises(InvalidSpec, match=f"nested more than {MAX_DEPTH} levels"):
        load_data(too_deep, "body")
    with pytest.raises(InvalidSpec, match="key 'a' appears twice"):
        load_data(b"a: 1\nb: 2\na: 3\n", "body")
    # Past the size read without the reader, the reader counts the nodes.
    many = _emitted({"items": list(range(60_000))}).encode()
    assert len(many) > 64 * 1024
    with pytest.raises(InvalidSpec, match="more than 100000 nodes"):
        load_data(_emitted({"items": list(range(120_000))}).encode(), "body")
    assert load_data(many, "body") == {"items": list(range(60_000))}
