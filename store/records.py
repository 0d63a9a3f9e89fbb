"""The record store: one YAML file per record under the state directory, Kubernetes semantics, for any kind.

Layout (all readable and editable by hand), `<kinds>` being sites, platforms...:

    specs/<kinds>/<name>.yaml                  metadata + spec, written by the API side
    status/<kinds>/<name>.yaml                 status, written by the controller only
    history/<kinds>/<name>/<generation>.yaml   previous spec generations, newest `history_limit` kept
    claims/hosts/<host>                      which site holds each custom domain (specs/hostclaims.py)
    .lock, .resource-version                 the write lock and the store-wide resourceVersion counter

Spec and status live in separate files so their writers never conflict: the optimistic-concurrency
check of `update`/`delete` is against the spec record's resourceVersion, and a status write in between
does not make a spec writer's copy stale. A record read back carries the newer of the two versions.
Every write happens under one flock and goes through temp file, fsync, rename; a spec write then fsyncs
the directory too. A status record is recomputed by the controller, so a crash may lose its newest
version (the rename), never tear it. It is written as indented JSON, which is YAML too: as readable by
hand and by any YAML reader, and a small fraction of the cost of YAML's emitter on the controller's
busiest path.

A site's custom domain belongs to one record at a time, the first to claim it: a write naming a domain another
record holds is refused (HostTaken) under the same lock, so no order of writers, restarts or deletions
ever moves a host from its holder.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import functools
import gc
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import yaml
from pydantic import ValidationError
from watchfiles import Change, awatch
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.representer import SafeRepresenter

from specs import plainyaml, yamlio
from specs.gitsource import GitSource, GitSourceStatus
from specs.models import SITE_NAME_PATTERN, Model, Resource, Site, SiteStatus, Uid
from specs.platform import Platform, PlatformStatus
from store.durable import (
    Counter,
    exclusive_lock,
    remove_durably,
    remove_stale_temp_files,
    write_atomic,
    write_many_atomic,
)
from store.hostclaims import Claim, HostClaims

log = logging.getLogger(__name__)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_NAME = re.compile(SITE_NAME_PATTERN)
_RECORD_SUFFIX = ".yaml"


class StoreError(Exception):
    """Base of every store error; str() is a one-line message fit for a user."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    """The caller's resourceVersion is not the stored one: re-read and retry."""


class BeingDeleted(StoreError):
    """The record has a deletionTimestamp, and the request would add a finalizer to it."""


class HostTaken(StoreError):
    """A custom domain the record names is held by another site."""

    def __init__(self, host: str, holder: str, index: int) -> None:
        super().__init__(f"the domain {host} is held by site {holder!r}")
        self.host = host
        self.holder = holder
        # Where in spec.domains, so an API error can point at the field.
        self.index = index


class InsufficientStorage(StoreError):
    """The state directory's filesystem is full: nothing was changed; retry when it has room."""

    def __init__(self, state_dir: Path, error: OSError) -> None:
        super().__init__(
            f"the state directory {state_dir} is full ({error.strerror or error}): nothing was written; "
            "free space on its filesystem, then retry"
        )
        self.state_dir = state_dir


# A full filesystem answers a write with one of these: no space left, or the writer's quota is used up.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_out_of_space(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in _NO_ROOM


class InvalidRecord(StoreError):
    """A record file that no longer parses or validates, usually after a hand edit."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class RecordError:
    name: str
    path: Path
    message: str


R = TypeVar("R", bound=Resource)
S = TypeVar("S", bound=Model)


@dataclass(frozen=True)
class RecordKind(Generic[R]):
    """What the store needs to know of a kind."""

    model: type[R]
    status: type[Model]
    # The directory names under specs/, status/ and history/.
    plural: str
    # The custom domains a record claims; the store holds each for its first claimant. None: none.
    hosts: Callable[[R], builtins.list[str]] | None = None

    @property
    def kind(self) -> str:
        return str(self.model.model_fields["kind"].default)


SITES: RecordKind[Site] = RecordKind(
    Site, SiteStatus, "sites", hosts=lambda site: builtins.list(site.spec.domains)
)
PLATFORMS: RecordKind[Platform] = RecordKind(Platform, PlatformStatus, "platforms")
GITSOURCES: RecordKind[GitSource] = RecordKind(GitSource, GitSourceStatus, "gitsources")


@dataclass(frozen=True)
class WatchEvent(Generic[R]):
    type: Literal["ADDED", "MODIFIED", "DELETED", "ERROR"]
    name: str
    # The record (named `site` for the kind most watchers watch).
    site: R | None
    error: RecordError | None = None


class _StatusMeta(Model):
    name: str
    uid: Uid | None = None
    resource_version: str


class _StatusRecord(Model, Generic[S]):
    """The status file: enough metadata to tie it to one incarnation of the spec record."""

    api_version: Literal["director.io/v1"] = "director.io/v1"
    kind: str = "Site"
    metadata: _StatusMeta
    status: S


@dataclass(frozen=True, slots=True)
class _Status:
    """A status record as this process keeps it: the incarnation of the spec record it belongs to, its
    version and the status. The file's model wraps the same in two more models, about half a kilobyte a
    record in a cache that holds every record."""

    uid: str | None
    resource_version: str
    status: Model


def _kept(record: _StatusRecord[Model]) -> _Status:
    return _Status(record.metadata.uid, record.metadata.resource_version, record.status)


# What identifies one version of a file without reading it (a rename always brings a new inode): its mtime,
# size and inode, packed in one int. The caches hold several per record; a tuple of three ints cost three
# times as much.
_FileKey = int
_Parsed = TypeVar("_Parsed")
_Cached = TypeVar("_Cached")


def _key_of(st: os.stat_result) -> _FileKey:
    # Size and inode are below 2**64; the mtime may be negative, which the shift keeps apart all the same.
    return (st.st_mtime_ns << 128) | (st.st_size << 64) | st.st_ino


def _scan_keys(directory: Path) -> dict[str, _FileKey]:
    """The identity of each record file in `directory`, by record name (hidden temp files left out)."""
    keys: dict[str, _FileKey] = {}
    for entry in os.scandir(directory):
        if entry.name.endswith(_RECORD_SUFFIX) and not entry.name.startswith("."):
            with contextlib.suppress(FileNotFoundError):
                keys[entry.name[: -len(_RECORD_SUFFIX)]] = _key_of(entry.stat())
    return keys


def _file_key(path: Path | str) -> _FileKey | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return _key_of(st)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _dump(document: dict[str, object]) -> bytes:
    """The text yaml.dump(document, Dumper=CSafeDumper, default_flow_style=False, sort_keys=False,
    allow_unicode=True) writes. A record in the plain shape (specs/plainyaml.py: most records) is written
    without the emitter, in a small fraction of its time; any other goes through the emitter itself, its
    node tree built without the representer's general machinery (alias tracking, a type lookup per value)."""
    plain = plainyaml.write(document)
    if plain is not None:
        return plain.encode()
    text: str = yaml.serialize(_node(document), Dumper=_Dumper, allow_unicode=True)
    return text.encode()


_TAG = "tag:yaml.org,2002:"
_FLOATS = SafeRepresenter()


def _node(value: object) -> Node:
    """The node SafeRepresenter makes of a JSON-shaped value (dicts, lists, str, int, float, bool, None)."""
    if isinstance(value, str):
        return ScalarNode(f"{_TAG}str", value)
    if isinstance(value, dict):
        pairs = [(_node(key), _node(item)) for key, item in value.items()]
        return MappingNode(f"{_TAG}map", pairs, flow_style=False)
    if isinstance(value, list):
        return SequenceNode(f"{_TAG}seq", [_node(item) for item in value], flow_style=False)
    if value is None:
        return ScalarNode(f"{_TAG}null", "null")
    if isinstance(value, bool):
        return ScalarNode(f"{_TAG}bool", "true" if value else "false")
    if isinstance(value, int):
        return ScalarNode(f"{_TAG}int", str(value))
    if isinstance(value, float):
        node: Node = _FLOATS.represent_float(value)
        return node
    raise TypeError(f"a record holds JSON values only, not {type(value).__name__}")


# What a YAML reader would not take literally in a JSON string: YAML 1.1's extra line breaks (NEL, LS, PS),
# which it folds into spaces, and the characters it refuses outright (C1 controls, DEL, BOM, non-characters).
_NOT_LITERAL_IN_YAML = re.compile(
    "[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)


def _status_text(record: Model) -> bytes:
    """A status record as indented JSON that YAML readers read back unchanged."""
    text = record.model_dump_json(indent=2, by_alias=True, exclude_none=True)
    # Such characters can only stand inside strings (JSON's own syntax is ASCII): escaped, they mean the same.
    text = _NOT_LITERAL_IN_YAML.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    return text.encode() + b"\n"


def _validation_message(error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        location = ".".join(str(part) for part in detail["loc"]) or "(document)"
        problems.append(f"{location}: {detail['msg']}")
    return "; ".join(problems)


_INDEX_FORMAT = 3
# A list() that had to parse at least this many files rewrites the shared index.
_INDEX_MIN_PARSES = 64


def _load_document(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`; InvalidRecord names the line when it does not parse."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise InvalidRecord(path, f"cannot be read: {error.strerror}") from None
    try:
        document = yamlio.load_record(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidRecord(path, f"is not valid YAML{where}: {problem}") from None
    if not isinstance(document, dict):
        raise InvalidRecord(path, "must be a YAML mapping with apiVersion, kind, metadata and spec")
    return document


def _parse_spec_record(model: type[R], path: Path) -> R:
    document = _load_document(path)
    if "status" in document:
        raise InvalidRecord(path, "status belongs in the status record, not in the spec record")
    try:
        record = model.model_validate(document)
    except ValidationError as error:
        raise InvalidRecord(path, _validation_message(error)) from None
    if record.metadata.name != path.stem:
        raise InvalidRecord(path, f"metadata.name {record.metadata.name!r} does not match the file name")
    return record


def _parse_status_record(status: type[Model], path: Path) -> _Status:
    try:
        return _kept(_StatusRecord[status].model_validate(_load_document(path)))  # type: ignore[valid-type]
    except ValidationError as error:
        raise InvalidRecord(path, _validation_message(error)) from None


def _revalidated(spec: S) -> S:
    """A private, validated copy: the caller may have assigned fields after construction."""
    return type(spec).model_validate(spec.model_dump())


def _version(value: str | None) -> int:
    return int(value) if value is not None else 0


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a list() loads many records.

    Each full collection walks the whole, growing heap, and a cold load of 10,000 records would set off
    several of them (about half its time); afterwards a single collection does the same work once.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# One set per distinct collection of field names, for the models this process caches. Pydantic gives each
# model a set of the fields it was given (216 to 728 bytes, more than the rest of a small model; a Site and
# its status are a dozen models); the cached ones are never changed (they are shared: see list()), so they
# may share these as well. A copy, deep or not, gets a set of its own (pydantic copies the set).
_FIELD_SETS: dict[frozenset[str], set[str]] = {}


def _sharing_field_sets(value: _Cached) -> _Cached:
    """`value`, a record about to be cached, each model in it holding the shared set of its given fields."""
    pending: builtins.list[object] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Model):
            given = item.__pydantic_fields_set__
            object.__setattr__(
                item, "__pydantic_fields_set__", _FIELD_SETS.setdefault(frozenset(given), given)
            )
            pending.extend(item.__dict__.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, _Status):
            pending.append(item.status)
    return value


# Specs by content (a hash of their JSON), for the spec records this process parses: thousands of sites often
# ask the same (the defaults), and a spec is about a kilobyte of models. Cached records are never changed (see
# list()), so equal specs may be one object; an entry lasts as long as a record holds its spec.
_SPECS: weakref.WeakValueDictionary[tuple[type[Model], int], Model] = weakref.WeakValueDictionary()


def _sharing_spec(value: _Cached) -> _Cached:
    """`value`, a parsed record about to be cached, holding the spec an equal record already holds, if any."""
    if isinstance(value, Resource):
        spec = value.spec
        key = (type(spec), hash(spec.model_dump_json()))
        shared = _SPECS.get(key)
        if shared is not None and shared == spec:
            value.__dict__["spec"] = shared
        else:
            _SPECS[key] = spec
    return value


class _ParseCache:
    """Parsed records of this process keyed by file identity, so unchanged files are never re-parsed."""

    def __init__(self) -> None:
        # Keyed by the path's text: a Path kept as a key keeps its parts too (about half a kilobyte a record).
        self._entries: dict[str, tuple[_FileKey, object]] = {}
        self._lock = threading.Lock()
        self.parses = 0

    def lookup(self, path: Path | str) -> tuple[_FileKey, object] | None:
        with self._lock:
            return self._entries.get(os.fspath(path))

    def put(self, path: Path | str, key: _FileKey, value: object) -> None:
        _sharing_field_sets(_sharing_spec(value))
        with self._lock:
            self._entries[os.fspath(path)] = (key, value)

    def get(
        self, path: Path | str, key: _FileKey, parse: Callable[[Path], _Parsed]
    ) -> _Parsed | InvalidRecord:
        with self._lock:
            entry = self._entries.get(os.fspath(path))
        if entry is not None and entry[0] == key:
            return entry[1]  # type: ignore[return-value]
        value: object
        self.parses += 1
        try:
            value = parse(Path(path))
        except InvalidRecord as error:
            value = error
        # The file may have been replaced while it was read: cache only if it is still the one we stat'ed.
        if _file_key(path) == key:
            _sharing_field_sets(_sharing_spec(value))
            with self._lock:
                self._entries[os.fspath(path)] = (key, value)
        return value

    def remember(self, path: Path, value: object, *, key: _FileKey | None = None) -> _FileKey | None:
        """Cache what this process just wrote, so its own next list() need not parse it back; the file's
        identity (None: gone already). `key`: the identity of the file about to be renamed to `path`."""
        if key is None:
            key = _file_key(path)
        if key is not None:
            _sharing_field_sets(value)
        with self._lock:
            if key is None:
                self._entries.pop(os.fspath(path), None)
            else:
                self._entries[os.fspath(path)] = (key, value)
        return key

    def forget(self, path: Path | str) -> None:
        with self._lock:
            self._entries.pop(os.fspath(path), None)


class RecordStore(Generic[R]):
    """The records of one kind. Every kind's store in a state directory shares the write lock and the
    resourceVersion counter, so versions are ordered across kinds as in Kubernetes."""

    def __init__(self, state_dir: Path, kind: RecordKind[R], *, history_limit: int = 20) -> None:
        if history_limit < 0:
            raise ValueError(f"history_limit must be 0 or more, got {history_limit}")
        self.kind = kind
        self.state_dir = Path(state_dir)
        self.history_limit = history_limit
        self.specs_dir = self.state_dir / "specs" / kind.plural
        self.status_dir = self.state_dir / "status" / kind.plural
        self.history_dir = self.state_dir / "history" / kind.plural
        self._specs_prefix = f"{self.specs_dir}{os.sep}"
        self._status_prefix = f"{self.status_dir}{os.sep}"
        self._lock_path = self.state_dir / ".lock"
        self._index_path = self.state_dir / ".cache" / f"{kind.plural}.json"
        self._index_loaded = False
        self._counter = Counter(self.state_dir / ".resource-version")
        self._cache = _ParseCache()
        self._claims = HostClaims(self.state_dir) if kind.hosts is not None else None
        self._parse_spec = functools.partial(_parse_spec_record, kind.model)
        self._parse_status = functools.partial(_parse_status_record, kind.status)
        self._status_record: type[_StatusRecord[Model]] = _StatusRecord[kind.status]  # type: ignore[name-defined]
        # Merged Sites for list() and watch(), valid while both files keep their identity.
        self._entries: dict[str, tuple[tuple[_FileKey, _FileKey | None], R | RecordError]] = {}
        self._write_listeners: builtins.list[Callable[[str], None]] = []
        # The names written under the write lock this thread holds, for the listeners (see _writing).
        self._local = threading.local()
        for directory in (self.specs_dir, self.status_dir, self.history_dir, self._index_path.parent):
            directory.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self._lock_path):
            remove_stale_temp_files(self.specs_dir)
            remove_stale_temp_files(self.status_dir)
            remove_stale_temp_files(self._index_path.parent)
            if self._claims is not None:
                self._claims.remove_stale_temp_files()
            if not self._counter.exists():
                self._counter.seed(self._highest_recorded_version())
            if self._claims is not None and not self._claims.migrated:
                self._claim_existing_hosts(self._claims)

    def _highest_recorded_version(self) -> int:
        """The newest resourceVersion in any record: where a lost counter file must resume, not at 1."""
        highest = 0
        for directory in (self.specs_dir, self.status_dir):
            for path in directory.glob(f"*{_RECORD_SUFFIX}"):
                with contextlib.suppress(InvalidRecord, OSError, ValueError, AttributeError, TypeError):
                    highest = max(highest, int(_load_document(path)["metadata"]["resourceVersion"]))
        return highest

    # ---- paths and reading -------------------------------------------------------------------------

    def spec_path(self, name: str) -> Path:
        return self.specs_dir / f"{self._checked_name(name)}{_RECORD_SUFFIX}"

    def status_path(self, name: str) -> Path:
        return self.status_dir / f"{self._checked_name(name)}{_RECORD_SUFFIX}"

    @staticmethod
    def _checked_name(name: str) -> str:
        # The name becomes a path: anything but a valid site name (say "../x") must never reach the disk.
        if not _NAME.fullmatch(name) or len(name) > 63:
            raise NotFound(f"site {name!r} not found: not a valid site name")
        return name

    def _read_spec(self, name: str) -> R | None:
        """The parsed spec record, None if absent; InvalidRecord if it is broken. Never the cached object."""
        parsed = self._shared_spec(name)
        return None if parsed is None else parsed.model_copy(deep=True)

    def _shared_spec(self, name: str) -> R | None:
        """The parsed spec record as the parse cache holds it: read it, never change it (see _read_spec)."""
        path = self.spec_path(name)
        key = _file_key(path)
        if key is None:
            return None
        parsed = self._cache.get(path, key, self._parse_spec)
        if isinstance(parsed, InvalidRecord):
            raise parsed
        return parsed

    def _read_status(self, name: str, uid: str | None) -> _Status | None:
        """The status of this incarnation of the record; a status left by an earlier one is ignored."""
        path = self.status_path(name)
        key = _file_key(path)
        if key is None:
            return None
        parsed = self._cache.get(path, key, self._parse_status)
        if isinstance(parsed, InvalidRecord):
            raise parsed
        if parsed.uid != uid:
            return None
        return parsed

    @staticmethod
    def _merge(spec: R, status: _Status | None, *, copy: bool) -> R:
        metadata = spec.metadata
        if status is not None:
            version = max(_version(metadata.resource_version), _version(status.resource_version))
            metadata = metadata.model_copy(update={"resource_version": str(version)})
        status_value = None
        if status is not None:
            status_value = status.status.model_copy(deep=True) if copy else status.status
        return spec.model_copy(update={"metadata": metadata, "status": status_value})

    def get(self, name: str) -> R:
        spec = self._read_spec(name)
        if spec is None:
            raise NotFound(f"site {name!r} not found")
        return self._merge(spec, self._read_status(name, spec.metadata.uid), copy=True)

    def current(self, name: str) -> R | RecordError | None:
        """The record as list() shows it now: a shared record (change a copy, never it), the reason it cannot
        be read, or None when there is no record of that name."""
        if not _NAME.fullmatch(name) or len(name) > 63:
            return None
        keys = self._keys_of(name)
        return None if keys is None else self._read_entry(name, keys)

    def cached(self, name: str) -> R | None:
        """current(name) when that costs two stat calls and no parse (the record is shared, as list() shares
        it: change a copy, never it); None when it would parse, or there is no readable record, so that a
        caller on an event loop may read here and leave everything else to current() in a thread."""
        if not _NAME.fullmatch(name) or len(name) > 63:
            return None
        keys = self._keys_of(name)
        cached = self._entries.get(name)
        if keys is None or cached is None or cached[0] != keys or isinstance(cached[1], RecordError):
            return None
        return cached[1]

    def _read_entry(self, name: str, keys: tuple[_FileKey, _FileKey | None]) -> R | RecordError:
        """One record for list()/watch(): a shared, parsed record or the reason it cannot be read."""
        cached = self._entries.get(name)
        if cached is not None and cached[0] == keys:
            return cached[1]
        entry = _sharing_field_sets(self._parse_entry(name, keys))
        self._entries[name] = (keys, entry)
        return entry

    def _parse_entry(self, name: str, keys: tuple[_FileKey, _FileKey | None]) -> R | RecordError:
        spec_key, status_key = keys
        spec = self._read_shared_spec(name, spec_key)
        if isinstance(spec, RecordError):
            return spec
        status = None
        if status_key is not None:
            status_path = f"{self._status_prefix}{name}{_RECORD_SUFFIX}"
            parsed = self._cache.get(status_path, status_key, self._parse_status)
            if isinstance(parsed, InvalidRecord):
                return RecordError(name, Path(status_path), parsed.message)
            if parsed.uid == spec.metadata.uid:
                status = parsed
        return self._merge(spec, status, copy=False)

    def _scan(self) -> dict[str, tuple[_FileKey, _FileKey | None]]:
        """Every record file's identity, by name: what list() and the watcher's resync compare."""
        status_keys = _scan_keys(self.status_dir)
        return {name: (key, status_keys.get(name)) for name, key in _scan_keys(self.specs_dir).items()}

    def list(self) -> tuple[list[R], list[RecordError]]:
        """Every record sorted by name, and every record that cannot be read (never raised).

        The Sites share their nested objects with this process's parse cache: change a copy
        (`model_copy(deep=True)` or `get()`) rather than the listed object.
        """
        sites: builtins.list[R] = []
        errors: builtins.list[RecordError] = []
        found = self._scan()
        parses_before = self._cache.parses
        with _collector_paused():
            if not self._index_loaded:
                self._load_index(found)
            for gone in self._entries.keys() - found.keys():
                self._entries.pop(gone, None)
            for name, keys in sorted(found.items()):
                entry = self._read_entry(name, keys)
                if isinstance(entry, RecordError):
                    errors.append(entry)
                else:
                    sites.append(entry)
        if self._cache.parses - parses_before >= _INDEX_MIN_PARSES:
            self._save_index(found)
        return sites, errors

    # The index is a cache of parsed records shared by processes, so a new process's first list() skips
    # the YAML parser (the slow part) for unchanged files. Entries are still validated like any record;
    # a file whose identity differs from its entry is parsed from YAML as usual.

    def _load_index(self, found: dict[str, tuple[_FileKey, _FileKey | None]]) -> None:
        self._index_loaded = True
        try:
            index = json.loads(self._index_path.read_bytes())
            if index["format"] != _INDEX_FORMAT:
                return
            specs, statuses = index["specs"], index["status"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        for name, (spec_key, status_key) in found.items():
            path = self.specs_dir / f"{name}{_RECORD_SUFFIX}"
            self._adopt(specs.get(name), path, spec_key, self.kind.model.model_validate_json)
            if status_key is not None:
                status_path = self.status_dir / f"{name}{_RECORD_SUFFIX}"
                self._adopt(
                    statuses.get(name),
                    status_path,
                    status_key,
                    lambda text: _kept(self._status_record.model_validate_json(text)),
                )

    def _adopt(self, item: Any, path: Path, key: _FileKey, validate: Callable[[str], object]) -> None:
        if not isinstance(item, dict) or item.get("key") != key or self._cache.lookup(path):
            return
        try:
            value = validate(item["json"])
        except (ValidationError, KeyError, TypeError):
            return
        if isinstance(value, self.kind.model) and value.metadata.name != path.stem:
            return
        self._cache.put(path, key, value)

    def _save_index(self, found: dict[str, tuple[_FileKey, _FileKey | None]]) -> None:
        specs: dict[str, object] = {}
        statuses: dict[str, object] = {}
        for name, keys in found.items():
            for key, path, into in (
                (keys[0], self.specs_dir / f"{name}{_RECORD_SUFFIX}", specs),
                (keys[1], self.status_dir / f"{name}{_RECORD_SUFFIX}", statuses),
            ):
                cached = self._cache.lookup(path)
                if key is None or cached is None or cached[0] != key:
                    continue
                # Each record as a JSON string: pydantic validates it in one call, without Python dicts.
                if isinstance(cached[1], self.kind.model):
                    text = cached[1].model_dump_json(by_alias=True, exclude_none=True, exclude={"status"})
                    into[name] = {"key": key, "json": text}
                elif isinstance(cached[1], _Status):
                    record = self._status_file_model(name, cached[1])
                    into[name] = {
                        "key": key,
                        "json": record.model_dump_json(by_alias=True, exclude_none=True),
                    }
        payload = {"format": _INDEX_FORMAT, "specs": specs, "status": statuses}
        # Only a cache: a reader without write access to the state directory simply goes without.
        with contextlib.suppress(OSError):
            write_atomic(self._index_path, json.dumps(payload, separators=(",", ":")).encode())

    def history(self, name: str) -> builtins.list[R]:
        """Previous spec generations, newest first; a broken history file is skipped."""
        directory = self.history_dir / self._checked_name(name)
        found: builtins.list[R] = []
        for generation in sorted(self._history_generations(directory), reverse=True):
            with contextlib.suppress(InvalidRecord, FileNotFoundError):
                document = _load_document(directory / f"{generation}{_RECORD_SUFFIX}")
                with contextlib.suppress(ValidationError):
                    found.append(self.kind.model.model_validate(document))
        return found

    @staticmethod
    def _history_generations(directory: Path) -> builtins.list[int]:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        return [
            int(n[: -len(_RECORD_SUFFIX)]) for n in names if n.endswith(_RECORD_SUFFIX) and n[:-5].isdigit()
        ]

    # ---- writing (always under the lock) ----------------------------------------------------------

    def add_write_listener(self, listener: Callable[[str], None]) -> None:
        """Call `listener(name)` after each record this object writes or removes, before the write returns
        (once the write lock is released: a listener never makes other writers wait), so a reader in this
        process can show its own writes at once; writes of other processes are seen through watch(). What
        a listener raises is logged, never raised to the writer, whose write is done."""
        self._write_listeners.append(listener)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The write lock, and then the listeners told of the records written under it."""
        written: builtins.list[str] = []
        self._local.written = written
        try:
            with exclusive_lock(self._lock_path):
                yield
        except OSError as error:
            # Every write goes through a temp file and a rename: one that found no room left the record as it
            # was, so the caller hears what to do, not an errno.
            if is_out_of_space(error):
                raise InsufficientStorage(self.state_dir, error) from error
            raise
        finally:
            self._local.written = None
            for name in written:
                for listener in self._write_listeners:
                    try:
                        listener(name)
                    except Exception:
                        log.exception("a write listener failed after the write of %r", name)

    def _written(self, name: str) -> None:
        written = getattr(self._local, "written", None)
        if written is not None and name not in written:
            written.append(name)

    def _write_spec(self, site: R) -> None:
        """Write the spec record; the parse cache keeps a copy, since the caller may go on changing `site`."""
        self._write_specs([site.model_copy(deep=True, update={"status": None})])

    def _write_specs(self, records: builtins.list[R]) -> None:
        """Write these spec records, their files synced together. The parse cache keeps them as they are:
        they are nobody else's (their parts at most shared with cached records, which nobody changes)."""
        paths = [self.spec_path(record.name) for record in records]

        def cache(temps: builtins.list[Path]) -> None:
            # Before the renames: a watcher woken by one finds its record cached, and need not parse it back.
            for path, temp, record in zip(paths, temps, records, strict=True):
                self._cache.remember(path, record, key=_file_key(temp))

        write_many_atomic(
            [
                (path, _dump(r.to_document(include_status=False)))
                for path, r in zip(paths, records, strict=True)
            ],
            before_rename=cache,
        )
        for record in records:
            self._written(record.name)

    def _remove_record(self, name: str) -> None:
        with contextlib.suppress(InvalidRecord):
            record = self._read_spec(name)
            if record is not None:
                self._release_hosts(name, self._hosts(record))
        remove_durably(self.status_path(name))
        remove_durably(self.spec_path(name))
        shutil.rmtree(self.history_dir / name, ignore_errors=True)
        self._cache.forget(self.spec_path(name))
        self._cache.forget(self.status_path(name))
        self._written(name)

    def _save_history(self, previous: R) -> None:
        if self.history_limit == 0 or previous.metadata.generation is None:
            return
        directory = self.history_dir / previous.name
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(
            directory / f"{previous.metadata.generation}{_RECORD_SUFFIX}",
            _dump(previous.to_document(include_status=False)),
        )
        generations = sorted(self._history_generations(directory), reverse=True)
        for old in generations[self.history_limit :]:
            (directory / f"{old}{_RECORD_SUFFIX}").unlink(missing_ok=True)

    def _status_file_model(self, name: str, status: _Status) -> _StatusRecord[Model]:
        """The status record's file as a model, for writing it."""
        return self._status_record(
            metadata=_StatusMeta(name=name, uid=status.uid, resource_version=status.resource_version),
            kind=self.kind.kind,
            status=status.status,
        )

    def _current_for_write(self, name: str) -> tuple[R, _Status | None]:
        """The record's spec (a copy of its own, to change) and status; NotFound, InvalidRecord."""
        shared, status = self._shared_for_write(name)
        return shared.model_copy(deep=True), status

    def _shared_for_write(self, name: str) -> tuple[R, _Status | None]:
        """_current_for_write with the spec as the parse cache shares it: read it, never change it."""
        shared = self._shared_spec(name)
        if shared is None:
            raise NotFound(f"site {name!r} not found")
        try:
            status = self._read_status(name, shared.metadata.uid)
        except InvalidRecord:
            status = None
        return shared, status

    @staticmethod
    def _check_version(name: str, given: str | None, stored: Resource, status: _Status | None) -> None:
        if given is None:
            return
        spec_version = _version(stored.metadata.resource_version)
        newest = max(spec_version, _version(status.resource_version) if status else 0)
        # Any version the caller read after the last spec write is at least the spec's and at most the newest.
        if not spec_version <= _version(given) <= newest:
            raise Conflict(
                f"site {name!r} was changed by someone else (resourceVersion {given} is not the current "
                f"{newest}); read it again and retry"
            )

    # ---- host claims (always under the lock; for kinds whose records claim hosts) ---------------------

    def _hosts(self, record: R) -> builtins.list[str]:
        return self.kind.hosts(record) if self.kind.hosts is not None else []

    def _claim_existing_hosts(self, claims: HostClaims) -> None:
        """Claim the domains of records written before claims existed: the oldest record first."""
        records: builtins.list[R] = []
        for path in self.specs_dir.glob(f"*{_RECORD_SUFFIX}"):
            with contextlib.suppress(InvalidRecord, OSError):
                records.append(self._parse_spec(path))
        oldest_first = sorted(records, key=lambda r: (r.metadata.creation_timestamp or _now(), r.name))
        for record in oldest_first:
            if record.metadata.uid is not None and record.metadata.deletion_timestamp is None:
                self._settle(claims, record)
        claims.mark_migrated()

    def _holder(self, claims: HostClaims, host: str) -> Claim | None:
        """The live claim on `host`; a claim whose record no longer names the host is removed."""
        claim = claims.read(host)
        if claim is None:
            return None
        try:
            record = self._read_spec(claim.site)
        except InvalidRecord:
            # A record broken by hand keeps what it held until it is mended or deleted.
            return claim
        except NotFound:
            record = None
        if (
            record is None
            or record.metadata.uid != claim.uid
            or record.metadata.deletion_timestamp is not None
            or host not in self._hosts(record)
        ):
            claims.release(host)
            return None
        return claim

    def _take_hosts(self, name: str, uid: str, hosts: builtins.list[str], *, dry_run: bool = False) -> None:
        """Claim every host for the record `name`, or raise HostTaken and claim none."""
        if self._claims is None:
            return
        unclaimed = []
        for index, host in enumerate(hosts):
            holder = self._holder(self._claims, host)
            if holder is None:
                unclaimed.append(host)
            elif holder.site != name:
                raise HostTaken(host, holder.site, index)
        if not dry_run:
            for host in unclaimed:
                self._claims.hold(host, name, uid)

    def _release_hosts(self, name: str, hosts: builtins.list[str]) -> None:
        if self._claims is None:
            return
        for host in hosts:
            claim = self._claims.read(host)
            if claim is not None and claim.site == name:
                self._claims.release(host)

    def _settle(self, claims: HostClaims, record: R) -> dict[str, str]:
        """Claim what nobody holds of the record's hosts; host -> the site holding it."""
        holders: dict[str, str] = {}
        for host in self._hosts(record):
            holder = self._holder(claims, host)
            if holder is None and record.metadata.uid is not None:
                holder = claims.hold(host, record.name, record.metadata.uid)
            holders[host] = holder.site if holder is not None else record.name
        return holders

    def host_holders(self, name: str) -> dict[str, str]:
        """For each host the record claims: the record holding it, which is the record itself unless an
        earlier claimant holds it. A host nobody holds is claimed for the record now (a record written
        by hand, not through the store). Empty for a record that is gone or being deleted."""
        if self._claims is None:
            return {}
        with exclusive_lock(self._lock_path):
            try:
                record = self._read_spec(name)
            except InvalidRecord:
                return {}
            if record is None or record.metadata.deletion_timestamp is not None:
                return {}
            return self._settle(self._claims, record)

    # ---- writing records (always under the lock) -----------------------------------------------------

    def create(self, site: R, *, dry_run: bool = False) -> R:
        """The stored site; with `dry_run`, the site as it would be stored (no uid, no version), unwritten,
        after the same checks."""
        name = self._checked_name(site.name)
        with self._writing():
            if _file_key(self.spec_path(name)) is not None:
                raise AlreadyExists(f"site {name!r} already exists")
            uid = str(uuid.uuid4())
            self._take_hosts(name, uid, self._hosts(site), dry_run=dry_run)
            metadata = site.metadata.model_copy(
                update={
                    "uid": None if dry_run else uid,
                    "generation": 1,
                    "resource_version": None if dry_run else str(self._counter.advance()),
                    "creation_timestamp": _now(),
                    "deletion_timestamp": None,
                }
            )
            stored = self.kind.model(
                metadata=type(site.metadata).model_validate(metadata.model_dump()),
                spec=_revalidated(site.spec),
            )
            if dry_run:
                return stored
            # A status left by a crash between the removals of an earlier incarnation must not show through.
            remove_durably(self.status_path(name))
            self._write_spec(stored)
        return stored

    def update(self, site: R, *, dry_run: bool = False) -> R:
        """The stored site; with `dry_run`, the site as it would be stored, unwritten, after the same checks
        (its resourceVersion stays the current one)."""
        name = self._checked_name(site.name)
        with self._writing():
            stored, status = self._current_for_write(name)
            self._check_version(name, site.metadata.resource_version, stored, status)
            old = stored.metadata
            new_finalizers = list(site.metadata.finalizers)
            if old.deletion_timestamp is not None and set(new_finalizers) - set(old.finalizers):
                raise BeingDeleted(f"site {name!r} is being deleted: no finalizer can be added")
            spec = _revalidated(site.spec)
            spec_changed = spec != stored.spec
            if (
                not spec_changed
                and site.metadata.labels == old.labels
                and site.metadata.annotations == old.annotations
                and new_finalizers == old.finalizers
            ):
                return self._merge(stored, status, copy=True)
            generation = old.generation or 0
            uid = old.uid or str(uuid.uuid4())
            hosts, stored_hosts = self._hosts(site), self._hosts(stored)
            dropped = [host for host in stored_hosts if host not in hosts]
            if hosts != stored_hosts:
                self._take_hosts(name, uid, hosts, dry_run=dry_run)
            if spec_changed:
                if not dry_run:
                    self._save_history(stored)
                generation += 1
            version = (
                old.resource_version
                if dry_run
                else str(self._counter.advance(_version(old.resource_version)))
            )
            metadata = old.model_copy(
                update={
                    "labels": dict(site.metadata.labels),
                    "annotations": dict(site.metadata.annotations),
                    "finalizers": new_finalizers,
                    "generation": max(generation, 1),
                    "resource_version": version,
                    # A record written by hand may lack the server fields: the first API write adds them.
                    "uid": uid,
                    "creation_timestamp": old.creation_timestamp or _now(),
                }
            )
            updated = self.kind.model(metadata=type(old).model_validate(metadata.model_dump()), spec=spec)
            if dry_run:
                return self._merge(updated, status, copy=True)
            if updated.metadata.deletion_timestamp is not None and not updated.metadata.finalizers:
                self._remove_record(name)
                return updated
            self._write_spec(updated)
            self._release_hosts(name, dropped)
            return self._merge(updated, status, copy=True)

    def delete(self, name: str, *, resource_version: str | None = None) -> R | None:
        self._checked_name(name)
        with self._writing():
            try:
                stored, status = self._current_for_write(name)
            except InvalidRecord:
                # A record broken by hand can still be deleted, finalizers unknown.
                if resource_version is not None:
                    raise
                self._remove_record(name)
                return None
            self._check_version(name, resource_version, stored, status)
            if not stored.metadata.finalizers:
                self._remove_record(name)
                return None
            if stored.metadata.deletion_timestamp is not None:
                return self._merge(stored, status, copy=True)
            stored.metadata.deletion_timestamp = _now()
            stored.metadata.resource_version = str(
                self._counter.advance(_version(stored.metadata.resource_version))
            )
            self._write_spec(stored)
            # A site being deleted lets go of its domains at once: the next claimant need not wait for
            # its finalizers (the routes of the new holder replace the old one's at the edge).
            self._release_hosts(name, self._hosts(stored))
            return self._merge(stored, status, copy=True)

    def add_finalizer(self, name: str, finalizer: str) -> R:
        added = self.add_finalizers([name], finalizer)[name]
        if isinstance(added, StoreError):
            raise added
        return added.model_copy(deep=True)

    def add_finalizers(self, names: Sequence[str], finalizer: str) -> dict[str, R | StoreError]:
        """add_finalizer for each name, in one locked write: one counter advance, the spec files synced
        together. Each name's record as it now stands, shared with the parse cache as current() shares it
        (change a copy, never it), or why it could not be added (NotFound, BeingDeleted, InvalidRecord); an
        OSError (no room left) fails them all, none written."""
        results: dict[str, R | StoreError] = {}
        with self._writing():
            adding: builtins.list[tuple[R, _Status | None]] = []
            for name in dict.fromkeys(names):
                try:
                    shared, status = self._shared_for_write(name)
                    if finalizer in shared.metadata.finalizers:
                        results[name] = self._merge(shared, status, copy=False)
                        continue
                    if shared.metadata.deletion_timestamp is not None:
                        raise BeingDeleted(
                            f"site {name!r} is being deleted: finalizer {finalizer!r} cannot be added"
                        )
                except StoreError as error:
                    results[name] = error
                    continue
                adding.append((shared, status))
            versions = self._counter.advance_each(
                [_version(shared.metadata.resource_version) for shared, _ in adding]
            )
            written: builtins.list[tuple[R, _Status | None]] = []
            for (shared, status), version in zip(adding, versions, strict=True):
                metadata = shared.metadata.model_dump()
                metadata["finalizers"] = [*shared.metadata.finalizers, finalizer]
                metadata["resource_version"] = str(version)
                # New metadata over the cached spec, which no one changes: the cache may keep it as it is.
                stored = shared.model_copy(
                    update={"metadata": type(shared.metadata).model_validate(metadata)}
                )
                written.append((stored, status))
            self._write_specs([stored for stored, _ in written])
            for stored, status in written:
                results[stored.name] = self._merge(stored, status, copy=False)
        return results

    def remove_finalizer(self, name: str, finalizer: str) -> R | None:
        with self._writing():
            stored, status = self._current_for_write(name)
            if finalizer not in stored.metadata.finalizers:
                return self._merge(stored, status, copy=True)
            stored.metadata.finalizers = [f for f in stored.metadata.finalizers if f != finalizer]
            if stored.metadata.deletion_timestamp is not None and not stored.metadata.finalizers:
                self._remove_record(name)
                return None
            stored.metadata.resource_version = str(
                self._counter.advance(_version(stored.metadata.resource_version))
            )
            self._write_spec(stored)
            return self._merge(stored, status, copy=True)

    def update_status(self, name: str, status: Model) -> R:
        """Replace the record's status; the record as it now stands."""
        with self._writing():
            stored, record = self._put_status(name, status)
            return self._merge(stored.model_copy(deep=True), record, copy=True)

    def write_status(self, name: str, status: Model) -> None:
        """update_status for a writer that does not need the record back (the controller, after every
        reconcile that changed something): it spares copying the record for it."""
        failed = self.write_statuses({name: status})[name]
        if failed is not None:
            raise failed

    def write_statuses(
        self, statuses: Mapping[str, Model], *, handed_over: bool = False
    ) -> dict[str, StoreError | None]:
        """write_status of many records in one locked write: one counter advance, their files synced together
        (the controller's statuses after a burst of reconciles). Per name None, or why it was not written
        (NotFound, InvalidRecord); an OSError (no room left) fails them all, none written.

        With `handed_over`, the caller made each status by validating it and gives it up (it never changes it
        afterwards): the store keeps a status of its kind's model as it is, rather than a validated copy."""
        results: dict[str, StoreError | None] = {}
        with self._writing():
            putting: builtins.list[tuple[str, _FileKey, R, int, Model]] = []
            for name, status in statuses.items():
                try:
                    putting.append((name, *self._status_floor(name), status))
                except StoreError as error:
                    results[name] = error
            versions = self._counter.advance_each([floor for _, _, _, floor, _ in putting])
            records = [
                (name, spec_key, stored, self._status_for(stored, status, version, handed_over=handed_over))
                for (name, spec_key, stored, _, status), version in zip(putting, versions, strict=True)
            ]
            write_many_atomic(
                [
                    (self.status_path(name), _status_text(self._status_file_model(name, record)))
                    for name, _, _, record in records
                ],
                sync_directories=False,
            )
            for name, spec_key, stored, record in records:
                self._remember_status(name, spec_key, stored, record)
                results[name] = None
        return results

    def _status_floor(self, name: str) -> tuple[_FileKey, R, int]:
        """The spec's identity, the shared spec, and the version its next status must exceed."""
        # The spec's identity before it is read: the record cached after the write can only be found stale,
        # never taken for a newer version than it is.
        spec_key = _file_key(self.spec_path(name))
        stored = self._shared_spec(name)
        if stored is None or spec_key is None:
            raise NotFound(f"site {name!r} not found")
        previous = None
        with contextlib.suppress(InvalidRecord):
            previous = self._read_status(name, stored.metadata.uid)
        floor = max(
            _version(stored.metadata.resource_version),
            _version(previous.resource_version) if previous else 0,
        )
        return spec_key, stored, floor

    def _status_for(self, stored: R, status: Model, version: int, *, handed_over: bool = False) -> _Status:
        if not handed_over or type(status) is not self.kind.status:
            # Validated afresh (the caller may have assigned fields since), and a copy of its own.
            status = self.kind.status.model_validate(status.model_dump())
        return _Status(stored.metadata.uid, str(version), status)

    def _remember_status(self, name: str, spec_key: _FileKey, stored: R, record: _Status) -> None:
        status_key = self._cache.remember(self.status_path(name), record)
        if status_key is not None:
            # The record as list() and cached() will show it: the next reconcile reads it without a parse.
            merged = _sharing_field_sets(self._merge(stored, record, copy=False))
            self._entries[name] = ((spec_key, status_key), merged)
        self._written(name)

    def _put_status(self, name: str, status: Model) -> tuple[R, _Status]:
        """Write the status record (under the lock); the shared spec it belongs to, and what was written."""
        spec_key, stored, floor = self._status_floor(name)
        record = self._status_for(stored, status, self._counter.advance(floor))
        write_atomic(
            self.status_path(name), _status_text(self._status_file_model(name, record)), sync_directory=False
        )
        self._remember_status(name, spec_key, stored, record)
        return stored, record

    # ---- watching ------------------------------------------------------------------------------------

    async def watch(
        self,
        *,
        initial: bool = True,
        resync_seconds: float = 10.0,
        on_listed: Callable[[builtins.set[str]], None] | None = None,
        statuses: bool = True,
        quiet_ms: int = 5,
        shared: bool = False,
    ) -> AsyncIterator[WatchEvent[R]]:
        """Spec and status changes as they happen, plus a full comparison every `resync_seconds`.

        Events are derived by comparing file identities with what was last reported, so a missed or
        merged file-system notification costs latency (until the next resync), never an event.

        `on_listed(names)` is called once the watch has taken its first listing, with the names in it (the
        broken records' too), before any event: every later change is reported against that listing. A
        reader that keeps its own copy of the records loads it then, and misses nothing.

        Without `statuses`, only spec records are watched and the records come without their status, as
        list() shares them (read them, never change them): for a watcher of metadata and spec alone (the
        controller, which writes the statuses itself), which then neither wakes nor parses on a status write.
        With `shared`, whole records come as list() shares them too, rather than each a copy: for a watcher
        that only reads them.

        Changes are reported once the files have been quiet for `quiet_ms`, and at the latest 50 ms after
        the first of them. Each report costs the watcher a wake-up and two thread switches, whatever it
        holds: a watcher that need not see a change within milliseconds and follows a busy store waits
        longer (up to 50) and takes a burst of writes in one report rather than one by one.
        """
        stop = asyncio.Event()
        batches: asyncio.Queue[set[tuple[Change, str]] | None] = asyncio.Queue()
        view = _RecordView(self, copies=not shared) if statuses else _SpecView(self)

        def is_record(_change: Change, path: str) -> bool:
            base = os.path.basename(path)
            return base.endswith(_RECORD_SUFFIX) and not base.startswith(".")

        changes = awatch(
            *view.directories,
            watch_filter=is_record,
            debounce=50,
            step=quiet_ms,
            stop_event=stop,
            rust_timeout=max(1, int(resync_seconds * 1000)),
            yield_on_timeout=True,
            recursive=False,
        )

        async def pump() -> None:
            try:
                async for batch in changes:
                    await batches.put(batch)
            finally:
                await batches.put(None)

        pump_task = asyncio.create_task(pump())
        # The watcher registers its inotify watches in its first step; the listing below comes after,
        # so no change can fall between the two.
        await asyncio.sleep(0)
        try:
            known: dict[str, tuple[object, bool]] = {}
            # Full scans parse every changed file: off the event loop, which may serve others meanwhile.
            initial_events = await asyncio.to_thread(_full_diff, view, known, initial)
            if on_listed is not None:
                on_listed(builtins.set(known))
            for event in _handed_out(initial_events if initial else []):
                yield event
            last_full_scan = time.monotonic()
            while True:
                batch = await batches.get()
                if batch is None:
                    pump_task.result()  # raises what stopped the file watcher
                    return
                names = {os.path.basename(path)[: -len(_RECORD_SUFFIX)] for _, path in batch}
                current = {name: view.keys_of(name) for name in names}
                found = {name: keys for name, keys in current.items() if keys is not None}
                events = _diff(view, known, found, names, report_added=True)
                # An empty batch is the watcher's timeout; a busy store gets its resync all the same.
                if not batch or time.monotonic() - last_full_scan >= resync_seconds:
                    events += await asyncio.to_thread(_full_diff, view, known, True)
                    last_full_scan = time.monotonic()
                for event in _handed_out(events):
                    yield event
        finally:
            stop.set()
            pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump_task

    def _keys_of(self, name: str) -> tuple[_FileKey, _FileKey | None] | None:
        # Joined as strings: pathlib's joins cost more than the stat calls, on every reconcile of a resync.
        spec_key = _file_key(f"{self._specs_prefix}{name}{_RECORD_SUFFIX}")
        if spec_key is None:
            return None
        return spec_key, _file_key(f"{self._status_prefix}{name}{_RECORD_SUFFIX}")

    def _scan_specs(self) -> dict[str, _FileKey]:
        return _scan_keys(self.specs_dir)

    def _read_shared_spec(self, name: str, key: _FileKey) -> R | RecordError:
        path = f"{self._specs_prefix}{name}{_RECORD_SUFFIX}"
        if not _NAME.fullmatch(name):
            return RecordError(name, Path(path), "not a valid site name")
        spec = self._cache.get(path, key, self._parse_spec)
        return RecordError(name, Path(path), spec.message) if isinstance(spec, InvalidRecord) else spec


class _RecordView(Generic[R]):
    """What watch() follows of a store: whole records, spec and status, each event's record a copy unless
    the watcher takes the shared ones (`copies` False)."""

    def __init__(self, store: RecordStore[R], *, copies: bool = True) -> None:
        self.store = store
        self.copies = copies
        self.directories: tuple[Path, ...] = (store.specs_dir, store.status_dir)

    def keys_of(self, name: str) -> object | None:
        return self.store._keys_of(name)

    def scan(self) -> dict[str, object]:
        return dict(self.store._scan())

    def read(self, name: str, keys: Any) -> R | RecordError:
        return self.store._read_entry(name, keys)

    def shown(self, record: R) -> R:
        return record.model_copy(deep=True) if self.copies else record


class _SpecView(_RecordView[R]):
    """Spec records alone, each event's record the one the parse cache shares (see watch's `statuses`)."""

    def __init__(self, store: RecordStore[R]) -> None:
        super().__init__(store)
        self.directories = (store.specs_dir,)

    def keys_of(self, name: str) -> object | None:
        return _file_key(self.store.specs_dir / f"{name}{_RECORD_SUFFIX}")

    def scan(self) -> dict[str, object]:
        return dict(self.store._scan_specs())

    def read(self, name: str, keys: Any) -> R | RecordError:
        return self.store._read_shared_spec(name, keys)

    def shown(self, record: R) -> R:
        return record


def _handed_out(events: builtins.list[WatchEvent[R]]) -> Iterator[WatchEvent[R]]:
    """The events in order, each let go of as it is handed out: the watch lives as long as its watcher, and
    a list it kept would keep every record of the first listing alive after the store has moved on."""
    events.reverse()
    while events:
        yield events.pop()


def _full_diff(
    view: _RecordView[R], known: dict[str, tuple[object, bool]], report_added: bool
) -> builtins.list[WatchEvent[R]]:
    return _diff(view, known, view.scan(), None, report_added=report_added)


def _diff(
    view: _RecordView[R],
    known: dict[str, tuple[object, bool]],
    found: dict[str, object],
    names: set[str] | None,
    *,
    report_added: bool,
) -> builtins.list[WatchEvent[R]]:
    """Events turning `known` into `found` (file identities by name) for `names` (None: every name),
    updating `known`."""
    events: builtins.list[WatchEvent[R]] = []
    candidates = set(found) | set(known) if names is None else names
    for name in sorted(candidates):
        keys = found.get(name)
        previous = known.get(name)
        if keys is None:
            if previous is not None:
                del known[name]
                events.append(WatchEvent("DELETED", name, None))
            continue
        if previous is not None and previous[0] == keys:
            continue
        entry = view.read(name, keys)
        valid = not isinstance(entry, RecordError)
        known[name] = (keys, valid)
        if isinstance(entry, RecordError):
            events.append(WatchEvent("ERROR", name, None, entry))
        elif previous is not None and previous[1]:
            events.append(WatchEvent("MODIFIED", name, view.shown(entry)))
        elif report_added or previous is not None:
            events.append(WatchEvent("ADDED", name, view.shown(entry)))
    return events


class SiteStore(RecordStore[Site]):
    def __init__(self, state_dir: Path, *, history_limit: int = 20) -> None:
        super().__init__(state_dir, SITES, history_limit=history_limit)


class PlatformStore(RecordStore[Platform]):
    def __init__(self, state_dir: Path, *, history_limit: int = 20) -> None:
        super().__init__(state_dir, PLATFORMS, history_limit=history_limit)


class GitSourceStore(RecordStore[GitSource]):
    def __init__(self, state_dir: Path, *, history_limit: int = 20) -> None:
        super().__init__(state_dir, GITSOURCES, history_limit=history_limit)
