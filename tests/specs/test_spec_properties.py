"""Property tests: every valid Site survives dump -> load unchanged; no input, however bad, raises."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from specs.models import RESERVED_ENV_NAMES, RESERVED_SITE_NAMES, Site
from specs.yamlio import dump_site, load_text

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

site_names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,30}[a-z0-9]", fullmatch=True).filter(
    lambda name: name not in RESERVED_SITE_NAMES and "--" not in name
)
host_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(host_labels, min_size=2, max_size=4).map(".".join)
owners = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True).filter(
    lambda name: name not in RESERVED_ENV_NAMES
)
env_values = st.text(max_size=200).filter(lambda value: "\x00" not in value)
images = st.from_regex(
    r"[a-z0-9]{1,8}(\.[a-z]{2,4}(:[0-9]{2,5})?)?(/[a-z0-9]{1,8}){0,2}(:[A-Za-z0-9_.-]{1,10})?", fullmatch=True
)
command_args = st.text(
    alphabet=st.characters(min_codepoint=32, exclude_characters="\x7f", exclude_categories=("Cs",)),
    min_size=1,
    max_size=40,
)
memories = st.tuples(st.integers(min_value=7, max_value=16_000), st.sampled_from(["Mi", "M"])).map(
    lambda pair: f"{pair[0]}{pair[1]}"
)
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    site_type = draw(st.sampled_from(["static", "dynamic"]))
    spec: dict[str, Any] = {
        "type": site_type,
        "purpose": draw(st.sampled_from(["user", "project", "activity", "other"])),
        "owners": draw(st.lists(owners, max_size=3, unique=True)),
        "domains": draw(st.lists(hostnames, max_size=4, unique=True)),
        "availability": draw(st.sampled_from(["enabled", "not-served", "disabled"])),
        "env": draw(st.dictionaries(env_names, env_values, max_size=4)),
        "replicas": draw(st.integers(min_value=0, max_value=10)),
        "resources": {
            "cpus": draw(st.floats(min_value=0.01, max_value=8.0)),
            "memory": draw(memories),
            "uploadLimit": draw(memories),
        },
    }
    if site_type == "dynamic":
        spec["image"] = draw(images)
        if draw(st.booleans()):
            spec["command"] = draw(st.lists(command_args, min_size=1, max_size=4))
        if draw(st.booleans()):
            spec["healthCheck"] = {"path": "/" + draw(st.from_regex(r"[a-z0-9/_-]{0,20}", fullmatch=True))}
    metadata: dict[str, Any] = {
        "name": draw(site_names),
        "labels": draw(
            st.dictionaries(st.from_regex(r"[a-z]{1,10}", fullmatch=True), host_labels, max_size=3)
        ),
        "annotations": draw(
            st.dictionaries(st.from_regex(r"[a-z]{1,10}", fullmatch=True), env_values, max_size=2)
        ),
    }
    if draw(st.booleans()):
        metadata.update(
            uid="0b4c5f0e-8d1a-4c4e-9a55-2b2f4b0f3d1e",
            generation=draw(st.integers(min_value=1, max_value=10**6)),
            resourceVersion=str(draw(st.integers(min_value=1, max_value=10**12))),
            creationTimestamp=draw(timestamps).isoformat(),
        )
    document: dict[str, Any] = {
        "apiVersion": "director.io/v1",
        "kind": "Site",
        "metadata": metadata,
        "spec": spec,
    }
    if draw(st.booleans()):
        document["status"] = {
            "observedGeneration": draw(st.integers(min_value=0, max_value=100)),
            "conditions": [
                {
                    "type": "Ready",
                    "status": draw(st.sampled_from(["True", "False", "Unknown"])),
                    "reason": "Reconciled",
                    "message": draw(env_values),
                    "lastTransitionTime": draw(timestamps).isoformat(),
                }
            ],
            "urls": [f"http://{metadata['name']}.sites.localhost:8080/"],
        }
    return document


def is_valid(document: dict[str, Any]) -> bool:
    try:
        Site.model_validate(document)
    except ValidationError:
        return False
    return True


garbage = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["", "-", "*", "1e999", "0x10", "yes", "null", "~", "2024-01-01", ";{}$\"'", "ü"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_of(child, (*prefix, index))
    return found


def replaced(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    target: Any = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return changed


def load_dumped(document: Any):
    return load_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), "generated.yaml")


@FAST
@given(valid_documents().filter(is_valid))
def test_valid_sites_survive_dump_and_load_unchanged(document):
    site = Site.model_validate(document)
    result = load_text(dump_site(site), "dumped.yaml")
    assert result.errors == []
    assert result.sites == [site]


@FAST
@given(valid_documents().filter(is_valid), st.data())
def test_random_garbage_in_a_random_field_never_raises(document, data):
    path = data.draw(st.sampled_from(paths_of(document)))
    value = data.draw(garbage)
    result = load_dumped(replaced(document, path, value))
    assert len(result.sites) + bool(result.errors) >= 1
    for error in result.errors:
        assert error.message and error.document == 1
        assert "\n" not in str(error)


FORBIDDEN_EVERYWHERE = [";", "{", "}", "$", '"', "'", " ", "\n", "\x00", "\t", "ü", "*", "`", "\\"]


@FAST
@given(
    valid_documents().filter(is_valid),
    st.sampled_from(["metadata.name", "spec.domains", "spec.owners", "spec.image", "spec.env", "memory"]),
    st.sampled_from(FORBIDDEN_EVERYWHERE),
    st.data(),
)
def test_a_forbidden_character_in_a_constrained_field_is_always_refused(document, field, character, data):
    spec = document["spec"]
    if field == "metadata.name":
        path, original = ("metadata", "name"), document["metadata"]["name"]
    elif field == "memory":
        path, original = ("spec", "resources", "memory"), spec["resources"]["memory"]
    elif field == "spec.image":
        path, original = ("spec", "image"), spec.get("image", "nginx")
    elif field == "spec.env":
        name = data.draw(env_names)
        position = data.draw(st.integers(min_value=0, max_value=len(name)))
        spec["env"] = {name[:position] + character + name[position:]: "x"}
        result = load_dumped(document)
        assert result.sites == []
        assert any(error.field and error.field.startswith("spec.env") for error in result.errors)
        return
    else:
        key = field.split(".")[1]
        spec[key] = [*spec[key], data.draw(hostnames if key == "domains" else owners)]
        path, original = ("spec", key, len(spec[key]) - 1), spec[key][-1]
    position = data.draw(st.integers(min_value=0, max_value=len(original)))
    result = load_dumped(replaced(document, path, original[:position] + character + original[position:]))
    assert result.sites == []
    wire_path = ".".join(str(part) for part in path if not isinstance(part, int))
    assert any(error.field and error.field.startswith(wire_path) for error in result.errors), result.errors


@FAST
@given(
    valid_documents().filter(is_valid),
    st.sampled_from([(), ("metadata",), ("spec",), ("spec", "resources")]),
    st.from_regex(r"[a-zA-Z][a-zA-Z0-9]{0,15}", fullmatch=True),
    garbage,
)
def test_an_unknown_field_anywhere_is_always_refused(document, parent, key, value):
    target: Any = document
    for part in parent:
        target = target[part]
    if key in target or key in {"apiVersion", "kind", "metadata", "spec", "status"}:
        return
    target[key] = value
    result = load_dumped(document)
    assert result.sites == []
    expected_field = ".".join([*parent, key])
    assert any(error.field == expected_field and "unknown field" in error.message for error in result.errors)


@FAST
@given(
    valid_documents().filter(is_valid),
    st.one_of(
        st.tuples(st.just("replicas"), st.integers(max_value=-1) | st.integers(min_value=11)),
        st.tuples(st.just("cpus"), st.floats(max_value=0) | st.floats(min_value=8.0001) | st.just(math.nan)),
    ),
)
def test_numbers_out_of_range_are_always_refused(document, change):
    field, value = change
    if field == "replicas":
        document["spec"]["replicas"] = value
        expected = "spec.replicas"
    else:
        document["spec"]["resources"]["cpus"] = value
        expected = "spec.resources.cpus"
    result = load_dumped(document)
    assert result.sites == []
    assert any(error.field == expected for error in result.errors)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_arbitrary_text_never_raises(data):
    result = load_text(data, "noise.yaml")
    for error in result.errors:
        assert error.message and str(error).startswith("noise.yaml")
        assert "\n" not in str(error)
