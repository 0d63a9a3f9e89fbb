"""Reading JSON documents under the bounds YAML documents have, and plain YAML data for request bodies."""

from __future__ import annotations

import json

import pytest

from specs.errors import InvalidSpec
from specs.jsonio import load_json, nesting_depth
from specs.yamlio import MAX_DEPTH, load_data


def problem(load, *args, **kwargs) -> str:
    with pytest.raises(InvalidSpec) as refusal:
        load(*args, **kwargs)
    return str(refusal.value)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1_000, 200_000])
def test_json_deeper_than_the_yaml_limit_is_refused_before_parsing(levels):
    text = "[" * levels + "]" * levels
    assert problem(load_json, text, "body") == f"body: document is nested more than {MAX_DEPTH} levels deep"
    assert nesting_depth(load_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "body")) == MAX_DEPTH


def test_json_strings_may_hold_any_brackets_and_escaped_quotes():
    value = {"a": '[[[{{{"\\' * 100, "b": ["]]]}}}" * 100]}
    assert load_json(json.dumps(value).encode("utf-16"), "body") == value


def test_json_keys_given_twice_are_refused_by_name_at_any_depth():
    assert "key 'x' appears twice" in problem(load_json, '{"a": [{"x": 1, "y": 2, "x": 3}]}', "body")
    assert load_json('{"a": {"x": 1}, "b": {"x": 1}}', "body") == {"a": {"x": 1}, "b": {"x": 1}}


def test_json_syntax_errors_say_where_and_odd_input_says_what():
    assert problem(load_json, '{"a": 1,\n "b" 2}', "body").startswith("body: line 2, column 6: invalid JSON")
    assert "not valid utf-8 text" in problem(load_json, b'{"a": "\xff"}', "body")
    assert "more than 4300 digits" in problem(load_json, "9" * 5_000, "body")


@pytest.mark.parametrize("text", ['{"a": "\\ud800"}', '{"\\udfff": 1}', '["x", ["\\uDBFFz"]]'])
def test_json_escapes_of_half_a_surrogate_pair_are_refused_as_yaml_refuses_them(text):
    """Found by the API fuzzer: such a string reached the database or a YAML dump and failed there (500)."""
    assert "without the other half of its pair" in problem(load_json, text, "body")
    assert "invalid Unicode character escape" in problem(load_data, text.encode(), "body")


def test_json_surrogate_pairs_and_escaped_backslashes_are_text():
    assert load_json('{"a": "\\ud83d\\ude00", "b": "\\\\ud800"}', "body") == {"a": "😀", "b": "\\ud800"}


def test_yaml_data_has_the_bounds_of_site_files():
    assert "line 4, column 3: key 'c' appears twice" in problem(load_data, b"a: 1\nb:\n  c: 1\n  c: 2\n", "b")
    assert "nested more than 64 levels" in problem(load_data, b"a: " + b"[" * 65 + b"]" * 65, "b")
    assert "the tag !!binary is not allowed" in problem(load_data, b"a: !!binary aGk=\n", "b")
    assert "more than one YAML document" in problem(load_data, b"a: 1\n---\nb: 2\n", "b")
    aliased = b"a: &x [1]\nb: *x\n"
    assert load_data(aliased, "b") == {"a": [1], "b": [1]}
    assert "line 2, column 4: YAML aliases (*x) are not accepted" in problem(
        load_data, aliased, "b", allow_aliases=False
    )
    assert load_data(b"# only a comment\n", "b") is None
