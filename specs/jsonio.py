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
        return json.loads(text, object_pairs_hook=_mapping)
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
