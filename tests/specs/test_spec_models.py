"""The Site model accepts what Director can run and refuses, naming the field, everything else."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from specs.models import Site
from specs.yamlio import validate_document

VALID: dict[str, Any] = {
    "apiVersion": "director.io/v1",
    "kind": "Site",
    "metadata": {"name": "club", "labels": {"example.org/team": "robotics"}},
    "spec": {
        "type": "dynamic",
        "owners": ["carol"],
        "domains": ["robotics.example.org", "xn--bcher-kva.de"],
        "image": "registry.example.org:5000/team/site:1.2",
        "command": ["python3", "app.py"],
        "env": {"DATABASE_URL": "postgres://db/club", "_TOKEN": "x" * 1000},
        "replicas": 2,
        "healthCheck": {"path": "/healthz", "interval": "10s", "timeout": "2s"},
        "resources": {"cpus": 1.5, "memory": "512Mi", "uploadLimit": "50Mi"},
    },
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    target = document
    for part in parents:
        target = target[part]
    target[last] = value
    return document


def problems(document: Any) -> list[tuple[str | None, str]]:
    site, errors = validate_document(document, source="test.yaml", document=1)
    assert (site is None) == bool(errors)
    return [(error.field, error.message) for error in errors]


def refused_at(document: Any, field: str) -> str:
    found = problems(document)
    assert found, "the document was accepted"
    messages = [message for path, message in found if path == field]
    assert messages, f"no error for {field}; got {found}"
    return messages[0]


def test_valid_dynamic_site_is_accepted_with_its_values():
    site = Site.model_validate(VALID)
    assert site.spec.resources.memory_bytes == 512 * 1024**2
    assert site.spec.domains == ["robotics.example.org", "xn--bcher-kva.de"]
    assert site.spec.health_check is not None and site.spec.health_check.path == "/healthz"
    assert problems(VALID) == []


def test_minimal_static_site_gets_directors_defaults():
    site = Site.model_validate({"apiVersion": "director.io/v1", "kind": "Site", "metadata": {"name": "hi"}})
    assert site.spec.type == "static"
    assert (site.spec.resources.cpus, site.spec.resources.memory, site.spec.resources.upload_limit) == (
        0.6,
        "100M",
        "2Mi",
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a", "at least 2 characters"),
        ("a" * 33, "at most 32 characters"),
        ("Hello", "site name"),
        ("my_site", "site name"),
        ("-site", "site name"),
        ("site-", "site name"),
        ("admin", "reserved"),
        ("www", "reserved"),
        ("my--site", "two hyphens"),
        (42, "must be text"),
    ],
)
def test_bad_site_names_are_refused(name, expected):
    assert expected in refused_at(with_change("metadata.name", name), "metadata.name")


@pytest.mark.parametrize(
    "domain",
    [
        "Example.org",
        "*.example.org",
        "exa mple.org",
        '"example.org"',
        "example.org;",
        "example.org{",
        "$host.example.org",
        "example.org\nevil.org",
        "example.org\x00",
        "bücher.de",
        "localhost",
        "-bad.example.org",
        "",
        "a" * 64 + ".example.org",
    ],
)
def test_bad_domains_are_refused_with_a_description_of_a_host_name(domain):
    message = refused_at(with_change("spec.domains", ["ok.example.org", domain]), "spec.domains[1]")
    assert "host name" in message


def test_upper_case_and_international_domains_get_a_hint():
    upper = refused_at(with_change("spec.domains", ["Example.org"]), "spec.domains[0]")
    assert "example.org" in upper and "lower case" in upper
    international = refused_at(with_change("spec.domains", ["bücher.de"]), "spec.domains[0]")
    assert "xn--bcher-kva.de" in international


def test_duplicate_domains_are_refused():
    message = refused_at(with_change("spec.domains", ["a.example.org", "a.example.org"]), "spec.domains")
    assert "listed twice" in message


def test_too_many_domains_are_refused():
    domains = [f"d{i}.example.org" for i in range(33)]
    assert "at most 32" in refused_at(with_change("spec.domains", domains), "spec.domains")


@pytest.mark.parametrize("env_name", ["1ABC", "A-B", "A B", "A=B", "ÄRGER", "", "A;B"])
def test_env_names_must_be_posix(env_name):
    document = with_change("spec.env", {env_name: "x"})
    found = problems(document)
    assert any(path and path.startswith("spec.env") and "POSIX" in message for path, message in found), found


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a\x00b", "NUL"), ("x" * (32 * 1024 + 1), "at most 32768 bytes"), (5, "must be text")],
)
def test_bad_env_values_are_refused(value, expected):
    assert expected in refused_at(with_change("spec.env", {"TOKEN": value}), "spec.env.TOKEN")


def test_env_names_director_sets_are_refused():
    assert "PORT" in refused_at(with_change("spec.env", {"PORT": "80"}), "spec.env")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("cpus", 0, "greater than 0"),
        ("cpus", -1, "greater than 0"),
        ("cpus", 9, "less than or equal to 8"),
        ("cpus", float("nan"), "finite"),
        ("cpus", "lots", "number"),
        ("memory", "1Mi", "between 6Mi and 16Gi"),
        ("memory", "17Gi", "between 6Mi and 16Gi"),
        ("memory", "100MB", "size such as 256Mi"),
        ("memory", "1T", "size such as 256Mi"),
        ("memory", "-5M", "size such as 256Mi"),
        ("memory", "lots", "size such as 256Mi"),
        ("uploadLimit", "2Gi", "at most 1Gi"),
        ("uploadLimit", "2 Mi", "size such as 256Mi"),
    ],
)
def test_resources_out_of_range_or_in_bad_units_are_refused(field, value, expected):
    message = refused_at(with_change(f"spec.resources.{field}", value), f"spec.resources.{field}")
    assert expected in message


@pytest.mark.parametrize(
    "field", ["privileged", "ports", "volumes", "capAdd", "networkMode", "mounts", "user"]
)
def test_fields_asking_for_host_access_do_not_exist(field):
    message = refused_at(with_change(f"spec.{field}", True), f"spec.{field}")
    assert message == (
        f"unknown field: Director has no field {field!r} in spec "
        "(host binds, privileged mode, ports and capabilities cannot be requested)"
    )


def test_unknown_fields_are_refused_at_every_level():
    assert "unknown field" in refused_at(with_change("metadata.namespace", "x"), "metadata.namespace")
    assert "unknown field" in refused_at(with_change("spec.resources.gpus", 1), "spec.resources.gpus")
    assert "unknown field" in refused_at(with_change("extra", 1), "extra")


def test_dynamic_site_without_image_is_refused():
    document = with_change("spec.type", "dynamic")
    del document["spec"]["image"]
    assert "spec.image" in refused_at(document, "spec")


def test_static_site_with_a_command_is_refused():
    document = with_change("spec.type", "static")
    del document["spec"]["healthCheck"]
    assert "only to dynamic sites" in refused_at(document, "spec")


@pytest.mark.parametrize(
    ("image", "valid"),
    [
        ("director-local/site:latest", True),
        ("nginx", True),
        ("ghcr.io/org/app@sha256:" + "a" * 64, True),
        ("Nginx", False),
        ("nginx latest", False),
        ("nginx:lat est", False),
        ("nginx;rm", False),
        ("", False),
    ],
)
def test_image_references(image, valid):
    found = problems(with_change("spec.image", image))
    if valid:
        assert found == []
    else:
        assert any(path == "spec.image" and "image reference" in message for path, message in found), found


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("spec.type", "lambda", "must be one of 'static' or 'dynamic'"),
        ("spec.availability", "maybe", "must be one of"),
        ("spec.replicas", 11, "less than or equal to 10"),
        ("spec.replicas", 1.5, "whole number"),
        ("spec.owners", ["Alice"], "user name"),
        ("spec.command", [], "at least 1"),
        ("spec.healthCheck", {"path": "/a b"}, "URL path"),
        ("spec.healthCheck", {"interval": "5s", "timeout": "10s"}, "may not be longer"),
        ("spec.healthCheck", {"interval": "5 s"}, "duration such as"),
        ("metadata.labels", {"team": "has space"}, "label value"),
    ],
)
def test_other_fields_name_their_problem(field, value, expected):
    found = problems(with_change(field, value))
    assert any(path and path.startswith(field) and expected in message for path, message in found), found


@pytest.mark.parametrize(
    ("document", "field", "expected"),
    [
        ({**VALID, "apiVersion": "v1"}, "apiVersion", "apiVersion must be director.io/v1; got 'v1'"),
        ({**VALID, "kind": "Deployment"}, "kind", "kind must be Site"),
        ({"kind": "Site", "metadata": {"name": "ab"}}, "apiVersion", "it is missing"),
    ],
)
def test_wrong_api_version_or_kind_is_refused(document, field, expected):
    assert expected in refused_at(document, field)


@pytest.mark.parametrize("document", [[1, 2], "text", None, 5])
def test_a_document_that_is_not_a_mapping_is_refused(document):
    assert "must be a mapping" in problems(document)[0][1]


def test_a_dynamic_site_may_ask_the_edge_to_keep_its_pages():
    site = Site.model_validate(with_change("spec.cache", {"staleIfError": "10m"}))
    assert site.spec.cache is not None
    assert (site.spec.cache.stale_seconds, site.spec.cache.max_size_bytes) == (600, 64 * 1024**2)


@pytest.mark.parametrize(
    ("cache", "field", "expected"),
    [
        ({"staleIfError": "5s"}, "spec.cache.staleIfError", "between 10s and 168h"),
        ({"staleIfError": "200h"}, "spec.cache.staleIfError", "between 10s and 168h"),
        ({"staleIfError": "ten minutes"}, "spec.cache.staleIfError", "a duration such as"),
        ({"staleIfError": "10m", "maxSize": "2Gi"}, "spec.cache.maxSize", "between 1Mi and 1Gi"),
        ({"staleIfError": "10m", "maxSize": "10k"}, "spec.cache.maxSize", "between 1Mi and 1Gi"),
        ({}, "spec.cache.staleIfError", "is required"),
        ({"staleIfError": "10m", "fresh": "1m"}, "spec.cache.fresh", "unknown field"),
    ],
)
def test_a_cache_out_of_bounds_is_refused(cache, field, expected):
    assert expected in refused_at(with_change("spec.cache", cache), field)


def test_a_static_site_with_a_cache_is_refused():
    document = {**VALID, "spec": {"type": "static", "cache": {"staleIfError": "10m"}}}
    assert "only to dynamic sites" in refused_at(document, "spec")
