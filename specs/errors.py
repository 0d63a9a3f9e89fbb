"""Errors in Site documents, in words a person can act on.

Pydantic says "String should match pattern '^[a-z0-9]...$'"; a person needs to hear what a host name may look
like. Every problem is reported with the field's path in wire form (`spec.domains[2]`), and, when the document
came from YAML, the line and column of that field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from specs import gitsource, models

# Fields in spec that a container platform commonly offers and Director refuses on purpose (multi-tenancy).
_HOST_ACCESS_NOTE = "host binds, privileged mode, ports and capabilities cannot be requested"

_PATTERN_DESCRIPTIONS: dict[str, str] = {
    models.SITE_NAME_PATTERN: (
        "must be a site name: lower-case letters, digits and hyphens, starting and ending with a letter "
        "or digit, such as my-site"
    ),
    models.HOSTNAME_PATTERN: (
        "must be a lower-case host name such as example.org (RFC 1123): letters, digits, hyphens and dots; "
        "no wildcards, spaces or quotes"
    ),
    models.OWNER_PATTERN: (
        "must be a user name: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, "
        "at most 64 characters"
    ),
    models.ENV_NAME_PATTERN: (
        "must be a POSIX environment variable name: letters, digits and underscores, not starting with a "
        "digit, such as DATABASE_URL"
    ),
    models.LABEL_KEY_PATTERN: (
        "must be a label key: an optional DNS prefix and '/', then up to 63 letters, digits, '.', '_' or '-' "
        "starting and ending with a letter or digit, such as example.org/team"
    ),
    models.LABEL_VALUE_PATTERN: (
        "must be a label value: up to 63 letters, digits, '.', '_' or '-', starting and ending with a "
        "letter or digit (or empty)"
    ),
    models.IMAGE_PATTERN: (
        "must be a Docker image reference such as registry.example.org:5000/team/site:1.2: a lower-case "
        "name, an optional tag and an optional @sha256 digest; no spaces, quotes or upper-case letters "
        "in the name"
    ),
    models.HEALTH_PATH_PATTERN: (
        "must be a URL path starting with '/' made of letters, digits and . _ ~ / -, such as /healthz; "
        "no spaces, quotes, '$', ';', '%' or query strings"
    ),
    models.DURATION_PATTERN: "must be a duration such as 500ms, 30s, 2m or 1h",
    gitsource.SECRET_NAME_PATTERN: (
        "must be a secret name: lower-case letters, digits, '.' and '-', starting and ending with a letter "
        "or digit, such as robotics-git"
    ),
    gitsource.REF_NAME_PATTERN: (
        "must be a branch or tag name such as main or release/v1: letters, digits, '.', '_', '-' and '/'; "
        "no '..', no leading '-' or '/', no trailing '/', '.' or '.lock'"
    ),
    gitsource.COMMIT_PATTERN: "must be a full commit id: 40 (or 64) lower-case hexadecimal digits",
    gitsource.REPO_PATH_PATTERN: (
        "must be a directory of the repository such as sites/: letters, digits, '.', '_', '-' and '/'"
    ),
    models.MEMORY_PATTERN: (
        "must be a size such as 256Mi, 1G or 100M: a number with an optional unit k, K, M, G, Ki, Mi or Gi"
    ),
}

_MESSAGES_BY_TYPE: dict[str, str] = {
    "missing": "is required",
    "string_type": "must be text (quote it in YAML if it looks like a number, a date or true/false)",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of names to values",
    "model_type": "must be a mapping of fields",
    "model_attributes_type": "must be a mapping of fields",
    "datetime_type": "must be an RFC 3339 timestamp such as 2024-05-01T12:00:00Z",
    "datetime_parsing": "must be an RFC 3339 timestamp such as 2024-05-01T12:00:00Z",
    "datetime_from_date_parsing": "must be an RFC 3339 timestamp such as 2024-05-01T12:00:00Z",
}

_SHOWN_VALUE_CHARS = 60
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field: `loc` as pydantic gives it (by alias), `message` in plain words."""

    loc: Loc
    message: str
    # True when the problem is the key of a mapping entry (an env or label name), not its value.
    at_key: bool = False

    @property
    def path(self) -> str:
        return field_path(self.loc)


@dataclass(frozen=True)
class SpecError:
    """A document that cannot be used, and where: file, document (1-based), field and its line/column."""

    source: str
    message: str
    document: int | None = None
    field: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def __str__(self) -> str:
        parts = [self.source]
        if self.document is not None:
            parts.append(f"document {self.document}")
        where = self.field or ""
        if self.line is not None:
            position = f"line {self.line}" + (f", column {self.column}" if self.column is not None else "")
            where = f"{where} ({position})" if where else position
        if where:
            parts.append(where)
        parts.append(self.message)
        # One problem, one line: a path or a parser's message may carry a line break.
        return ": ".join(parts).replace("\r", " ").replace("\n", " ")


class InvalidSpec(ValueError):
    """Raised by the strict loaders: carries every problem found, str() is one line per problem."""

    def __init__(self, errors: Sequence[SpecError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


def field_path(loc: Loc) -> str:
    """The wire-form path of a pydantic location: ('spec', 'domains', 2) -> 'spec.domains[2]'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not isinstance(part, str):  # a YAML key that is not text, such as null
            path += f"[{show_value(part)}]"
        elif _SIMPLE_KEY.match(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part)}]"
    return path


def duplicate_key_problem(key: object) -> str:
    """Said of a mapping that gives one key twice, in YAML or JSON: parsers keep the last one silently,
    and a document that says a field twice is a mistake."""
    return f"key {show_value(key)} appears twice in the same mapping; give it once"


def show_value(value: object) -> str:
    """A value quoted for a one-line message: control characters escaped, long values cut."""
    shown = repr(value)
    if len(shown) > _SHOWN_VALUE_CHARS:
        shown = shown[: _SHOWN_VALUE_CHARS - 3] + "..."
    return shown


def problems_from_validation(error: ValidationError) -> list[FieldProblem]:
    return [_problem(detail) for detail in error.errors(include_url=False)]


def _problem(detail: ErrorDetails) -> FieldProblem:
    loc: Loc = tuple(detail["loc"])
    error_type = detail["type"]
    value: Any = detail.get("input")
    at_key = bool(loc) and loc[-1] == "[key]"
    if at_key:
        loc = loc[:-1]

    if error_type == "extra_forbidden":
        return FieldProblem(loc, _unknown_field_message(loc), at_key=True)
    if error_type == "invalid_key":
        # pydantic puts the offending (non-text) key itself at the end of the location.
        return FieldProblem(loc[:-1], f"field names must be text, found {show_value(loc[-1])}")
    if error_type == "string_pattern_mismatch":
        pattern = str(detail.get("ctx", {}).get("pattern", ""))
        description = _PATTERN_DESCRIPTIONS.get(pattern, f"does not have the required form {pattern}")
        message = f"{show_value(value)} {description}{_hostname_hint(pattern, value)}"
        return FieldProblem(loc, f"the name {message}" if at_key else message, at_key)
    if error_type in ("string_too_short", "string_too_long", "too_short", "too_long"):
        return FieldProblem(loc, _length_message(error_type, detail, value), at_key)
    if error_type == "literal_error":
        expected = str(detail.get("ctx", {}).get("expected", ""))
        return FieldProblem(loc, f"must be one of {expected}, got {show_value(value)}", at_key)
    if error_type in ("value_error", "assertion_error"):
        return FieldProblem(loc, str(detail.get("ctx", {}).get("error", detail["msg"])), at_key)
    if error_type in _MESSAGES_BY_TYPE:
        message = _MESSAGES_BY_TYPE[error_type]
        if error_type != "missing":
            message += f", got {show_value(value)}"
        return FieldProblem(loc, message, at_key)
    # Range checks and the rest: pydantic's wording ("Input should be less than or equal to 8") is plain.
    message = detail["msg"].replace("Input should", "must")
    return FieldProblem(loc, f"{message}, got {show_value(value)}", at_key)


def _unknown_field_message(loc: Loc) -> str:
    name = loc[-1] if loc else "?"
    parent = field_path(loc[:-1])
    owner = f"in {parent}" if parent else "in a Site"
    message = f"unknown field: Director has no field {show_value(name)} {owner}"
    if parent.startswith("spec"):
        message += f" ({_HOST_ACCESS_NOTE})"
    return message


def _length_message(error_type: str, detail: ErrorDetails, value: object) -> str:
    ctx = detail.get("ctx", {})
    unit = "characters" if error_type.startswith("string") else "entries"
    if error_type.endswith("too_short"):
        return f"must have at least {ctx.get('min_length')} {unit}, got {show_value(value)}"
    limit = ctx.get("max_length")
    if isinstance(value, str | bytes):
        return f"must have at most {limit} {unit}, got {len(value)}"
    return f"must have at most {limit} {unit}, got {ctx.get('actual_length', 'more')}"


def _hostname_hint(pattern: str, value: object) -> str:
    if pattern != models.HOSTNAME_PATTERN or not isinstance(value, str):
        return ""
    if any(ord(c) > 127 for c in value):
        try:
            ascii_form = value.lower().encode("idna").decode("ascii")
        except UnicodeError:
            return "; international names must be given in their ASCII (punycode) form"
        return f"; give international names in their ASCII (punycode) form, here {ascii_form}"
    if value != value.lower() and re.fullmatch(models.HOSTNAME_PATTERN, value.lower()):
        return f"; write it in lower case: {value.lower()}"
    return ""
