"""The GitSource resource: validated like a Site, every refusal located and worded for a person."""

from __future__ import annotations

import pytest

from specs import yamlio
from specs.gitsource import KIND_GITSOURCE, GitSource, source_of_field_manager
from specs.models import KIND_SITE, Site

KINDS = {KIND_SITE: Site, KIND_GITSOURCE: GitSource}


def load(spec: str) -> yamlio.LoadResult:
    text = f"apiVersion: director.io/v1\nkind: GitSource\nmetadata: {{name: club}}\nspec:\n{spec}"
    return yamlio.load_text(text, "club.yaml", kinds=KINDS)


def test_a_minimal_source_takes_the_defaults():
    [loaded] = load("  url: https://git.example.org/club/sites.git\n").resources
    source = loaded.resource
    assert isinstance(source, GitSource)
    assert source.spec.ref.describe() == "branch main"
    assert (source.spec.interval_seconds, source.spec.prune, source.spec.deletion_policy) == (
        60.0,
        False,
        "orphan",
    )
    assert source.spec.directory == ""


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ("  url: ftp://example.org/x.git\n", "spec.url", "must start with https://"),
        ("  url: https://me:pw@example.org/x.git\n", "spec.url", "credentials never go into a URL"),
        ("  url: https://example.org/x.git\n  path: ../etc\n", "spec.path", "'..'"),
        ("  url: https://example.org/x.git\n  path: /abs\n", "spec.path", "without the leading '/'"),
        ("  url: https://example.org/x.git\n  interval: 2s\n", "spec.interval", "between 5s and 24h"),
        ("  url: https://example.org/x.git\n  ref: {branch: a..b}\n", "spec.ref.branch", "'..'"),
        ("  url: https://example.org/x.git\n  ref: {branch: main, tag: v1}\n", "spec.ref", "exactly one"),
        ("  url: https://example.org/x.git\n  ref: {commit: abc}\n", "spec.ref.commit", "40"),
        ("  url: https://example.org/x.git\n  applyAs: Carol Smith\n", "spec.applyAs", "user name"),
        ("  url: https://example.org/x.git\n  prune: 1\n", "spec.prune", "true or false"),
        ("  url: https://example.org/x.git\n  hooks: {}\n", "spec.hooks", "unknown field"),
    ],
)
def test_each_mistake_names_its_field_and_line(line, field, words):
    result = load(line)
    assert not result.resources
    [error] = [e for e in result.errors if e.field == field]
    assert words in error.message
    assert error.line is not None and error.line >= 5
    assert result.refused_names == ["club"]


def test_sites_only_readers_still_refuse_a_gitsource_and_locate_points_inside_a_document():
    text = (
        "apiVersion: director.io/v1\nkind: GitSource\nmetadata: {name: club}\nspec: {url: https://e.org/x.git}\n"
        "---\napiVersion: director.io/v1\nkind: Site\nmetadata:\n  name: one\n  labels: {a.b/c: d}\nspec:\n"
        "  owners: [alice]\n"
    )
    only_sites = yamlio.load_text(text, "x.yaml")
    assert "the only kind Director knows" in only_sites.errors[0].message
    assert [entry.site.name for entry in only_sites.loaded] == ["one"]
    assert yamlio.locate(text.encode(), 2, "spec.owners[0]") == (12, 12)
    assert yamlio.locate(text.encode(), 2, 'metadata.labels["a.b/c"]') == (10, 19)
    assert yamlio.locate(text.encode(), 2, "metadata.labels.a.b/c") == (10, 19)
    assert yamlio.locate(text.encode(), 3, "spec") == (None, None)


def test_a_field_manager_names_its_source():
    assert source_of_field_manager("gitsource-club") == "club"
    assert source_of_field_manager("cli") is None
    assert source_of_field_manager("gitsource-") is None
