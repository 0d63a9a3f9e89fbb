"""GitSources: keep the sites in step with the Site documents of a git repository.

Each reconcile looks up the revision the source's ref is at (one `git ls-remote`), and:
- a new revision is fetched (shallow, bounded: reconcilers/git.py) and read without a checkout; every Site
  document under `path` is checked as `dirctl apply` checks it, and each stands alone: an invalid or refused
  document is reported with its file, document, field, line and column, and every other one is applied;
- whatever revision, every document is compared with its site as the local record store has it: a document
  whose fields the site holds, owned by this source's field manager, costs nothing; any other is applied
  through the API (server-side apply, field manager `gitsource-NAME`, forced, as the source's `applyAs`), so a
  field changed by hand is set back at the next interval, with an event naming it and who changed it;
- with `prune: true`, a site this source created whose document is gone is deleted, unless anything in the
  revision could not be read (a document refused before its name was known, a file not read, an empty or
  missing path): then nothing is pruned and the status says why.

Newest revision wins: each reconcile tries the revision the remote has now, whatever came of the last one, and
nothing waits on an old failure. A source marks the sites it creates with the label `director.io/gitsource`;
a site without its mark is never updated or deleted (the API refuses it too).

This reconciler never imports the API: it calls it over HTTP with the controller's credential
(reconcilers/director_api.py), like dirctl.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.types import Outcome, ReconcileContext, Step, StepResult
from reconcilers.director_api import ApiRefusal, ApiUnavailable, DirectorApi
from reconcilers.git import Checkout, Credentials, Git, GitError, RevisionNotFound, TreeEntry
from specs import yamlio
from specs.gitsource import (
    GITSOURCE_LABEL,
    GitSource,
    RefusedDocument,
    RevisionAttempt,
    SyncStatus,
    field_manager_of,
)
from specs.models import Site
from store.records import GitSourceStore, InvalidRecord, NotFound, SiteStore

NAME = "sync"
MAX_DOCUMENTS = 2000
MAX_TOTAL_BYTES = 32 * 1024 * 1024
MAX_LISTED_REFUSALS = 50
MAX_REFUSAL_EVENTS = 10
HISTORY_LENGTH = 10
APPLY_CONCURRENCY = 8
# After a webhook, one more look this long after: a push whose call was folded into an earlier wake
# (api/hooks.py folds wakes less than a second apart) is fetched all the same.
WEBHOOK_FOLLOW_UP_SECONDS = 1.5
# The server's field-ownership bookkeeping on each site (api/fields.py): its wire format is what is shared.
MANAGED_FIELDS_ANNOTATION = "director.io/managed-fields"
_Path = tuple[str, ...]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _short(revision: str | None) -> str:
    return (revision or "-")[:12]


def _names(names: Iterable[str], limit: int = 20) -> str:
    listed = sorted(names)
    shown = ", ".join(listed[:limit])
    return shown + (f" and {len(listed) - limit} more" if len(listed) > limit else "")


# ---- documents and their fields -----------------------------------------------------------------------


def _leaves(value: Any, prefix: _Path) -> dict[_Path, Any]:
    if isinstance(value, dict) and value:
        found: dict[_Path, Any] = {}
        for key, child in value.items():
            found.update(_leaves(child, (*prefix, str(key))))
        return found
    return {prefix: value}


def owned_leaves(document: dict[str, Any]) -> dict[_Path, Any]:
    """The fields a server-side apply of `document` owns, as the API counts them (api/fields.py)."""
    metadata = document.get("metadata") or {}
    leaves: dict[_Path, Any] = {}
    for area in ("labels", "annotations"):
        for key, value in (metadata.get(area) or {}).items():
            if area != "annotations" or key != MANAGED_FIELDS_ANNOTATION:
                leaves[("metadata", area, key)] = value
    spec = document.get("spec")
    if isinstance(spec, dict) and spec:
        leaves.update(_leaves(spec, ("spec",)))
    return leaves


_MISSING = object()


def _get(document: Any, path: _Path) -> Any:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return _MISSING
        document = document[key]
    return document


def _managed(live: dict[str, Any]) -> dict[str, set[_Path]]:
    raw = ((live.get("metadata") or {}).get("annotations") or {}).get(MANAGED_FIELDS_ANNOTATION)
    try:
        parsed = json.loads(raw) if raw else {}
        return {name: {tuple(path) for path in entry["fields"]} for name, entry in parsed.items()}
    except (ValueError, KeyError, TypeError):
        return {}


def drifted_fields(intent: dict[str, Any], live: dict[str, Any], manager: str) -> dict[str, str]:
    """Fields of `intent` the live site does not hold as this manager's: dotted path -> who holds it now.
    Empty when the site is exactly as the document says, with every field owned by `manager`."""
    managed = _managed(live)
    mine = managed.get(manager, set())
    leaves = owned_leaves(intent)
    drift: dict[str, str] = {}
    for path, value in leaves.items():
        if path in mine and _get(live, path) == value:
            continue
        holders = sorted(name for name, paths in managed.items() if path in paths and name != manager)
        drift[".".join(path)] = ", ".join(holders) or "nobody (not set)"
    for path in mine - set(leaves):
        drift[".".join(path)] = "the previous revision (to be removed)"
    return drift


@dataclass(frozen=True)
class SiteDocument:
    """One Site document of a revision, as this source applies it."""

    site: str
    file: str
    index: int
    intent: dict[str, Any]


@dataclass
class Snapshot:
    """What one revision holds under the source's path."""

    revision: str
    documents: list[SiteDocument] = field(default_factory=list)
    refused: list[RefusedDocument] = field(default_factory=list)
    # Sites a refused document names: kept as they are, never pruned.
    kept: set[str] = field(default_factory=set)
    # Refusals whose site could not be told: while any stands, nothing is pruned.
    unnamed: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    # A refusal of the whole revision (reason, message): nothing is applied or pruned.
    problem: tuple[str, str] | None = None
    # Documents found (and files refused unread, each counted as one).
    count: int = 0
    # Each file read, by path and blob id, with what it held: the next revision reads only what changed.
    parsed: dict[tuple[str, str], tuple[bytes, yamlio.LoadResult]] = field(default_factory=dict)


@dataclass
class Memory:
    """What this controller knows of a source between reconciles."""

    uid: str | None
    generation: int | None
    snapshot: Snapshot
    checked_at: float = 0.0
    # Sites found in step at the last look, by resourceVersion: unchanged records need no compare.
    in_step: dict[str, str] = field(default_factory=dict)
    # The refusals last reported as events: the same ones are not reported again every interval.
    reported: frozenset[str] = frozenset()
    verdict: tuple[bool, str, str] = (True, "Applied", "")


def _intent(site: Site, source: str) -> dict[str, Any]:
    """What the document states (not the defaults filled in), marked as this source's."""
    document: dict[str, Any] = site.model_dump(mode="json", by_alias=True, exclude_unset=True)
    document.pop("status", None)
    document["apiVersion"] = site.api_version
    document["kind"] = site.kind
    metadata = document.setdefault("metadata", {})
    metadata.setdefault("labels", {})[GITSOURCE_LABEL] = source
    return document


def read_snapshot(
    source: str,
    revision: str,
    directory: str,
    entries: Sequence[TreeEntry],
    blobs: dict[str, bytes],
    *,
    parsed: dict[tuple[str, str], tuple[bytes, yamlio.LoadResult]] | None = None,
    max_documents: int = MAX_DOCUMENTS,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Snapshot:
    """The Site documents of a revision's files under `directory`, and every refusal, located; `parsed`:
    the files of an earlier revision, by path and blob id, which need not be read again."""
    snapshot = Snapshot(revision)
    shown_path = f"{directory}/" if directory else "the repository's root"
    if not entries:
        snapshot.problem = (
            "PathEmpty",
            f"path {shown_path} is empty or missing at {_short(revision)}: nothing pruned",
        )
        return snapshot
    total = 0
    documents = 0
    unread = 0  # files refused unread, each counted as one document
    for entry in entries:
        if not entry.path.endswith(yamlio.YAML_SUFFIXES) or entry.kind != "blob":
            continue
        if entry.is_symlink:
            target = blobs.get(entry.oid, b"").decode(errors="replace")[:200]
            snapshot.refused.append(
                RefusedDocument(
                    file=entry.path,
                    message=f"is a symbolic link (to {target}): Director reads only regular files and "
                    "follows no link",
                )
            )
            snapshot.unnamed += 1
            unread += 1
            continue
        size = entry.size or 0
        if size > yamlio.MAX_FILE_BYTES:
            snapshot.refused.append(
                RefusedDocument(
                    file=entry.path,
                    message=f"is {size / 1024**2:.1f} MiB, larger than the "
                    f"{yamlio.MAX_FILE_BYTES // 1024**2} MiB a file may be: not read",
                )
            )
            snapshot.unnamed += 1
            unread += 1
            continue
        total += size
        if total > max_total_bytes:
            snapshot.refused.append(
                RefusedDocument(
                    file=entry.path,
                    message=f"not read: the files under {shown_path} pass "
                    f"{max_total_bytes // 1024**2} MiB in all",
                )
            )
            snapshot.unnamed += 1
            unread += 1
            continue
        known = (parsed or {}).get((entry.path, entry.oid))
        if known is not None:
            data, result = known
        else:
            found = blobs.get(entry.oid)
            if found is None:
                snapshot.refused.append(
                    RefusedDocument(file=entry.path, message="could not be read from git")
                )
                snapshot.unnamed += 1
                unread += 1
                continue
            data, result = found, yamlio.load_text(found, entry.path)
        snapshot.parsed[(entry.path, entry.oid)] = (data, result)
        documents += len(result.loaded) + len(result.refused_names) + result.unnamed_refusals
        if documents > max_documents:
            snapshot.problem = (
                "TooManyDocuments",
                f"{shown_path} holds more than {max_documents} documents at {_short(revision)}, more than "
                "one source applies: nothing applied, nothing pruned; split the sites among several sources",
            )
            snapshot.documents.clear()
            return snapshot
        snapshot.files[entry.path] = data
        for error in result.errors:
            snapshot.refused.append(
                RefusedDocument(
                    file=error.source,
                    document=error.document,
                    field=error.field,
                    line=error.line,
                    column=error.column,
                    message=error.message,
                )
            )
        snapshot.kept.update(result.refused_names)
        snapshot.unnamed += result.unnamed_refusals
        seen = {document.site: document for document in snapshot.documents}
        for loaded in result.loaded:
            first = seen.get(loaded.site.name)
            if first is not None:
                snapshot.refused.append(
                    RefusedDocument(
                        file=loaded.source,
                        document=loaded.document,
                        site=loaded.site.name,
                        field="metadata.name",
                        message=f"site {loaded.site.name!r} is also defined in {first.file} "
                        f"document {first.index}",
                    )
                )
                continue
            document = SiteDocument(
                loaded.site.name, loaded.source, loaded.document, _intent(loaded.site, source)
            )
            seen[document.site] = document
            snapshot.documents.append(document)
    snapshot.count = documents + unread
    if not snapshot.documents and not snapshot.refused:
        snapshot.problem = (
            "PathEmpty",
            f"path {shown_path} holds no *.yaml or *.yml documents at {_short(revision)}: nothing pruned",
        )
    return snapshot


def _refusal(document: SiteDocument, snapshot: Snapshot, refusal: ApiRefusal) -> RefusedDocument:
    """An API refusal of a document, pointed at its field in the file."""
    field_name = next((cause.field for cause in refusal.causes if cause.field), None)
    line = column = None
    data = snapshot.files.get(document.file)
    if data is not None:
        line, column = yamlio.locate(data, document.index, field_name or "metadata.name")
    return RefusedDocument(
        file=document.file,
        document=document.index,
        site=document.site,
        field=field_name,
        line=line,
        column=column,
        message=refusal.message,
    )


def describe_refusal(refused: RefusedDocument) -> str:
    parts = [refused.file]
    if refused.document is not None:
        parts.append(f"document {refused.document}")
    where = refused.field or ""
    if refused.line is not None:
        position = f"line {refused.line}" + (
            f", column {refused.column}" if refused.column is not None else ""
        )
        where = f"{where} ({position})" if where else position
    if where:
        parts.append(where)
    parts.append(refused.message)
    return ": ".join(parts)


@dataclass
class _Applied:
    created: list[str] = field(default_factory=list)
    configured: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    refused: list[RefusedDocument] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    unavailable: str | None = None


class GitSync:
    """The reconciler of GitSources: fetch, plan, apply, prune, report."""

    name = NAME
    after: tuple[str, ...] = ()

    def __init__(
        self, *, api: DirectorApi, git: Git, sites: SiteStore, sources: GitSourceStore, workdir: Path
    ) -> None:
        self._api = api
        self._git = git
        self._sites = sites
        self._sources = sources
        self._workdir = workdir
        self._memory: dict[str, Memory] = {}
        self._parsed: dict[str, dict[tuple[str, str], tuple[bytes, yamlio.LoadResult]]] = {}
        git.remove_leftovers()

    async def observe(self) -> None:
        return None

    def owned_names(self) -> set[str]:
        return set(self._memory)

    # ---- reconcile -----------------------------------------------------------------------------------

    async def reconcile(self, source: GitSource, ctx: ReconcileContext) -> Outcome:
        spec = source.spec
        name = source.name
        interval = spec.interval_seconds
        memory = self._memory.get(name)
        fresh = (
            memory is not None
            and memory.uid == source.metadata.uid
            and memory.generation == source.metadata.generation
        )
        if spec.suspend:
            return Outcome(
                steps=[Step("check", "skipped", "suspended")],
                ready=True,
                reason="Suspended",
                message="suspended: neither new revisions nor drift are applied until "
                f"`dirctl resume gitsource {name}`",
                recheck_after=interval,
            )
        if (
            fresh
            and memory is not None
            and ctx.trigger == "resync"
            and time.monotonic() - memory.checked_at < interval
        ):
            # The periodic resync of every record comes more often than a source's interval asks.
            ready, reason, message = memory.verdict
            return Outcome(
                steps=[Step("check", "unchanged", "checked within the interval")],
                ready=ready,
                reason=reason,
                message=message,
                recheck_after=max(1.0, interval - (time.monotonic() - memory.checked_at)),
            )
        started = time.monotonic()
        recheck = WEBHOOK_FOLLOW_UP_SECONDS if "webhook" in ctx.trigger else interval
        previous = (
            source.status.sync if source.status is not None and source.status.sync is not None else None
        )
        # A shallow copy: every list in it is replaced, never changed in place.
        sync = (previous or SyncStatus()).model_copy()
        sync.url, sync.ref = spec.url, spec.ref.describe()
        steps: list[Step] = []

        def not_ready(reason: str, message: str, revision: str | None = None) -> Outcome:
            if revision is not None:
                self._remember_attempt(sync, revision, "failed", started, message, previous)
            self._memory.pop(name, None)
            return Outcome(
                steps=[*steps, Step("fetch", "failed", message)],
                ready=False,
                reason=reason,
                message=message,
                status=sync,
                recheck_after=recheck,
            )

        credentials = None
        if spec.secret_ref is not None:
            try:
                credentials = Credentials.from_values(await self._api.source_credentials(name))
            except ApiRefusal as refusal:
                return not_ready("FetchFailed", f"credentials: {refusal.message}")
            except ApiUnavailable as error:
                return not_ready("FetchFailed", f"credentials: {error}")
        try:
            revision = await self._git.remote_revision(spec.url, spec.ref, credentials, deadline=ctx.deadline)
        except RevisionNotFound as error:
            return not_ready("RevisionNotFound", f"{error}: nothing applied, nothing pruned")
        except GitError as error:
            return not_ready("FetchFailed", str(error))
        if sync.fetched_revision != revision or sync.fetched_at is None:
            # When the remote was first found at this revision: an unchanged poll changes no status.
            sync.fetched_revision, sync.fetched_at = revision, _now()
        attempt = not (fresh and memory is not None and memory.snapshot.revision == revision)
        if attempt or memory is None:
            try:
                snapshot = await self._fetch(source, revision, credentials, ctx)
            except GitError as error:
                return not_ready("FetchFailed", str(error), revision)
            steps.append(
                Step(
                    "fetch",
                    "updated",
                    f"fetched {_short(revision)} ({spec.ref.describe()}) from {spec.url}: "
                    f"{len(snapshot.documents)} site documents, {len(snapshot.refused)} refused",
                )
            )
            memory = Memory(source.metadata.uid, source.metadata.generation, snapshot)
            self._memory[name] = memory
        snapshot = memory.snapshot
        memory.checked_at = time.monotonic()
        if snapshot.problem is not None:
            reason, message = snapshot.problem
            if attempt:
                self._remember_attempt(sync, revision, "failed", started, message, previous)
                steps.append(Step("apply", "failed", message))
            sync.documents = 0
            sync.refused, sync.refused_count = [], 0
            sync.inventory = await asyncio.to_thread(self._inventory, name)
            memory.verdict = (False, reason, message)
            return Outcome(
                steps=steps, ready=False, reason=reason, message=message, status=sync, recheck_after=recheck
            )

        applied, live = await self._apply(source, snapshot, memory)
        pruned: list[str] = []
        refused = [*snapshot.refused, *applied.refused]
        prune_note = ""
        if spec.prune and applied.unavailable is None:
            if snapshot.unnamed:
                prune_note = (
                    f"; nothing pruned: {snapshot.unnamed} refusal(s) came before a document's site "
                    "could be told"
                )
            else:
                keep = (
                    {d.site for d in snapshot.documents} | snapshot.kept | {r.site for r in refused if r.site}
                )
                pruned, prune_refused, unavailable = await self._prune(source, keep)
                refused += prune_refused
                applied.unavailable = applied.unavailable or unavailable
        reported = memory.reported
        steps += self._events(source, snapshot, applied, pruned, refused, memory, attempt)
        wrote = bool(applied.created or applied.configured or pruned)
        if not (attempt or wrote or applied.waiting or applied.unavailable) and memory.reported == reported:
            # An unchanged revision, every document in step: nothing to write, nothing new to say.
            ready, reason, message = memory.verdict
            return Outcome(steps=steps, ready=ready, reason=reason, message=message, recheck_after=recheck)

        total = snapshot.count
        sync.documents = total
        if wrote:
            sync.inventory = await asyncio.to_thread(self._inventory, name)
        else:
            sync.inventory = sorted(
                site
                for site, record in live.items()
                if record.metadata.labels.get(GITSOURCE_LABEL) == name
                and record.metadata.deletion_timestamp is None
            )
        sync.refused = refused[:MAX_LISTED_REFUSALS]
        sync.refused_count = len(refused)
        if applied.unavailable is not None:
            message = f"{_short(revision)} only partly applied: {applied.unavailable}; retrying"
            if attempt:
                self._remember_attempt(sync, revision, "failed", started, message, previous)
            memory.verdict = (False, "ApplyFailed", message)
            # The API is down or failing: look again soon rather than at the interval.
            return Outcome(
                steps=steps,
                ready=False,
                reason="ApplyFailed",
                message=message,
                status=sync,
                recheck_after=min(recheck, 10.0),
            )
        if refused:
            first = describe_refusal(refused[0])
            count = len({(r.file, r.document, r.site) for r in refused})
            message = (
                f"{count} of {total} documents refused at {_short(revision)} (first: {first}){prune_note}"
            )
            if attempt:
                self._remember_attempt(sync, revision, "partial", started, message, previous)
            sync.attempted_revision = revision
            memory.verdict = (False, "DocumentsRefused", message)
        else:
            message = f"{_short(revision)} applied: {len(sync.inventory)} sites{prune_note}"
            if attempt:
                self._remember_attempt(sync, revision, "applied", started, message, previous)
            sync.attempted_revision = sync.applied_revision = revision
            memory.verdict = (True, "Applied", message)
        ready, reason, message = memory.verdict
        return Outcome(
            steps=steps,
            ready=ready,
            reason=reason,
            message=message,
            status=sync,
            recheck_after=0.5 if applied.waiting else recheck,
        )

    def _remember_attempt(
        self,
        sync: SyncStatus,
        revision: str,
        result: Any,
        started: float,
        message: str,
        previous: SyncStatus | None,
    ) -> None:
        sync.attempted_revision = revision
        entry = RevisionAttempt(
            revision=revision,
            result=result,
            time=_now(),
            duration_seconds=round(time.monotonic() - started, 3),
            message=message[:1000],
        )
        sync.history = [entry, *(previous.history if previous else [])][:HISTORY_LENGTH]

    async def _fetch(
        self, source: GitSource, revision: str, credentials: Credentials | None, ctx: ReconcileContext
    ) -> Snapshot:
        spec = source.spec
        checkout: Checkout = await self._git.fetch(spec.url, revision, credentials, deadline=ctx.deadline)
        try:
            entries = await self._git.tree(checkout, spec.directory, deadline=ctx.deadline)
            parsed = self._parsed.get(source.name, {})
            wanted = [
                entry.oid
                for entry in entries
                if entry.path.endswith(yamlio.YAML_SUFFIXES)
                and entry.kind == "blob"
                and (entry.is_symlink or (entry.size or 0) <= yamlio.MAX_FILE_BYTES)
                and (entry.path, entry.oid) not in parsed
            ]
            # Not past the total a snapshot reads: the files beyond it are refused unread.
            total, bounded = 0, []
            sizes = {entry.oid: entry.size or 0 for entry in entries}
            for oid in wanted:
                total += sizes.get(oid, 0)
                if total > MAX_TOTAL_BYTES:
                    break
                bounded.append(oid)
            blobs = await self._git.read(checkout, bounded, deadline=ctx.deadline)
        finally:
            await asyncio.to_thread(checkout.close)
        snapshot = await asyncio.to_thread(
            read_snapshot, source.name, revision, spec.directory, entries, blobs, parsed=parsed
        )
        self._parsed[source.name] = snapshot.parsed
        return snapshot

    def _ours(self, source: str) -> dict[str, Site]:
        sites, _errors = self._sites.list()
        return {site.name: site for site in sites if site.metadata.labels.get(GITSOURCE_LABEL) == source}

    def _inventory(self, source: str) -> list[str]:
        return sorted(
            name for name, site in self._ours(source).items() if site.metadata.deletion_timestamp is None
        )

    async def _apply(
        self, source: GitSource, snapshot: Snapshot, memory: Memory
    ) -> tuple[_Applied, dict[str, Site]]:
        """Apply every document not in step; what was done, and the sites as they were listed before."""
        name = source.name
        manager = field_manager_of(name)
        act_as = source.spec.apply_as or ""
        applied = _Applied()
        sites, _errors = await asyncio.to_thread(self._sites.list)
        live = {site.name: site for site in sites}
        todo: list[tuple[SiteDocument, dict[str, str]]] = []
        managers: set[str] = set()
        in_step: dict[str, str] = {}
        for document in snapshot.documents:
            site = live.get(document.site)
            if site is not None:
                mark = site.metadata.labels.get(GITSOURCE_LABEL)
                if mark != name:
                    maker = f'gitsource "{mark}"' if mark else "someone else (not a GitSource)"
                    applied.refused.append(
                        _refusal(
                            document,
                            snapshot,
                            ApiRefusal(
                                409,
                                f'site "{document.site}" was created by {maker}: a source never takes '
                                "over a site it did not create",
                            ),
                        )
                    )
                    continue
                if site.metadata.deletion_timestamp is not None:
                    applied.waiting.append(document.site)
                    continue
                version = site.metadata.resource_version or ""
                if memory.in_step.get(document.site) == version:
                    in_step[document.site] = version
                    continue
                live_document = site.to_document(include_status=False)
                drift = drifted_fields(document.intent, live_document, manager)
                managers |= set(_managed(live_document)) - {manager}
                if not drift:
                    in_step[document.site] = version
                    continue
                todo.append((document, drift))
            else:
                todo.append((document, {}))
        limit = asyncio.Semaphore(APPLY_CONCURRENCY)
        revision = _short(snapshot.revision)

        async def one(document: SiteDocument, drift: dict[str, str]) -> None:
            async with limit:
                if applied.unavailable is not None:
                    return
                try:
                    outcome = await self._api.apply_site(
                        document.site, document.intent, manager=manager, act_as=act_as
                    )
                except ApiRefusal as refusal:
                    applied.refused.append(_refusal(document, snapshot, refusal))
                    return
                except ApiUnavailable as error:
                    applied.unavailable = str(error)
                    return
            if outcome == "created":
                applied.created.append(document.site)
            elif outcome == "configured":
                applied.configured.append(document.site)
                # A field another manager holds now was changed by hand: say which, and by whom.
                changed = {path: who for path, who in drift.items() if who in managers}
                if changed:
                    fields = ", ".join(f"{path} (changed by {who})" for path, who in sorted(changed.items()))
                    applied.drift.append(f"site {document.site}: {fields}: set back as {revision} says")

        await asyncio.gather(*(one(document, drift) for document, drift in todo))
        # What was just written is in step at its new version; it is compared once more at the next look.
        memory.in_step = in_step
        return applied, live

    async def _prune(
        self, source: GitSource, keep: set[str]
    ) -> tuple[list[str], list[RefusedDocument], str | None]:
        name = source.name
        manager = field_manager_of(name)
        act_as = source.spec.apply_as or ""
        ours = await asyncio.to_thread(self._ours, name)
        gone = sorted(
            site
            for site, record in ours.items()
            if site not in keep and record.metadata.deletion_timestamp is None
        )
        pruned: list[str] = []
        refused: list[RefusedDocument] = []
        for site in gone:
            try:
                await self._api.delete_site(site, manager=manager, act_as=act_as)
            except ApiRefusal as refusal:
                refused.append(
                    RefusedDocument(
                        file="-", site=site, message=f"prune of site {site} refused: {refusal.message}"
                    )
                )
                continue
            except ApiUnavailable as error:
                return pruned, refused, str(error)
            pruned.append(site)
        return pruned, refused, None

    def _events(
        self,
        source: GitSource,
        snapshot: Snapshot,
        applied: _Applied,
        pruned: list[str],
        refused: list[RefusedDocument],
        memory: Memory,
        attempt: bool,
    ) -> list[Step]:
        revision = _short(snapshot.revision)
        steps: list[Step] = []
        for result, names, verb in (
            ("created", applied.created, "created"),
            ("updated", applied.configured, "configured"),
        ):
            if names:
                outcome: StepResult = "created" if result == "created" else "updated"
                steps.append(
                    Step("apply", outcome, f"{verb} {len(names)} sites as {revision} says: {_names(names)}")
                )
        steps += [Step("drift", "updated", message) for message in applied.drift[:MAX_REFUSAL_EVENTS]]
        if pruned:
            steps.append(
                Step("prune", "deleted", f"pruned {len(pruned)} sites gone from {revision}: {_names(pruned)}")
            )
        messages = [describe_refusal(r) for r in refused]
        if attempt or frozenset(messages) != memory.reported:
            for message in messages[:MAX_REFUSAL_EVENTS]:
                steps.append(Step("refuse", "failed", message))
            if len(messages) > MAX_REFUSAL_EVENTS:
                steps.append(
                    Step("refuse", "failed", f"and {len(messages) - MAX_REFUSAL_EVENTS} more refused")
                )
        memory.reported = frozenset(messages)
        if not steps:
            steps.append(Step("check", "unchanged", f"{revision}: every document in step"))
        return steps

    # ---- deleting ------------------------------------------------------------------------------------

    async def finalize(self, name: str, ctx: ReconcileContext) -> Outcome:
        self._memory.pop(name, None)
        self._parsed.pop(name, None)
        try:
            source = await asyncio.to_thread(self._sources.get, name)
        except (NotFound, InvalidRecord):
            return Outcome(steps=[Step("finalize", "skipped", "no record left: the sites stay as they are")])
        manager = field_manager_of(name)
        act_as = source.spec.apply_as or ""
        ours = sorted(await asyncio.to_thread(self._inventory, name))
        steps: list[Step] = []
        done: list[str] = []
        for site in ours:
            try:
                if source.spec.deletion_policy == "delete":
                    await self._api.delete_site(site, manager=manager, act_as=act_as)
                else:
                    unmark = {"metadata": {"labels": {GITSOURCE_LABEL: None}}}
                    await self._api.patch_site(site, unmark, manager=manager, act_as=act_as)
            except ApiRefusal as refusal:
                steps.append(Step("finalize", "failed", f"site {site}: {refusal.message}"))
                continue
            done.append(site)
        if source.spec.deletion_policy == "delete":
            steps.append(
                Step("finalize", "deleted", f"deleted {len(done)} sites the source made: {_names(done)}")
            )
        else:
            steps.append(
                Step(
                    "finalize",
                    "updated",
                    f"orphaned {len(done)} sites the source made (they stay): {_names(done)}",
                )
            )
        return Outcome(steps=steps)
