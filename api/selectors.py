"""Kubernetes label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma-joined."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from api.errors import ApiError, Cause

Requirement = Callable[[Mapping[str, str]], bool]

_KEY = r"[A-Za-z0-9][A-Za-z0-9._/-]*"
_VALUE = r"[A-Za-z0-9._-]*"
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQUALITY = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _split(selector: str) -> list[str]:
    """Split at commas that are not inside a set's parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _requirement(text: str) -> Requirement:
    if match := _SET.match(text):
        key, operator, raw_values = match.groups()
        values = {value.strip() for value in raw_values.split(",") if value.strip()}
        if not values or not all(re.fullmatch(_VALUE, value) for value in values):
            raise ValueError(f"{text.strip()!r}: a set needs one or more label values in parentheses")
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQUALITY.match(text):
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS.match(text):
        negated, key = match.groups()
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise ValueError(
        f"{text.strip()!r} is not a label requirement such as app=web, tier!=db, env in (a,b), !x"
    )


def parse_label_selector(selector: str) -> Requirement:
    """A predicate over a site's labels; 400 naming the bad requirement."""
    try:
        requirements = [_requirement(part) for part in _split(selector)]
    except ValueError as error:
        raise ApiError(
            400, f"invalid labelSelector: {error}", causes=[Cause("labelSelector", str(error))]
        ) from None
    return lambda labels: all(requirement(labels) for requirement in requirements)


def name_selector(selector: str | None) -> str | None:
    """The one field selector sites support, `metadata.name=NAME` (or `==`); None when none is given."""
    if not selector:
        return None
    key, _, value = selector.partition("=")
    value = value.removeprefix("=")
    if key.strip() != "metadata.name" or not value.strip():
        raise ApiError(
            400,
            f"fieldSelector supports only metadata.name=NAME, got {selector!r}",
            causes=[Cause("fieldSelector", "only metadata.name=NAME is supported")],
        )
    return value.strip()
