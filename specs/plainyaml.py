"""The plain shape of YAML: the text libyaml's emitter writes (block style, as the store writes records) of a
document whose strings are names, versions, timestamps, numbers or JSON text, written and read here in a
fraction of the emitter's and the reader's time. Most records are of this shape (every record the store
writes of a plain site, the managed-fields annotation included), and so is YAML a program writes.

`write` gives the emitter's very text or None; `read` gives what the YAML reader reads or None, and takes
only text that `write` gives back unchanged: a document is never read differently here than there. Anything
else is the emitter's and the reader's (store/records.py, specs/yamlio.py).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml
from yaml.nodes import ScalarNode
from yaml.representer import SafeRepresenter


def write(document: dict[str, object]) -> str | None:
    """The text yaml.dump(document, Dumper=CSafeDumper, default_flow_style=False, sort_keys=False,
    allow_unicode=True) writes, when every string of the document is of the shapes known here; else None."""
    lines: list[str] = []
    if _block_mapping(document, "", "", lines):
        return "".join(lines)
    return None


_TAG = "tag:yaml.org,2002:"
_STR_TAG = f"{_TAG}str"
_FLOATS = SafeRepresenter()
_RESOLVER: Any = yaml.resolver.Resolver()
# Strings the emitter writes as they are (plain) unless they would read back as another type (an int, a
# bool, a timestamp), which it writes in single quotes; with no space, nothing in them can be folded at the
# line width. Any other string (spaces, quotes, '#', ': ', non-ASCII...) is left to the emitter itself.
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,79}")
# Strings that read back as another type are single-quoted: these shapes alone (timestamps, numbers).
_QUOTED = re.compile(r"[A-Za-z0-9_.+-][A-Za-z0-9_.:+-]{0,79}")
# Strings that start with a YAML indicator cannot be plain: printable ASCII with no space in it (nothing to
# fold at the line width, whatever its length) is single-quoted, a quote doubled. JSON in a string is of this
# shape: the managed-fields annotation every apply writes.
_INDICATED = re.compile(r"""[#,\[\]{}&*!|>'"%@`][!-~]*""")


def _string_text(value: str) -> str | None:
    # Not remembered: such text (JSON with a timestamp) is seldom written twice.
    if _INDICATED.fullmatch(value) is not None:
        return "'" + value.replace("'", "''") + "'"
    return _name_text(value)


# Most strings of a record recur in every record (field names, defaults): each is looked at once.
@functools.lru_cache(maxsize=4096)
def _name_text(value: str) -> str | None:
    if value == "":
        return "''"
    plain = _PLAIN.fullmatch(value) is not None
    if not plain and _QUOTED.fullmatch(value) is None:
        return None
    if _RESOLVER.resolve(ScalarNode, value, (True, False)) == _STR_TAG:
        return value if plain else None
    return f"'{value}'"


def _scalar_text(value: object) -> str | None:
    """How the emitter writes a scalar in block context, for the shapes known here; None for any other."""
    if isinstance(value, str):
        return _string_text(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text: str = _FLOATS.represent_float(value).value
        return text
    return None


def _key_text(key: object) -> str | None:
    """A mapping key the emitter writes plain (keys of other shapes are left to it)."""
    if isinstance(key, str) and _string_text(key) == key:
        return key
    return None


def _block_mapping(mapping: dict[str, object], first: str, indent: str, lines: list[str]) -> bool:
    """Append the lines of a non-empty block mapping (`first` starts its first line: "- " in a sequence) as
    the emitter writes them; False when something in it is not of the shapes known here."""
    prefix = first
    for key, value in mapping.items():
        key_text = _key_text(key)
        if key_text is None:
            return False
        head = f"{prefix}{key_text}:"
        prefix = indent
        if isinstance(value, dict):
            if not value:
                lines.append(f"{head} {{}}\n")
            else:
                lines.append(f"{head}\n")
                if not _block_mapping(value, f"{indent}  ", f"{indent}  ", lines):
                    return False
        elif isinstance(value, list):
            if not value:
                lines.append(f"{head} []\n")
            else:
                # A sequence in a mapping is written at the mapping's own indentation.
                lines.append(f"{head}\n")
                if not _block_sequence(value, indent, lines):
                    return False
        else:
            text = _scalar_text(value)
            if text is None:
                return False
            lines.append(f"{head} {text}\n")
    return True


def _block_sequence(items: list[object], indent: str, lines: list[str]) -> bool:
    for item in items:
        if isinstance(item, dict) and item:
            if not _block_mapping(item, f"{indent}- ", f"{indent}  ", lines):
                return False
            continue
        if isinstance(item, (dict, list)):
            return False
        text = _scalar_text(item)
        if text is None:
            return False
        lines.append(f"{indent}- {text}\n")
    return True


# The lines of a block document as _block_mapping writes them: "- " item markers, then "key:", "key: value"
# or a scalar (an item's).
_Token = tuple[str, int, str, str | None]
_PLAIN_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_PLAIN_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+(e[-+][0-9]+)?")


def read(text: bytes, max_depth: int) -> dict[str, object] | None:
    """The mapping of a document written in the shapes `write` writes, read in a fraction of the YAML
    reader's time; None for any other text, which the YAML reader reads. Read here only when writing it back
    gives the very same text: then it is what the YAML reader would read, since that reads back what
    libyaml's emitter writes. Text with more than `max_depth` collections one inside another is left to the
    YAML reader too, which refuses it where that is its bound (the reading here recurses once per level)."""
    if not text.endswith(b"\n") or not text.isascii():
        return None
    tokens = _tokens(text.decode().split("\n")[:-1], max_column=2 * max_depth)
    if tokens is None or not tokens or tokens[0][:2] != ("key", 0):
        return None
    parsed = _parsed_mapping(tokens, 0, 0, max_depth) if max_depth >= 1 else None
    if parsed is None or parsed[1] != len(tokens):
        return None
    document = parsed[0]
    lines: list[str] = []
    if not _block_mapping(document, "", "", lines) or "".join(lines).encode() != text:
        return None
    return document


def _tokens(lines: list[str], max_column: int) -> list[_Token] | None:
    tokens: list[_Token] = []
    for line in lines:
        content = line.lstrip(" ")
        column = len(line) - len(content)
        while content.startswith("- "):
            tokens.append(("item", column, "", None))
            column += 2
            content = content[2:]
        if column > max_column:
            return None
        if content.startswith("'"):
            tokens.append(("scalar", column, content, None))
            continue
        key, colon, rest = content.partition(":")
        if not colon:
            tokens.append(("scalar", column, content, None))
        elif rest == "":
            tokens.append(("key", column, key, None))
        elif rest.startswith(" "):
            tokens.append(("key", column, key, rest[1:]))
        else:
            return None
    return tokens


def _parsed_mapping(
    tokens: list[_Token], at: int, column: int, room: int
) -> tuple[dict[str, object], int] | None:
    """The mapping at `at`, itself one of the `room` levels of collections left; None past them."""
    mapping: dict[str, object] = {}
    while at < len(tokens) and tokens[at][0] == "key" and tokens[at][1] == column:
        _, _, key, value = tokens[at]
        at += 1
        if key in mapping:
            return None
        child: object
        if value is not None:
            child = _plain_scalar(value, room - 1)
        elif at < len(tokens) and tokens[at][:2] == ("item", column):
            sequence = _parsed_sequence(tokens, at, column, room - 1) if room > 1 else None
            if sequence is None:
                return None
            child, at = sequence
        elif at < len(tokens) and tokens[at][:2] == ("key", column + 2):
            nested = _parsed_mapping(tokens, at, column + 2, room - 1) if room > 1 else None
            if nested is None:
                return None
            child, at = nested
        else:
            return None
        if child is _NOT_PLAIN:
            return None
        mapping[key] = child
    return mapping, at


def _parsed_sequence(
    tokens: list[_Token], at: int, column: int, room: int
) -> tuple[list[object], int] | None:
    items: list[object] = []
    while at < len(tokens) and tokens[at][:2] == ("item", column):
        at += 1
        if at >= len(tokens) or tokens[at][1] != column + 2:
            return None
        kind, _, content, _ = tokens[at]
        if kind == "scalar":
            item = _plain_scalar(content, room - 1)
            if item is _NOT_PLAIN:
                return None
            items.append(item)
            at += 1
        elif kind == "key":
            nested = _parsed_mapping(tokens, at, column + 2, room - 1) if room > 1 else None
            if nested is None:
                return None
            items.append(nested[0])
            at = nested[1]
        else:
            return None
    return items, at


_NOT_PLAIN = object()


def _plain_scalar(text: str, room: int) -> object:
    """The value of a scalar as _scalar_text writes it; _NOT_PLAIN for any other text, and for an empty
    collection with no `room` left for it."""
    if text in ("{}", "[]"):
        if room < 1:
            return _NOT_PLAIN
        return {} if text == "{}" else []
    if len(text) >= 2 and text[0] == text[-1] == "'":
        inner = text[1:-1]
        return _NOT_PLAIN if "'" in inner else inner
    return _plain_value(text)


# Most scalars of a record recur in every record (field names, defaults): each is resolved once.
@functools.lru_cache(maxsize=4096)
def _plain_value(text: str) -> object:
    tag = _RESOLVER.resolve(ScalarNode, text, (True, False))
    if tag == _STR_TAG:
        return text
    if tag == f"{_TAG}int" and _PLAIN_INT.fullmatch(text):
        return int(text)
    if tag == f"{_TAG}float" and _PLAIN_FLOAT.fullmatch(text):
        return float(text)
    if tag == f"{_TAG}bool" and text in ("true", "false"):
        return text == "true"
    if tag == f"{_TAG}null" and text == "null":
        return None
    return _NOT_PLAIN
