"""Site operations with validation, authorization, optimistic concurrency, field ownership and auditing.

Views translate HTTP to these calls; the web UI can call them directly with its own principal.
Every write is validated by specs/ and authorized before anything changes, and is retried on a
resourceVersion conflict only when the caller did not ask for a precondition itself.

Whether the caller may see the site is decided first, before any version check, diff or field-ownership
conflict: those answers would otherwise tell a stranger what the site holds. A site the caller may not see
is answered exactly as one that does not exist (404). Only a create under a taken name says that the name
is taken: a site's name is its public host name, so that much is no secret.
"""

from __future__ import annotations

import builtins
import copy
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.contrib.auth.models import User
from django.db import connections
from django.utils import timezone
from pydantic import ValidationError

from api import fields
from api.auth import Principal
from api.domains import admit_domains, host_taken
from api.errors import ApiError, Cause, invalid, write_refused
from api.gitops_policy import guard_site_write
from api.listcache import ListingCache
from api.models import WriteRecord
from api.policy import authorize_write, can_read
from specs import jsonio, yamlio
from specs.models import API_VERSION, KIND_SITE, Site
from store.records import (
    AlreadyExists,
    Conflict,
    HostTaken,
    NotFound,
    RecordError,
    SiteStore,
    StoreError,
)

Document = dict[str, Any]
# Enough for a burst of writers on one site; each retry re-reads the record, so progress is guaranteed
# unless someone else keeps winning, in which case the caller hears 409 and may retry.
_MAX_ATTEMPTS = 20
Outcome = Literal["created", "configured", "unchanged"]


@dataclass(frozen=True)
class WriteOptions:
    field_manager: str = fields.DEFAULT_UPDATE_MANAGER
    dry_run: bool = False
    force: bool = False


def not_found(name: str) -> ApiError:
    """The answer for a site that does not exist and for one the caller may not see, alike."""
    return ApiError(404, f'site "{name}" not found', name=name)


def name_taken(name: str) -> ApiError:
    return ApiError(
        409, f'site "{name}" already exists; choose another name', reason="AlreadyExists", name=name
    )


def _unknown_owners(old: Site | None, new: Site) -> None:
    """422 when a write adds an owner who is not a Director user (a typo would hand the site to nobody,
    or to whoever registers that name later)."""
    kept = set(old.spec.owners) if old is not None else set()
    added = {owner: index for index, owner in enumerate(new.spec.owners) if owner not in kept}
    if not added:
        return
    known = set(User.objects.filter(username__in=list(added)).values_list("username", flat=True))
    causes = [
        Cause(f"spec.owners[{index}]", f"no user is named {owner!r}; owners must be Director users")
        for owner, index in added.items()
        if owner not in known
    ]
    if causes:
        listing = "; ".join(f"{cause.field}: {cause.message}" for cause in causes)
        raise ApiError(
            422, f'site "{new.name}" has unknown owners: {listing}', causes=causes, name=new.name, kind="Site"
        )


def document_of(site: Site, *, include_status: bool = True) -> Document:
    return fields.without_managed(site.to_document(include_status=include_status))


def _validated(document: Mapping[str, Any], name: str | None) -> Site:
    try:
        return Site.model_validate(document)
    except ValidationError as error:
        raise invalid(error, name=name) from None


def _bounded(document: Any) -> None:
    """Refuse a document deeper than the body parsers accept, however it came: copying it, merge patch
    and apply recurse once per level."""
    if jsonio.nesting_depth(document) > yamlio.MAX_DEPTH:
        raise ApiError(400, f"the request body: {yamlio.too_deep_problem()}")


def take_precondition(metadata: dict[str, Any]) -> str | None:
    """Remove and return the resourceVersion a write is conditional on; 422 unless it is text, as the
    version a read answered is (YAML reads an unquoted 42 as a number: quote it)."""
    given = metadata.pop("resourceVersion", None)
    if given is None or isinstance(given, str):
        return given
    rule = 'the resourceVersion a read answered, as a string such as "42"'
    raise ApiError(
        422,
        f"metadata.resourceVersion must be {rule}, got {given!r}"[:300],
        causes=[Cause("metadata.resourceVersion", rule)],
    )


def _writable(document: Any, name: str | None) -> Document:
    """A copy of the client's document with what only the server sets taken out."""
    _bounded(document)
    if not isinstance(document, dict):
        raise ApiError(400, "the request body must be a Site object (a mapping), not a list or a scalar")
    return _without_server_fields(copy.deepcopy(document), name)


def _without_server_fields(result: Document, name: str | None) -> Document:
    """`result` itself with what only the server sets taken out: for a document this service has just made
    from bounded ones, which needs neither a copy nor another bounds check. Its metadata is replaced by a
    changed copy, never changed in place: it may be shared with the document it was made from."""
    result.pop("status", None)
    metadata = result.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ApiError(422, "metadata must be a mapping", causes=[Cause("metadata", "must be a mapping")])
    metadata = result["metadata"] = dict(metadata)
    for server_field in (
        "uid",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "finalizers",
        "managedFields",
    ):
        metadata.pop(server_field, None)
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict) and fields.MANAGED_FIELDS_ANNOTATION in annotations:
        metadata["annotations"] = {
            key: value for key, value in annotations.items() if key != fields.MANAGED_FIELDS_ANNOTATION
        }
    if name is not None:
        given = metadata.setdefault("name", name)
        if given != name:
            raise ApiError(
                400,
                f'metadata.name "{given}" does not match the name in the URL "{name}"',
                causes=[Cause("metadata.name", f'must be "{name}" as in the URL')],
                name=name,
            )
    result.setdefault("apiVersion", API_VERSION)
    result.setdefault("kind", KIND_SITE)
    return result


def _storable(document: Document, old: Site | None) -> Document:
    """Keep the server's own metadata of the stored record (finalizers are the controller's)."""
    if old is not None:
        document["metadata"]["finalizers"] = list(old.metadata.finalizers)
    return document


def _may_be_current(precondition: str, current: Site) -> bool:
    """Whether a resourceVersion the caller read can still be current: no newer than the site's. The store
    then checks it against the last spec write exactly."""
    return precondition.isdigit() and int(precondition) <= int(current.metadata.resource_version or 0)


def _unchanged(old: Site, new: Site) -> bool:
    """A write that would change nothing is not written: no new resourceVersion, no reconcile."""
    return (
        old.spec == new.spec
        and old.metadata.labels == new.metadata.labels
        and old.metadata.annotations == new.metadata.annotations
        and old.metadata.finalizers == new.metadata.finalizers
    )


@functools.cache
def _audit_insert() -> str:
    meta = WriteRecord._meta
    column = {field.name: str(field.column) for field in meta.concrete_fields}
    names = ["time", "username", "site", "operation", "field_manager", "generation", "resource_version"]
    columns = ", ".join(column[name] for name in names)
    return f"INSERT INTO {meta.db_table} ({columns}) VALUES ({', '.join(['%s'] * len(names))})"


class SiteService:
    def __init__(self, store: SiteStore, principal: Principal, listing: ListingCache | None = None) -> None:
        self.store = store
        self.principal = principal
        self.listing = listing

    # ---- reading -------------------------------------------------------------------------------------

    def _get(self, name: str) -> Site | None:
        """The site as the store lists it: shared with other readers, so never changed here (writes build a
        new Site from a document). None for a name that could never be a site, as for one that is absent."""
        try:
            site = self.store.current(name)
        except FileNotFoundError:
            return None  # removed between the store's look and its read
        if isinstance(site, RecordError):
            raise ApiError(
                500,
                f'the record of site "{name}" cannot be read, so it can be neither shown nor changed until '
                f"an administrator repairs or removes it: {site.path}: {site.message}",
                reason="InvalidRecord",
                name=name,
            )
        return site

    def _visible(self, name: str) -> Site | None:
        """The site if it exists and the caller may see it; None otherwise, whichever it is."""
        site = self._get(name)
        return site if site is not None and can_read(self.principal, site) else None

    def get(self, name: str) -> Site:
        site = self._visible(name)
        if site is None:
            raise not_found(name)
        return site

    def list(self, label_filter: Callable[[Mapping[str, str]], bool] | None = None) -> builtins.list[Site]:
        """The sites the caller may see, sorted by name; the list and its Sites are shared: only read them."""
        sites = self.listing.sites() if self.listing is not None else self.store.list()[0]
        if self.principal.is_admin and label_filter is None:
            return sites  # every one, as listed: no copy of 10,000 references
        return [
            site
            for site in sites
            if can_read(self.principal, site) and (label_filter is None or label_filter(site.metadata.labels))
        ]

    def history(self, name: str) -> builtins.list[Site]:
        self.get(name)
        return self.store.history(name)

    # ---- writing -------------------------------------------------------------------------------------

    def _audit(self, site: Site | None, name: str, operation: str, options: WriteOptions) -> None:
        """One WriteRecord row, by a prepared statement: the ORM's create costs more than the insert.

        Not a second durable write: SQLite runs in WAL mode with synchronous=NORMAL (ui/settings.py), so
        the row survives the process at once and a power loss after the next checkpoint. A power loss
        before it may lose the last moments' rows while the record (fsynced by the store) survives; an
        fsync here would halve the write rate for them.
        """
        connection = connections[WriteRecord.objects.db]
        with connection.cursor() as cursor:
            cursor.execute(
                _audit_insert(),
                [
                    connection.ops.adapt_datetimefield_value(timezone.now()),
                    self.principal.username,
                    name,
                    operation,
                    options.field_manager,
                    site.metadata.generation if site else None,
                    (site.metadata.resource_version or "") if site else "",
                ],
            )

    def _write(
        self,
        name: str,
        operation: str,
        options: WriteOptions,
        compute: Callable[[Site | None], Document],
        *,
        precondition: str | None = None,
        create_if_missing: bool = False,
    ) -> tuple[Site, Outcome]:
        """Read, compute the new document, validate, authorize, write with a resourceVersion check; retry.

        Returns the stored (or, for a dry run, the would-be) site and what the write did.
        """
        fields.check_field_manager(options.field_manager)
        for _attempt in range(_MAX_ATTEMPTS):
            old = self._get(name)
            if old is not None and not can_read(self.principal, old):
                raise name_taken(name) if create_if_missing else not_found(name)
            if old is None and not create_if_missing:
                raise not_found(name)
            if old is not None and old.metadata.deletion_timestamp is not None and create_if_missing:
                raise ApiError(409, f'site "{name}" is being deleted; try again once it is gone', name=name)
            if old is not None and precondition is not None and not _may_be_current(precondition, old):
                raise self._stale(name, precondition, old)
            document = compute(old)
            new = _validated(document, name)
            authorize_write(self.principal, old, new)
            guard_site_write(self.principal, options.field_manager, old, new)
            _unknown_owners(old, new)
            admit_domains(self.principal, old, new)
            if old is not None and _unchanged(old, new):
                if precondition is not None:
                    # Unchanged or not, a version older than the last spec write is a stale read.
                    new.metadata.resource_version = precondition
                    try:
                        self.store.update(new, dry_run=True)
                    except Conflict:
                        raise self._stale(name, precondition, old) from None
                return old, "unchanged"
            dry = options.dry_run
            try:
                if old is None:
                    stored = self.store.create(new, dry_run=dry)
                else:
                    # The store decides whether the caller's version is current: a status written since
                    # the caller read the site does not make its copy of the spec stale.
                    new.metadata.resource_version = precondition or old.metadata.resource_version
                    stored = self.store.update(new, dry_run=dry)
            except HostTaken as taken:
                raise host_taken(taken, name) from None
            except (Conflict, AlreadyExists, NotFound):
                if precondition is not None:
                    raise self._stale(name, precondition, self._visible(name)) from None
                continue
            except StoreError as error:
                raise write_refused(error, f'site "{name}"', name=name) from None
            if not dry:
                self._audit(stored, name, operation if old is not None else "create", options)
            return stored, "created" if old is None else "configured"
        raise ApiError(409, f'site "{name}" kept changing while this write was retried; try again', name=name)

    @staticmethod
    def _stale(name: str, given: str, current: Site | None) -> ApiError:
        now = current.metadata.resource_version if current else "none (deleted)"
        return ApiError(
            409,
            f'Operation cannot be fulfilled on site "{name}": the object has been modified '
            f"(resourceVersion {given} given, {now} stored); read it again and reapply your change",
            name=name,
        )

    def _default_owner(self, document: Document) -> None:
        """A user who creates a site without naming owners owns it; an admin's site may have none."""
        if self.principal.is_admin:
            return
        spec = document.setdefault("spec", {})
        if isinstance(spec, dict) and not spec.get("owners"):
            spec["owners"] = [self.principal.username]

    def create(self, body: Any, options: WriteOptions) -> Site:
        given = _writable(body, None)
        self._default_owner(given)
        name = given["metadata"].get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(422, "metadata.name is required", causes=[Cause("metadata.name", "is required")])
        _validated(given, name)  # a bad document is 422 even when the name exists

        def compute(old: Site | None) -> Document:
            if old is not None:
                raise name_taken(name)
            document = copy.deepcopy(given)
            fields.write_managed(
                document, fields.record_update(None, document, options.field_manager, {}, given=given)
            )
            return document

        site, _created = self._write(name, "create", options, compute, create_if_missing=True)
        return site

    def replace(self, name: str, body: Any, options: WriteOptions) -> Site:
        given = _writable(body, name)
        precondition = take_precondition(given["metadata"])

        def compute(old: Site | None) -> Document:
            assert old is not None
            old_document = old.to_document(include_status=False)
            document = _storable(copy.deepcopy(given), old)
            normalized = fields.without_managed(_validated(document, name).to_document(include_status=False))
            managed = fields.record_update(
                old_document, normalized, options.field_manager, fields.read_managed(old_document)
            )
            fields.write_managed(document, managed)
            return document

        site, _ = self._write(name, "replace", options, compute, precondition=precondition)
        return site

    def merge_patch(self, name: str, patch: Any, options: WriteOptions) -> Site:
        if not isinstance(patch, dict):
            raise ApiError(400, "a merge patch must be a mapping")
        _bounded(patch)
        patch = copy.deepcopy(patch)
        patch.pop("status", None)
        metadata = patch.get("metadata")
        precondition = None
        if isinstance(metadata, dict):
            precondition = take_precondition(metadata)
            if metadata.get("name", name) != name:
                raise ApiError(
                    400, "a patch may not rename a site", causes=[Cause("metadata.name", "immutable")]
                )

        def compute(old: Site | None) -> Document:
            assert old is not None
            old_document = old.to_document(include_status=False)
            managed = fields.read_managed(old_document)
            # merge_patch copies what it takes from the patch, and old_document is this call's own.
            merged = fields.merge_patch(fields.without_managed(old_document), patch)
            patched = _without_server_fields(merged, name)
            document = _storable(patched, old)
            normalized = fields.without_managed(_validated(document, name).to_document(include_status=False))
            fields.write_managed(
                document, fields.record_update(old_document, normalized, options.field_manager, managed)
            )
            return document

        site, _ = self._write(name, "patch", options, compute, precondition=precondition)
        return site

    def apply(self, name: str, body: Any, options: WriteOptions) -> tuple[Site, Outcome]:
        if options.field_manager == fields.DEFAULT_UPDATE_MANAGER:
            raise ApiError(
                400,
                "server-side apply needs a fieldManager (cli, ui, gitops, shell, ...)",
                causes=[Cause("fieldManager", "is required for apply")],
            )
        given = _writable(body, name)
        precondition = take_precondition(given["metadata"])
        # What the manager states must be valid on its own, so errors point at its document.
        _validated(given, name)

        def compute(old: Site | None) -> Document:
            if old is None:
                self._default_owner(given)
            live = old.to_document(include_status=False) if old is not None else None
            managed = fields.read_managed(live) if live is not None else {}
            document, new_managed = fields.apply(
                fields.without_managed(live) if live is not None else None,
                given,
                options.field_manager,
                managed,
                force=options.force,
            )
            document = _storable(_without_server_fields(document, name), old)
            fields.write_managed(document, new_managed)
            return document

        return self._write(name, "apply", options, compute, precondition=precondition, create_if_missing=True)

    def delete(self, name: str, options: WriteOptions, precondition: str | None = None) -> Site | None:
        """The site still being finalized, or None when it is gone."""
        for _attempt in range(_MAX_ATTEMPTS):
            old = self._visible(name)
            if old is None:
                raise not_found(name)
            if precondition is not None and old.metadata.resource_version != precondition:
                raise self._stale(name, precondition, old)
            authorize_write(self.principal, old, None)
            guard_site_write(self.principal, options.field_manager, old, None)
            if options.dry_run:
                return old if old.metadata.finalizers else None
            try:
                remaining = self.store.delete(name, resource_version=old.metadata.resource_version)
            except Conflict:
                if precondition is not None:
                    raise self._stale(name, precondition, self._visible(name)) from None
                continue
            except NotFound:
                raise not_found(name) from None
            self._audit(remaining, name, "delete", options)
            return remaining
        raise ApiError(409, f'site "{name}" kept changing while it was being deleted; try again', name=name)
