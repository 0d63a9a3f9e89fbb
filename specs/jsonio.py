"""Documents in JSON (API request bodies), under the bounds and checks a YAML document has.

The standard parser recurses once per level of nesting, so a body a few thousand brackets deep ends in a
RecursionError; and it keeps the last of two equal keys silently. Here the nesting depth is measured on
the text, without parsing, and refused past the YAML limit; a key given twice is refused by name.
"""

from __future__ import annotations

import json
import re
import sys
from collections import deque
from itertools import accumulate
from typing import Any

from specs.errors import InvalidSpec, SpecError, duplicate_key_problem
from specs.yamlio import MAX_DEPTH, too_deep_problem

# A JSON string: its brackets are text, not nesting. Written unrolled, so matching is linear.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_NESTING = {"[": 1, "{": 1, "]": -1, "}": -1}
# The escape of a UTF-16 surrogate: only through one can a parsed string hold half of a pair.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _KeyGivenTwice(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(duplicate_key_problem(key))


def load_json(data: bytes | str, source: str) -> Any:
    """The JSON document in `data`; raises InvalidSpec naming the problem (and its line, for syntax)."""
    if isinstance(data, bytes):
        encoding = json.detect_encoding(data)
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as error:
            raise InvalidSpec([SpecError(source, f"is not valid {encoding} text: {error.reason}")]) from None
    else:
        text = data
    if _text_depth(text) > MAX_DEPTH:
        raise InvalidSpec([SpecError(source, too_deep_problem())])
    try:
        data = json.loads(text, object_pairs_hook=_mapping)
    except _KeyGivenTwice as twice:
        raise InvalidSpec([SpecError(source, str(twice))]) from None
    except json.JSONDecodeError as error:
        raise InvalidSpec(
            [SpecError(source, f"invalid JSON: {error.msg}", None, None, error.lineno, error.colno)]
        ) from None
    except ValueError:  # the only other one: an integer past Python's digit limit
        limit = sys.get_int_max_str_digits()
        raise InvalidSpec(
            [SpecError(source, f"invalid JSON: a number has more than {limit} digits")]
        ) from None
    if _SURROGATE_ESCAPE.search(text) and _holds_lone_surrogate(data):
        raise InvalidSpec(
            [
                SpecError(
                    source,
                    "invalid JSON: a \\uD800-\\uDFFF escape without the other half of its pair stands "
                    "for no character (YAML refuses it too); send the character itself",
                )
            ]
        )
    return data


def _holds_lone_surrogate(value: object) -> bool:
    """Whether a key or string holds half of a UTF-16 pair: the parser takes its escape, but no UTF-8 text,
    database or YAML file can hold it, so it would fail wherever it is written."""
    pending: list[object] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def nesting_depth(value: object) -> int:
    """How many mappings and lists deep `value` goes, found without recursion."""
    deepest = 0
    pending: deque[tuple[object, int]] = deque([(value, 0)])
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _text_depth(text: str) -> int:
    """The deepest nesting of brackets outside strings: exact for valid JSON, and in C loops throughout."""
    brackets = _BRACKET.findall(_STRING.sub("", text))
    return max(accumulate(map(_NESTING.__getitem__, brackets)), default=0)


def _mapping(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping = dict(pairs)
    if len(mapping) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _KeyGivenTwice(key)
            seen.add(key)
    return mapping
