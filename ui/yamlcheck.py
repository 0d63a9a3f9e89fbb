"""A Site in YAML, checked as a person types it: the same loader and words as `dirctl apply --dry-run`,
then the server's own dry run, each problem placed at its line and column in the text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from api.errors import ApiError
from specs import yamlio
from specs.errors import InvalidSpec

SOURCE = "site.yaml"
_INDEX = re.compile(r"^\[(\d+)\]")


@dataclass(frozen=True)
class Diagnostic:
    """One problem: where (1-based line and column, when known), which field, and what, in dirctl's words."""

    message: str
    line: int | None = None
    column: int | None = None
    field: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "line": self.line, "column": self.column, "field": self.field}


def locate(text: str, path: str) -> tuple[int | None, int | None]:
    """Line and column of the value at a field path such as spec.domains[1] (or of its deepest part found)."""
    try:
        node: Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None, None
    if node is None:
        return None, None
    rest = path
    while rest:
        child: Node | None = None
        index = _INDEX.match(rest)
        if index is not None:
            if isinstance(node, SequenceNode) and int(index[1]) < len(node.value):
                child = node.value[int(index[1])]
            rest = rest[index.end() :]
        elif isinstance(node, MappingNode):
            # Keys may hold dots (example.org/team): the longest key that the path continues from wins.
            for key, value in sorted(node.value, key=lambda pair: -len(str(pair[0].value))):
                name = str(key.value) if isinstance(key, ScalarNode) else ""
                if name and rest.startswith(name) and rest[len(name) : len(name) + 1] in ("", ".", "["):
                    child = value
                    rest = rest[len(name) :]
                    break
        if child is None:
            break
        node = child
        rest = rest.removeprefix(".")
    return node.start_mark.line + 1, node.start_mark.column + 1


def parse(text: str) -> tuple[Any, list[Diagnostic]]:
    """The one Site document in `text` as plain data, or the problems dirctl would report, located."""
    result = yamlio.load_text(text, SOURCE)
    problems = [
        Diagnostic(f"error: {error}", error.line, error.column, error.field) for error in result.errors
    ]
    if problems:
        return None, problems
    if len(result.loaded) != 1:
        return None, [Diagnostic(f"error: {SOURCE}: must hold exactly one Site, found {len(result.loaded)}")]
    try:
        return yamlio.load_data(text.encode(), SOURCE, allow_aliases=False), []
    except InvalidSpec as invalid:
        return None, [
            Diagnostic(f"error: {error}", error.line, error.column, error.field) for error in invalid.errors
        ]


def from_api_error(text: str, name: str, error: ApiError) -> list[Diagnostic]:
    """The server's refusal as dirctl prints it, with each cause also at its own line."""
    found = [Diagnostic(f"error: site/{name} ({SOURCE}): {error.message}")]
    for cause in error.causes:
        line, column = locate(text, cause.field) if cause.field else (None, None)
        found.append(Diagnostic(f"{cause.field}: {cause.message}", line, column, cause.field))
    return found
