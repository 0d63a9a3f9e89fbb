"""Reading Sites from YAML: positions in errors, bounds that refuse hostile input fast, dump and reload."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from specs.errors import InvalidSpec
from specs.yamlio import (
    MAX_DOCUMENT_BYTES,
    MAX_EXPANDED_CHARS,
    MAX_EXPANDED_NODES,
    MAX_FILE_BYTES,
    dump_site,
    dump_sites,
    load_path,
    load_paths,
    load_text,
    parse_site,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BAD_DOCUMENTS = """\
apiVersion: director.io/v1
kind: Site
metadata:
  name: hello
spec:
  domains:
    - example.org
    - ok.example.org
    - Bücher.de
  privileged: true
  env:
    bad name: x
  resources:
    memory: 1T
---
apiVersion: director.io/v1
kind: Site
metadata:
  name: clock
spec:
  type: dynamic
  image: director-local/site:latest
"""


def timed_load(text: str | bytes):
    started = time.perf_counter()
    result = load_text(text, "hostile.yaml")
    return result, time.perf_counter() - started


def test_examples_are_valid():
    result = load_path(EXAMPLES)
    assert result.errors == []
    assert sorted(site.name for site in result.sites) == ["clock", "club", "hello"]


def test_each_error_names_file_document_field_line_and_column():
    result = load_text(BAD_DOCUMENTS, "sites.yaml")
    assert [site.name for site in result.sites] == ["clock"]
    by_field = {error.field: error for error in result.errors}
    assert set(by_field) == {
        "spec.domains[2]",
        "spec.privileged",
        'spec.env["bad name"]',
        "spec.resources.memory",
    }
    domain = by_field["spec.domains[2]"]
    assert (domain.source, domain.document, domain.line, domain.column) == ("sites.yaml", 1, 9, 7)
    assert str(domain).startswith(
        "sites.yaml: document 1: spec.domains[2] (line 9, column 7): 'Bücher.de' must be"
    )
    assert (by_field["spec.privileged"].line, by_field["spec.privileged"].column) == (10, 3)
    assert (by_field['spec.env["bad name"]'].line, by_field['spec.env["bad name"]'].column) == (12, 5)
    assert (by_field["spec.resources.memory"].line, by_field["spec.resources.memory"].column) == (14, 13)


def test_errors_in_a_later_document_carry_its_index():
    text = (
        BAD_DOCUMENTS.split("---\n")[1]
        + "---\napiVersion: director.io/v2\nkind: Site\nmetadata: {name: ab}\n"
    )
    [error] = load_text(text, "x.yaml").errors
    assert (error.document, error.field, error.line, error.column) == (2, "apiVersion", 9, 13)
    assert "director.io/v1" in error.message


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("apiVersion: director.io/v1\nkind: Site\nmetadata: {name: [ab\n", 4, "invalid YAML"),
        ("apiVersion: director.io/v1\n\tkind: Site\n", 2, "invalid YAML"),
        ("a: b\n c: d\n", 2, "invalid YAML"),
        ("metadata:\n  name: ab\nmetadata: {}\n", 3, "appears twice"),
        (
            "a: !!python/object/apply:os.system [ls]\n",
            1,
            "tag !!python/object/apply:os.system is not allowed",
        ),
        ("a: 1\nb: !!binary aGVsbG8=\n", 2, "tag !!binary is not allowed"),
        ("a: 1\nb: !!set {x}\n", 2, "tag !!set is not allowed"),
        ("a: 1\nb:\n  c: 2024-02-30\n", 3, "cannot read a value: day is out of range for month"),
        ("a: *nothing\n", 1, "refers to no anchor"),
    ],
)
def test_syntax_errors_carry_line_and_column(text, line, expected):
    [error] = load_text(text, "x.yaml").errors
    assert error.line == line and error.column is not None
    assert expected in error.message


def test_billion_laughs_is_refused_fast():
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 12):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 10)}]")
    result, seconds = timed_load("\n".join(lines) + "\n")
    assert seconds < 1.0
    [error] = result.errors
    assert f"more than {MAX_EXPANDED_NODES} nodes" in error.message and error.line is not None


def test_a_long_value_repeated_by_aliases_is_refused_fast():
    long_value = "x" * 500_000
    urls = ", ".join(["*long"] * 90_000)
    text = (
        "apiVersion: director.io/v1\nkind: Site\nmetadata: {name: ab}\n"
        f"status:\n  message: &long {long_value}\n  urls: [{urls}]\n"
    )
    result, seconds = timed_load(text)
    assert seconds < 1.0
    [error] = result.errors
    assert f"more than {MAX_EXPANDED_CHARS // 1024**2} MiB of text" in error.message


def test_recursive_alias_is_refused():
    [error] = load_text("a: &a [1, *a]\n").errors
    assert "contains it" in error.message


def test_merge_keys_still_work_within_bounds():
    text = (
        "apiVersion: director.io/v1\nkind: Site\nmetadata: {name: ab}\n"
        "spec:\n  resources: &limits {cpus: 1, memory: 200Mi}\n"
    )
    assert load_text(text).sites[0].spec.resources.memory == "200Mi"


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deep_nesting_is_refused_fast(depth):
    result, seconds = timed_load("[" * depth + "]" * depth)
    assert seconds < 1.0
    assert "nest" in result.errors[0].message


def test_oversized_document_is_refused_fast():
    padding = "".join(f"  K{i}: {'v' * 100}\n" for i in range(MAX_DOCUMENT_BYTES // 100))
    text = "apiVersion: director.io/v1\nkind: Site\nmetadata: {name: ab}\nspec:\n env:\n" + padding
    text += "---\napiVersion: director.io/v1\nkind: Site\nmetadata: {name: cd}\n"
    result, seconds = timed_load(text)
    assert seconds < 1.0
    [error] = result.errors
    assert error.document == 1 and "larger than 1 MiB" in error.message
    assert [site.name for site in result.sites] == ["cd"]


def test_oversized_file_is_refused_unread(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 10))
    started = time.perf_counter()
    [error] = load_path(big).errors
    assert time.perf_counter() - started < 1.0
    assert "larger than 8 MiB" in error.message and error.source == str(big)


@pytest.mark.parametrize(
    "data", [b"\x00\x01", b"\xff\xfe\xfd", "a: \x07", b"\xef\xbb\xbf[", "\ufeff", "a: \ud800", "a: \ufffe"]
)
def test_binary_and_control_characters_give_an_error(data):
    result = load_text(data)
    assert result.sites == []
    assert all(error.message for error in result.errors)


def test_directory_loads_yaml_files_in_order_and_skips_others(tmp_path):
    (tmp_path / "b.yml").write_text("apiVersion: director.io/v1\nkind: Site\nmetadata: {name: bb}\n")
    (tmp_path / "a.yaml").write_text("apiVersion: director.io/v1\nkind: Site\nmetadata: {name: aa}\n")
    (tmp_path / "notes.txt").write_text("not yaml: [")
    result = load_path(tmp_path)
    assert result.errors == [] and [site.name for site in result.sites] == ["aa", "bb"]
    assert [entry.source for entry in result.loaded] == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yml")]


def test_missing_file_and_empty_directory_are_errors(tmp_path):
    result = load_paths([tmp_path / "missing.yaml", tmp_path])
    assert [error.message for error in result.errors] == [
        "cannot be read: No such file or directory",
        "directory has no *.yaml or *.yml files",
    ]


def test_stdin_is_read_for_dash():
    stdin = io.BytesIO(b"apiVersion: director.io/v1\nkind: Site\nmetadata: {name: ab}\n")
    result = load_path("-", stdin=stdin)
    assert [entry.source for entry in result.loaded] == ["<stdin>"]


def test_empty_documents_are_skipped():
    text = "---\n---\napiVersion: director.io/v1\nkind: Site\nmetadata: {name: ab}\n---\n"
    result = load_text(text)
    assert result.errors == [] and [entry.document for entry in result.loaded] == [2]


def test_dump_is_block_style_in_a_stable_order_and_reloads_equal():
    sites = load_path(EXAMPLES).sites
    text = dump_sites(sites)
    assert text.startswith("---\napiVersion: director.io/v1\nkind: Site\nmetadata:\n")
    assert "{" not in text and "spec:\n  type:" in text
    assert load_text(text).sites == sites
    single = dump_site(sites[0])
    assert single.index("apiVersion") < single.index("kind") < single.index("metadata") < single.index("spec")
    assert parse_site(single) == sites[0]


def test_parse_site_raises_with_every_problem():
    with pytest.raises(InvalidSpec) as raised:
        parse_site(BAD_DOCUMENTS.split("---\n")[0], "one.yaml")
    assert len(raised.value.errors) == 4 and "one.yaml: document 1: spec.domains[2]" in str(raised.value)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("replicas: yes", "spec.replicas (line 5, column 13): must be a whole number, got True"),
        ("replicas: '2'", "spec.replicas (line 5, column 13): must be a whole number, got '2'"),
        ("resources: {cpus: '1'}", "spec.resources.cpus (line 5, column 21): must be a number, got '1'"),
    ],
)
def test_numbers_must_be_numbers_in_yaml(line, expected):
    text = f"apiVersion: director.io/v1\nkind: Site\nmetadata: {{name: ab}}\nspec:\n  {line}\n"
    [error] = load_text(text, "n.yaml").errors
    assert str(error) == f"n.yaml: document 1: {expected}"
