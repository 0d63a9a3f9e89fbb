"""GitSources in the API: `/apis/director.io/v1/gitsources[/NAME[/events]]`.

A source acts with the permissions of its `applyAs` user, so it belongs to that user: they (and admins) see
and change it; anyone else is answered as if it did not exist. A user's source applies as that user (the API
fills `applyAs` in with whoever applies it); only an admin names another user. A `file://` URL reads this
machine's disk, so only an admin sets one.

Writes are server-side applies and merge patches with field ownership, as for sites (api/fields.py), checked
and written under the record's resourceVersion.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from pydantic import ValidationError

from api import content, fields, listing
from api.auth import Principal
from api.errors import ApiError, Cause, invalid, status_success, write_refused
from api.selectors import name_selector
from api.sites import WriteOptions, take_precondition
from specs import jsonio, yamlio
from specs.gitsource import KIND_GITSOURCE, GitSource
from specs.models import API_VERSION
from store.records import AlreadyExists, Conflict, GitSourceStore, InvalidRecord, NotFound, StoreError

Document = dict[str, Any]
Outcome = Literal["created", "configured", "unchanged"]
_MAX_ATTEMPTS = 20
_SERVER_METADATA = (
    "uid",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "finalizers",
    "managedFields",
)

_lock = threading.Lock()
_stores: dict[str, GitSourceStore] = {}


def gitsource_store() -> GitSourceStore:
    with _lock:
        store = _stores.get("store")
        if store is None:
            store = _stores["store"] = GitSourceStore(settings.STATE_DIR)
        return store


def not_found(name: str) -> ApiError:
    return ApiError(404, f'gitsource "{name}" not found', name=name)


def can_read(principal: Principal, source: GitSource) -> bool:
    return principal.is_admin or source.spec.apply_as == principal.username


def document_of(source: GitSource, *, include_status: bool = True) -> Document:
    return fields.without_managed(source.to_document(include_status=include_status))


def _validated(document: Document, name: str) -> GitSource:
    try:
        return GitSource.model_validate(document)
    except ValidationError as error:
        raise invalid(error, name=name, kind=KIND_GITSOURCE) from None


def _writable(body: Any, name: str | None) -> Document:
    if jsonio.nesting_depth(body) > yamlio.MAX_DEPTH:
        raise ApiError(400, f"the request body: {yamlio.too_deep_problem()}")
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a GitSource object (a mapping), not a list or a scalar")
    document = copy.deepcopy(body)
    document.pop("status", None)
    metadata = document.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise ApiError(422, "metadata must be a mapping", causes=[Cause("metadata", "must be a mapping")])
    for server_field in _SERVER_METADATA:
        metadata.pop(server_field, None)
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(fields.MANAGED_FIELDS_ANNOTATION, None)
    if name is not None and metadata.setdefault("name", name) != name:
        raise ApiError(
            400,
            f'metadata.name "{metadata["name"]}" does not match the name in the URL "{name}"',
            causes=[Cause("metadata.name", f'must be "{name}" as in the URL')],
        )
    document.setdefault("apiVersion", API_VERSION)
    document.setdefault("kind", KIND_GITSOURCE)
    return document


class GitSourceService:
    def __init__(self, store: GitSourceStore, principal: Principal) -> None:
        self.store = store
        self.principal = principal

    # ---- reading -------------------------------------------------------------------------------------

    def _get(self, name: str) -> GitSource | None:
        try:
            return self.store.get(name)
        except (NotFound, ValueError):
            return None
        except InvalidRecord as error:
            raise ApiError(
                500, f'the record of gitsource "{name}" cannot be read: {error}', reason="InvalidRecord"
            ) from None

    def get(self, name: str) -> GitSource:
        source = self._get(name)
        if source is None or not can_read(self.principal, source):
            raise not_found(name)
        return source

    def list(self) -> list[GitSource]:
        return [source for source in self.store.list()[0] if can_read(self.principal, source)]

    # ---- writing -------------------------------------------------------------------------------------

    def _authorize(self, old: GitSource | None, new: GitSource) -> None:
        if self.principal.is_component or self.principal.impersonated_by is not None:
            raise ApiError(403, f'the credential of "{self.principal.username}" may not change gitsources')
        spec = new.spec
        if not self.principal.is_admin:
            if spec.apply_as != self.principal.username:
                raise ApiError(
                    403,
                    f'user "{self.principal.username}" may not make a source apply as "{spec.apply_as}": '
                    "a source applies as whoever applies it; only an admin may name another user",
                    causes=[Cause("spec.applyAs", f'must be "{self.principal.username}" (or left out)')],
                    name=new.name,
                )
            if spec.transport == "file" and (old is None or old.spec.url != spec.url):
                raise ApiError(
                    403,
                    "a file:// URL reads the controller's own disk: only an admin may set one; use https://, "
                    "ssh:// or git://",
                    causes=[Cause("spec.url", "file:// is for admins")],
                    name=new.name,
                )
        if (old is None or old.spec.apply_as != spec.apply_as) and not User.objects.filter(
            username=spec.apply_as, is_active=True
        ).exists():
            raise ApiError(
                422,
                f'no active user is named "{spec.apply_as}"; applyAs must be a Director user',
                causes=[Cause("spec.applyAs", "must be a Director user")],
                name=new.name,
            )

    def _write(
        self,
        name: str,
        compute: Callable[[GitSource | None], Document],
        options: WriteOptions,
        *,
        create_if_missing: bool,
        precondition: str | None = None,
    ) -> tuple[GitSource, Outcome]:
        fields.check_field_manager(options.field_manager)
        for _attempt in range(_MAX_ATTEMPTS):
            old = self._get(name)
            if old is not None and not can_read(self.principal, old):
                if create_if_missing:
                    raise ApiError(409, f'gitsource "{name}" already exists; choose another name', name=name)
                raise not_found(name)
            if old is None and not create_if_missing:
                raise not_found(name)
            if old is not None and old.metadata.deletion_timestamp is not None:
                raise ApiError(
                    409, f'gitsource "{name}" is being deleted; try again once it is gone', name=name
                )
            if old is not None and precondition is not None and old.metadata.resource_version != precondition:
                raise ApiError(
                    409, f'gitsource "{name}" was changed since resourceVersion {precondition}; read it again'
                )
            document = compute(old)
            spec = document.setdefault("spec", {})
            if isinstance(spec, dict) and not spec.get("applyAs"):
                # Whoever applies a source is whose permissions it has, unless an admin says otherwise.
                spec["applyAs"] = old.spec.apply_as if old is not None else self.principal.username
            if old is not None:
                document["metadata"]["finalizers"] = list(old.metadata.finalizers)
            new = _validated(document, name)
            self._authorize(old, new)
            if (
                old is not None
                and old.spec == new.spec
                and old.metadata.labels == new.metadata.labels
                and old.metadata.annotations == new.metadata.annotations
            ):
                return old, "unchanged"
            try:
                if old is None:
                    stored = self.store.create(new, dry_run=options.dry_run)
                else:
                    new.metadata.resource_version = old.metadata.resource_version
                    stored = self.store.update(new, dry_run=options.dry_run)
            except (Conflict, AlreadyExists, NotFound):
                continue
            except StoreError as error:
                raise write_refused(error, f'gitsource "{name}"', name=name) from None
            return stored, "created" if old is None else "configured"
        raise ApiError(409, f'gitsource "{name}" kept changing while this write was retried; try again')

    def apply(self, name: str, body: Any, options: WriteOptions) -> tuple[GitSource, Outcome]:
        if options.field_manager == fields.DEFAULT_UPDATE_MANAGER:
            raise ApiError(
                400,
                "server-side apply needs a fieldManager (cli, ui, ...)",
                causes=[Cause("fieldManager", "is required for apply")],
            )
        given = _writable(body, name)
        precondition = take_precondition(given["metadata"])
        if "spec" in given:
            # What the manager states of the spec must be valid on its own, so errors point at its document.
            # An apply of metadata alone (kubectl's own record of its last apply) is checked merged.
            self._validated_as_given(given, name)

        def compute(old: GitSource | None) -> Document:
            live = old.to_document(include_status=False) if old is not None else None
            managed = fields.read_managed(live) if live is not None else {}
            document, new_managed = fields.apply(
                fields.without_managed(live) if live is not None else None,
                given,
                options.field_manager,
                managed,
                force=options.force,
            )
            document = _writable(document, name)
            fields.write_managed(document, new_managed)
            return document

        return self._write(name, compute, options, create_if_missing=True, precondition=precondition)

    def _validated_as_given(self, given: Document, name: str) -> None:
        """422 for a document that is invalid as sent, before any bookkeeping is added to it."""
        given_check = copy.deepcopy(given)
        spec = given_check.setdefault("spec", {})
        if isinstance(spec, dict):  # anything else is refused by validation next, naming spec
            spec.setdefault("applyAs", self.principal.username)
        _validated(given_check, name)

    def create(self, body: Any, options: WriteOptions) -> GitSource:
        given = _writable(body, None)
        name = given["metadata"].get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(422, "metadata.name is required", causes=[Cause("metadata.name", "is required")])
        self._validated_as_given(given, name)

        def compute(old: GitSource | None) -> Document:
            if old is not None:
                raise ApiError(409, f'gitsource "{name}" already exists; choose another name', name=name)
            document = copy.deepcopy(given)
            fields.write_managed(
                document, fields.record_update(None, document, options.field_manager, {}, given=given)
            )
            return document

        source, _ = self._write(name, compute, options, create_if_missing=True)
        return source

    def merge_patch(self, name: str, patch: Any, options: WriteOptions) -> GitSource:
        if not isinstance(patch, dict):
            raise ApiError(400, "a merge patch must be a mapping")
        if jsonio.nesting_depth(patch) > yamlio.MAX_DEPTH:
            raise ApiError(400, f"the request body: {yamlio.too_deep_problem()}")
        patch = copy.deepcopy(patch)
        patch.pop("status", None)
        metadata = patch.get("metadata")
        precondition = take_precondition(metadata) if isinstance(metadata, dict) else None

        def compute(old: GitSource | None) -> Document:
            assert old is not None
            old_document = old.to_document(include_status=False)
            managed = fields.read_managed(old_document)
            document = _writable(fields.merge_patch(fields.without_managed(old_document), patch), name)
            fields.write_managed(
                document, fields.record_update(old_document, document, options.field_manager, managed)
            )
            return document

        source, _ = self._write(name, compute, options, create_if_missing=False, precondition=precondition)
        return source

    def delete(
        self, name: str, *, dry_run: bool = False, precondition: str | None = None
    ) -> GitSource | None:
        for _attempt in range(_MAX_ATTEMPTS):
            old = self.get(name)
            if precondition is not None and old.metadata.resource_version != precondition:
                raise ApiError(
                    409, f'gitsource "{name}" was changed since resourceVersion {precondition}; read it again'
                )
            if self.principal.is_component or self.principal.impersonated_by is not None:
                raise ApiError(
                    403, f'the credential of "{self.principal.username}" may not delete gitsources'
                )
            if dry_run:
                return old if old.metadata.finalizers else None
            try:
                return self.store.delete(name, resource_version=old.metadata.resource_version)
            except Conflict:
                continue
            except NotFound:
                raise not_found(name) from None
        raise ApiError(409, f'gitsource "{name}" kept changing while it was being deleted; try again')


def service(principal: Principal) -> GitSourceService:
    return GitSourceService(gitsource_store(), principal)


# ---- HTTP --------------------------------------------------------------------------------------------


def list_document(sources: list[GitSource]) -> Document:
    versions = [int(source.metadata.resource_version or 0) for source in sources]
    return {
        "apiVersion": API_VERSION,
        "kind": "GitSourceList",
        "metadata": {"resourceVersion": str(max(versions, default=0))},
        "items": [document_of(source) for source in sources],
    }


def collection(request: HttpRequest, principal: Principal, options: WriteOptions) -> HttpResponse:
    if request.method == "POST":
        created = service(principal).create(content.parse_body(request), options)
        return content.render(request, document_of(created), status=201)
    sources = service(principal).list()
    only_name = name_selector(request.GET.get("fieldSelector"))
    if only_name is not None:
        sources = [source for source in sources if source.name == only_name]
    if listing.wants_table(request.headers.get("Accept", "")):
        include = listing.include_object(request.GET.get("includeObject"))
        return content.render(request, listing.gitsource_table(sources, include))
    return content.render(request, list_document(sources))


def item(
    request: HttpRequest,
    principal: Principal,
    name: str,
    options: WriteOptions,
    precondition: str | None = None,
) -> HttpResponse:
    """`precondition`: the resourceVersion a DELETE is conditional on."""
    sources = service(principal)
    if request.method == "GET":
        source = sources.get(name)
        if listing.wants_table(request.headers.get("Accept", "")):
            include = listing.include_object(request.GET.get("includeObject"))
            return content.render(request, listing.gitsource_table([source], include))
        return content.render(request, document_of(source))
    if request.method == "PATCH":
        kind = content.media_type(request)
        if kind in (content.APPLY_PATCH_YAML, content.APPLY_PATCH_JSON):
            source, outcome = sources.apply(name, content.parse_body(request), options)
            response = content.render(
                request, document_of(source), status=201 if outcome == "created" else 200
            )
            response["Director-Outcome"] = outcome
            return response
        if kind in (content.MERGE_PATCH, content.JSON):
            return content.render(
                request, document_of(sources.merge_patch(name, content.parse_body(request), options))
            )
        raise ApiError(415, f"PATCH takes {content.MERGE_PATCH} or {content.APPLY_PATCH_YAML}, not {kind!r}")
    remaining = sources.delete(name, dry_run=options.dry_run, precondition=precondition)
    if remaining is not None:
        return content.render(request, document_of(remaining), status=202)
    return content.render(request, status_success(f'gitsource "{name}" deleted', name=name))


def events(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    from api.runtime import event_log
    from api.streams import event_document

    source = service(principal).get(name)
    try:
        limit = max(1, min(int(request.GET.get("limit", "50")), 1000))
    except ValueError:
        raise ApiError(
            400, "limit must be a whole number", causes=[Cause("limit", "a whole number")]
        ) from None
    found = (
        [] if source.metadata.uid is None else event_log().query(name, uid=source.metadata.uid, limit=limit)
    )
    return content.render(
        request,
        {
            "apiVersion": API_VERSION,
            "kind": "EventList",
            "metadata": {},
            "items": [event_document(e) for e in found],
        },
    )
