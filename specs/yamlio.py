"""Site documents in and out of YAML.

Reading is defensive: a document is parsed to events by yaml's C parser, and composed here, without
recursion, into a node tree whose size, nesting depth and alias expansion are bounded *before* any Python
object is constructed, so an alias bomb or a deeply nested document is refused in milliseconds with a
message rather than taking the memory of the process. The node tree then points each error at its line
and column.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from specs import plainyaml
from specs.errors import (
    InvalidSpec,
    SpecError,
    duplicate_key_problem,
    field_path,
    problems_from_validation,
    show_value,
)
from specs.models import API_VERSION, KIND_SITE, Resource, Site

try:
    from yaml import CSafeDumper as _Dumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_DOCUMENTS_PER_FILE = 10_000
# Nodes a document may stand for once every alias is expanded: a Site is a few hundred at most.
MAX_EXPANDED_NODES = 100_000
# Characters of scalars once every alias is expanded: one long value repeated by aliases is a bomb too.
MAX_EXPANDED_CHARS = 2 * MAX_DOCUMENT_BYTES
MAX_DEPTH = 64
# Text read without the YAML reader (specs/plainyaml.py) is at most this long: at two bytes or more a node,
# fewer nodes than MAX_EXPANDED_NODES.
_PLAIN_MAX_BYTES = 64 * 1024
_FastLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The tags of plain data: a Site has no use for binary strings, sets, ordered maps or pairs.
ALLOWED_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")
)
STDIN = "-"
STDIN_SOURCE = "<stdin>"
YAML_SUFFIXES = (".yaml", ".yml")
# The kinds a document may be, by its `kind`; most readers take Sites only.
Kinds = Mapping[str, type[Resource]]
SITES_ONLY: Kinds = {KIND_SITE: Site}


@dataclass(frozen=True)
class LoadedSite:
    site: Site
    source: str
    document: int  # 1-based within its source


@dataclass(frozen=True)
class LoadedResource:
    """A document of another kind than Site, when the reader asked for other kinds too."""

    resource: Resource
    source: str
    document: int


@dataclass
class LoadResult:
    loaded: list[LoadedSite] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    resources: list[LoadedResource] = field(default_factory=list)
    # The names of documents that were refused although their metadata.name could be read, and how many
    # were refused before any name could be: what a reader that prunes must know to keep those sites.
    refused_names: list[str] = field(default_factory=list)
    unnamed_refusals: int = 0

    @property
    def sites(self) -> list[Site]:
        return [entry.site for entry in self.loaded]

    @property
    def ok(self) -> bool:
        return not self.errors

    def extend(self, other: LoadResult) -> None:
        self.loaded.extend(other.loaded)
        self.errors.extend(other.errors)
        self.resources.extend(other.resources)
        self.refused_names.extend(other.refused_names)
        self.unnamed_refusals += other.unnamed_refusals


class _Refused(Exception):
    """A document broke a bound; carries the message and where."""

    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


@dataclass(frozen=True)
class _Expansion:
    """What a node stands for once its aliases are expanded."""

    nodes: int
    chars: int

    def __add__(self, other: _Expansion) -> _Expansion:
        return _Expansion(self.nodes + other.nodes, self.chars + other.chars)


_ONE_NODE = _Expansion(1, 0)


@dataclass
class _OpenCollection:
    node: SequenceNode | MappingNode
    expanded: _Expansion = _ONE_NODE
    pending_key: Node | None = None


def load_text(data: str | bytes, source: str = "<string>", *, kinds: Kinds = SITES_ONLY) -> LoadResult:
    """Every Site (and resource of the other `kinds`) in a (multi-document) YAML text, and every problem
    found in it. Never raises."""
    result = LoadResult()
    if len(data) > MAX_FILE_BYTES:
        result.errors.append(SpecError(source, f"is larger than {_mib(MAX_FILE_BYTES)}; refused unread"))
        result.unnamed_refusals += 1
        return result
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as error:
            result.errors.append(SpecError(source, f"is not valid Unicode text: {error.reason}"))
            result.unnamed_refusals += 1
            return result
    loader = _Loader(data)
    document = 0
    try:
        loader.get_event()  # StreamStart
        # Counted before the parser looks ahead, so a syntax error is reported in the document it is in.
        while not _at_stream_end(loader, document + 1):
            start = loader.get_event()
            document += 1
            if document > MAX_DOCUMENTS_PER_FILE:
                result.errors.append(
                    SpecError(source, f"has more than {MAX_DOCUMENTS_PER_FILE} documents", document)
                )
                result.unnamed_refusals += 1
                break
            _load_document(loader, start, source, document, result, kinds)
    except _ParseFailed as failed:
        result.errors.append(_yaml_error(failed.error, source, failed.document))
        result.unnamed_refusals += 1
    except yaml.YAMLError as error:
        result.errors.append(_yaml_error(error, source, document or None))
        result.unnamed_refusals += 1
    finally:
        loader.dispose()
    return result


def load_path(path: str | Path, *, stdin: BinaryIO | None = None, kinds: Kinds = SITES_ONLY) -> LoadResult:
    """Sites from a file, every *.yaml/*.yml file of a directory (sorted, not recursive), or stdin ("-")."""
    if str(path) == STDIN:
        stream = stdin if stdin is not None else sys.stdin.buffer
        return _load_bytes(lambda: stream.read(MAX_FILE_BYTES + 1), STDIN_SOURCE, kinds)
    location = Path(path)
    if location.is_dir():
        result = LoadResult()
        try:
            files = sorted(
                child for child in location.iterdir() if child.suffix in YAML_SUFFIXES and child.is_file()
            )
        except OSError as error:
            result.errors.append(SpecError(str(location), f"cannot be read: {error.strerror or error}"))
            return result
        if not files:
            result.errors.append(SpecError(str(location), "directory has no *.yaml or *.yml files"))
        for file in files:
            result.extend(load_path(file, kinds=kinds))
        return result

    def read() -> bytes:
        with location.open("rb") as stream:
            return stream.read(MAX_FILE_BYTES + 1)

    return _load_bytes(read, str(location), kinds)


def load_paths(
    paths: Iterable[str | Path], *, stdin: BinaryIO | None = None, kinds: Kinds = SITES_ONLY
) -> LoadResult:
    result = LoadResult()
    for path in paths:
        result.extend(load_path(path, stdin=stdin, kinds=kinds))
    return result


def parse_site(data: str | bytes, source: str = "<string>") -> Site:
    """Exactly one Site from YAML text; raises InvalidSpec listing every problem."""
    result = load_text(data, source)
    if result.errors:
        raise InvalidSpec(result.errors)
    if len(result.loaded) != 1:
        raise InvalidSpec([SpecError(source, f"must hold exactly one Site, found {len(result.loaded)}")])
    return result.loaded[0].site


def load_data(data: bytes, source: str, *, allow_aliases: bool = True) -> object:
    """The one YAML document in `data` as plain data, under the bounds and checks a Site file has (size,
    nesting depth, alias expansion, tags, keys given twice); raises InvalidSpec naming the problem and
    its line. For documents that are not whole Sites, such as an API request body that patches one."""
    if len(data) > MAX_FILE_BYTES:
        raise InvalidSpec([SpecError(source, f"is larger than {_mib(MAX_FILE_BYTES)}; refused unread")])
    # Text in the shape the emitter writes (what programs send) holds no alias, tag or key given twice, and
    # no more levels than the reader takes; small enough, it holds fewer nodes than the reader counts.
    plain = plainyaml.read(data, MAX_DEPTH) if len(data) <= _PLAIN_MAX_BYTES else None
    if plain is not None:
        return plain
    loader = _Loader(data)
    try:
        loader.get_event()  # StreamStart
        if _at_stream_end(loader, 1):
            return None
        root = _compose_document(loader, loader.get_event(), allow_aliases=allow_aliases)
        if not _at_stream_end(loader, 2):
            raise InvalidSpec([SpecError(source, "holds more than one YAML document; send exactly one")])
        if root is None:
            return None
        data_or_error = _constructed(loader, root, source, None)
    except _Refused as refused:
        line, column = _mark_position(refused.mark)
        raise InvalidSpec([SpecError(source, refused.message, None, None, line, column)]) from None
    except _ParseFailed as failed:
        raise InvalidSpec([_yaml_error(failed.error, source, None)]) from None
    except yaml.YAMLError as error:
        raise InvalidSpec([_yaml_error(error, source, None)]) from None
    finally:
        loader.dispose()
    if isinstance(data_or_error, SpecError):
        raise InvalidSpec([data_or_error])
    return data_or_error


def too_deep_problem() -> str:
    """Said of a document nested past MAX_DEPTH, in YAML or JSON."""
    return f"document is nested more than {MAX_DEPTH} levels deep"


def validate_document(
    data: object, *, source: str, document: int | None = None, root: Node | None = None
) -> tuple[Site | None, list[SpecError]]:
    """A Site from an already parsed document (YAML or a JSON body), or the problems with it."""
    resource, errors = validate_resource(data, source=source, document=document, root=root)
    return (resource if isinstance(resource, Site) else None), errors


def validate_resource(
    data: object,
    *,
    source: str,
    document: int | None = None,
    root: Node | None = None,
    kinds: Kinds = SITES_ONLY,
) -> tuple[Resource | None, list[SpecError]]:
    """A resource of one of `kinds` from an already parsed document, or the problems with it."""

    def error(message: str, loc: tuple[int | str, ...] = (), at_key: bool = False) -> SpecError:
        line, column = _position(root, loc, at_key)
        return SpecError(source, message, document, field_path(loc) or None, line, column)

    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else show_value(data)
        return None, [error(f"must be a mapping with apiVersion, kind, metadata and spec, got {kind}")]
    header_errors = []
    if data.get("apiVersion") != API_VERSION:
        header_errors.append(
            error(_header_problem("apiVersion", API_VERSION, data.get("apiVersion")), ("apiVersion",))
        )
    given_kind = data.get("kind")
    model = kinds.get(given_kind) if isinstance(given_kind, str) else None
    if model is None:
        expected = " or ".join(kinds)
        problem = _header_problem("kind", expected, given_kind, only=len(kinds) == 1)
        header_errors.append(error(problem, ("kind",)))
    if header_errors or model is None:
        return None, header_errors
    try:
        return model.model_validate(data), []
    except ValidationError as invalid:
        return None, [error(p.message, p.loc, p.at_key) for p in problems_from_validation(invalid)]


def _header_problem(name: str, expected: str, value: object, *, only: bool = True) -> str:
    got = "it is missing" if value is None else f"got {show_value(value)}"
    known = (", the only kind Director knows" if only else "") if name == "kind" else ""
    return f"{name} must be {expected}{known}; {got}"


def dump_site(site: Site, *, include_status: bool = True) -> str:
    """Block-style YAML in wire form, keys in a stable order: apiVersion, kind, metadata, spec, status."""
    return yaml.dump(
        _without_empty(site.to_document(include_status=include_status)),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )


def dump_sites(sites: Iterable[Site], *, include_status: bool = True) -> str:
    return yaml.dump_all(
        [_without_empty(site.to_document(include_status=include_status)) for site in sites],
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        explicit_start=True,
    )


def _without_empty(document: dict[str, object]) -> dict[str, object]:
    # Empty labels, owners, env... are the defaults; leaving them out keeps a dumped record short to read.
    pruned: dict[str, object] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            value = _without_empty(value)
        if value == {} or value == []:
            continue
        pruned[key] = value
    return pruned


class _ParseFailed(Exception):
    def __init__(self, error: yaml.YAMLError, document: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.document = document


def _at_stream_end(loader: Any, next_document: int) -> bool:
    try:
        return bool(loader.check_event(yaml.StreamEndEvent))
    except yaml.YAMLError as error:
        raise _ParseFailed(error, next_document) from error


def _load_bytes(read: Callable[[], bytes], source: str, kinds: Kinds = SITES_ONLY) -> LoadResult:
    try:
        data = read()
    except OSError as error:
        return LoadResult(
            errors=[SpecError(source, f"cannot be read: {error.strerror or error}")], unnamed_refusals=1
        )
    return load_text(data, source, kinds=kinds)


def _load_document(
    loader: Any, start: yaml.Event | None, source: str, document: int, result: LoadResult, kinds: Kinds
) -> None:
    try:
        root = _compose_document(loader, start)
        if root is None:
            return
    except _Refused as refused:
        _skip_to_document_end(loader)
        line, column = _mark_position(refused.mark)
        result.errors.append(SpecError(source, refused.message, document, None, line, column))
        result.unnamed_refusals += 1
        return
    data = _constructed(loader, root, source, document)
    if isinstance(data, SpecError):
        result.errors.append(data)
        result.unnamed_refusals += 1
        return
    if data is None:  # an empty document, such as after a trailing `---`
        return
    resource, errors = validate_resource(data, source=source, document=document, root=root, kinds=kinds)
    if isinstance(resource, Site):
        result.loaded.append(LoadedSite(resource, source, document))
    elif resource is not None:
        result.resources.append(LoadedResource(resource, source, document))
    if errors:
        name = _given_name(data)
        if name is None:
            result.unnamed_refusals += 1
        else:
            result.refused_names.append(name)
    result.errors.extend(errors)


def _given_name(data: object) -> str | None:
    metadata = data.get("metadata") if isinstance(data, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) and name else None


def _constructed(loader: Any, root: Node, source: str, document: int | None) -> object:
    """The Python data of a composed document, or the SpecError saying which value cannot be read."""
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as error:
        return _yaml_error(error, source, document)
    except Exception as error:  # a constructor's ValueError, e.g. on an impossible date such as 2024-02-30
        line, column = _mark_position(_unreadable_scalar(loader, root).start_mark)
        return SpecError(source, f"cannot read a value: {error}", document, None, line, column)


def _compose_document(loader: Any, start: yaml.Event | None, *, allow_aliases: bool = True) -> Node | None:
    """The document's node tree, built without recursion and refused past the bounds."""
    document_mark = _marks(start)[0] if start is not None else None
    start_index = document_mark.index if document_mark is not None else 0
    anchors: dict[str, Node] = {}
    expanded_sizes: dict[int, _Expansion] = {}
    stack: list[_OpenCollection] = []
    root: Node | None = None
    expanded_total = _Expansion(0, 0)

    def attach(node: Node) -> None:
        nonlocal root
        if not stack:
            root = node
            return
        parent = stack[-1]
        parent.expanded += expanded_sizes[id(node)]
        if isinstance(parent.node, SequenceNode):
            parent.node.value.append(node)
        elif parent.pending_key is None:
            parent.pending_key = node
        else:
            parent.node.value.append((parent.pending_key, node))
            parent.pending_key = None

    while True:
        event = loader.get_event()
        if isinstance(event, yaml.DocumentEndEvent):
            return root
        start_mark, end_mark = _marks(event)
        if end_mark.index - start_index > MAX_DOCUMENT_BYTES:
            raise _Refused(f"document is larger than {_mib(MAX_DOCUMENT_BYTES)}", document_mark)
        if isinstance(event, yaml.AliasEvent):
            if not allow_aliases:
                raise _Refused(
                    f"YAML aliases (*{event.anchor}) are not accepted here; write the values out", start_mark
                )
            target = anchors.get(event.anchor or "")
            if target is None:
                raise _Refused(f"alias *{event.anchor} refers to no anchor", start_mark)
            if any(open_.node is target for open_ in stack):
                raise _Refused(f"alias *{event.anchor} refers to a node that contains it", start_mark)
            expanded_total += expanded_sizes[id(target)]
            _check_expansion(expanded_total, start_mark)
            attach(target)
        elif isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(ScalarNode, event.value, event.implicit)
            _check_tag(tag, start_mark)
            node: Node = ScalarNode(tag, event.value, start_mark, end_mark, style=event.style)
            _remember_anchor(anchors, event.anchor, node)
            expanded_sizes[id(node)] = _Expansion(1, len(event.value))
            expanded_total += expanded_sizes[id(node)]
            _check_expansion(expanded_total, start_mark)
            attach(node)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise _Refused(too_deep_problem(), start_mark)
            is_sequence = isinstance(event, yaml.SequenceStartEvent)
            node_class = SequenceNode if is_sequence else MappingNode
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(node_class, None, event.implicit)
            _check_tag(tag, start_mark)
            collection = node_class(tag, [], start_mark, None, flow_style=event.flow_style)
            _remember_anchor(anchors, event.anchor, collection)
            expanded_total += _ONE_NODE
            _check_expansion(expanded_total, start_mark)
            stack.append(_OpenCollection(collection))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            closed = stack.pop()
            closed.node.end_mark = end_mark
            if isinstance(closed.node, MappingNode):
                _check_duplicate_keys(closed.node)
            expanded_sizes[id(closed.node)] = closed.expanded
            attach(closed.node)


def _unreadable_scalar(loader: Any, root: Node) -> Node:
    """The first scalar the constructor fails on, to point at it; the root when none fails alone."""
    pending = [root]
    seen: set[int] = set()
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            try:
                loader.construct_object(node)
            except Exception:  # the failure being looked for
                return node
        elif isinstance(node, SequenceNode):
            pending.extend(reversed(node.value))
        elif isinstance(node, MappingNode):
            pending.extend(child for pair in reversed(node.value) for child in reversed(pair))
    return root


def _check_tag(tag: str, mark: yaml.Mark) -> None:
    if tag not in ALLOWED_TAGS:
        shown = tag.replace("tag:yaml.org,2002:", "!!")
        raise _Refused(
            f"the tag {shown} is not allowed: a Site holds only text, numbers, lists and mappings", mark
        )


def _marks(event: yaml.Event) -> tuple[yaml.Mark, yaml.Mark]:
    # The C parser's marks are twins of yaml.Mark by duck typing, and a parser gives every event both.
    return cast(yaml.Mark, event.start_mark), cast(yaml.Mark, event.end_mark)


def _remember_anchor(anchors: dict[str, Node], anchor: str | None, node: Node) -> None:
    if anchor is not None:
        anchors[anchor] = node


def _check_expansion(expanded_total: _Expansion, mark: yaml.Mark) -> None:
    if expanded_total.nodes > MAX_EXPANDED_NODES:
        raise _Refused(
            f"document expands to more than {MAX_EXPANDED_NODES} nodes through aliases (an alias bomb?)", mark
        )
    if expanded_total.chars > MAX_EXPANDED_CHARS:
        raise _Refused(
            f"document expands to more than {_mib(MAX_EXPANDED_CHARS)} of text through aliases "
            "(an alias bomb?)",
            mark,
        )


def _check_duplicate_keys(mapping: MappingNode) -> None:
    # Safe loading keeps the last of two equal keys silently; a spec that says a field twice is a mistake.
    seen: set[str] = set()
    for key, _ in mapping.value:
        if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in seen:
                raise _Refused(duplicate_key_problem(key.value), key.start_mark)
            seen.add(key.value)


def _skip_to_document_end(loader: Any) -> None:
    while not isinstance(loader.get_event(), yaml.DocumentEndEvent):
        pass


def _position(root: Node | None, loc: tuple[int | str, ...], at_key: bool) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the node at `loc`, or of its deepest ancestor present in the document."""
    if root is None:
        return None, None
    node: Node = root
    for depth, part in enumerate(loc):
        child: Node | None = None
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == str(part):
                    last = depth == len(loc) - 1
                    child = key if at_key and last else value
                    break
        elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
    return _mark_position(node.start_mark)


def _mark_position(mark: yaml.Mark | None) -> tuple[int | None, int | None]:
    if mark is None:
        return None, None
    return mark.line + 1, mark.column + 1


def _yaml_error(error: yaml.YAMLError, source: str, document: int | None) -> SpecError:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    if problem:
        message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    else:
        message = f"invalid YAML: {' '.join(str(error).split())}"
    line, column = _mark_position(mark)
    return SpecError(source, message, document, None, line, column)


def _mib(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB"


_STR_TAG = "tag:yaml.org,2002:str"


def _build(node: yaml.Node, loader: Any, depth: int) -> Any:
    """Python data from a composed node; plain strings, lists and mappings skip PyYAML's slow constructor."""
    if depth > MAX_DEPTH:
        raise yaml.YAMLError(f"the document nests deeper than {MAX_DEPTH} levels (or refers to itself)")
    if isinstance(node, yaml.ScalarNode):
        return node.value if node.tag == _STR_TAG else loader.construct_object(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, loader, depth + 1) for item in node.value]
    if isinstance(node, yaml.MappingNode) and all(key.tag == _STR_TAG for key, _ in node.value):
        return {key.value: _build(value, loader, depth + 1) for key, value in node.value}
    return loader.construct_object(node, deep=True)


def load_record(text: bytes) -> Any:
    """A record the store wrote (or a person edited): yaml.safe_load, several times faster, as depth-bounded.

    No locations are kept: a record that does not validate is reported by file and field, and the
    located, hostile-input reader above is for what people and clients send. A record in the plain shape
    (most: the store writes it so) is read without the YAML reader.
    """
    plain = plainyaml.read(text, MAX_DEPTH)
    if plain is not None:
        return plain
    loader = _FastLoader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _build(node, loader, 0)
    finally:
        loader.dispose()


def locate(data: bytes, document: int, field: str) -> tuple[int | None, int | None]:
    """Line and column (1-based) of `field` (a wire-form path such as spec.owners[0], as an API error's
    cause names it) in the `document`-th document of a YAML text: where a refusal that came from elsewhere
    points in the file. The deepest part of the path present is given; (None, None) if the document is
    not there."""
    loader = _Loader(data)
    try:
        loader.get_event()  # StreamStart
        for _ in range(document - 1):
            if _at_stream_end(loader, 0):
                return None, None
            loader.get_event()
            _skip_to_document_end(loader)
        if _at_stream_end(loader, 0):
            return None, None
        root = _compose_document(loader, loader.get_event())
    except (yaml.YAMLError, _Refused, _ParseFailed):
        return None, None
    finally:
        loader.dispose()
    return _position_of_path(root, field)


def _position_of_path(root: Node | None, field: str) -> tuple[int | None, int | None]:
    """Walk a wire-form path on the node tree. A key may itself hold dots (a label such as a.b/c), so at
    each mapping the longest key the path goes on with is taken."""
    if root is None:
        return None, None
    node: Node = root
    rest = field
    while rest:
        child: Node | None = None
        if rest.startswith("["):
            closing = rest.find("]")
            if closing < 0:
                break
            token, rest = rest[1:closing], rest[closing + 1 :].removeprefix(".")
            if isinstance(node, SequenceNode) and token.isdigit() and int(token) < len(node.value):
                child = node.value[int(token)]
            elif isinstance(node, MappingNode):
                key = token[1:-1] if token.startswith('"') and token.endswith('"') else token
                child = next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == key), None)
        elif isinstance(node, MappingNode):
            best: tuple[int, Node] | None = None
            for key, value in node.value:
                if not isinstance(key, ScalarNode):
                    continue
                name = str(key.value)
                continues = rest == name or rest.startswith((f"{name}.", f"{name}["))
                if continues and (best is None or len(name) > best[0]):
                    best = (len(name), value)
            if best is not None:
                child = best[1]
                rest = rest[best[0] :].removeprefix(".")
        if child is None:
            break
        node = child
    return _mark_position(node.start_mark)
