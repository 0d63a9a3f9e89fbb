"""The pages of sites: the list, a site, creating and editing (form and YAML), history, delete, actions.

Every read and write goes through the API's SiteService with the signed-in person's principal and the field
manager `ui`: the pages hold no rule of their own about who may do what.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render

from api import fields
from api.errors import ApiError
from api.runtime import site_service
from api.sites import SiteService, WriteOptions
from specs.config import Settings
from specs.models import RECONCILE_REQUEST_ANNOTATION, RESTART_REQUEST_ANNOTATION, Site
from ui import siteforms, yamlcheck
from ui.live import site_events_page, site_state, timeline_entry
from ui.siteforms import FIELD_MANAGER, Problems
from ui.web import page, principal_of

PAGE_SIZE = 50


def _service(request: HttpRequest) -> SiteService:
    return site_service(principal_of(request))


def _options(*, dry_run: bool = False, force: bool = False) -> WriteOptions:
    return WriteOptions(field_manager=FIELD_MANAGER, dry_run=dry_run, force=force)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---- the list -------------------------------------------------------------------------------------------


def _matches(site: Site, terms: list[str]) -> bool:
    """Each term must match: type:static, owner:alice, label:key=value (or key=value), or a part of the
    name, an owner or a domain."""
    for term in terms:
        key, colon, value = term.partition(":")
        if colon and key == "type":
            if site.spec.type != value:
                return False
        elif colon and key == "owner":
            if value not in site.spec.owners:
                return False
        elif (colon and key == "label") or "=" in term:
            label = value if colon and key == "label" else term
            label_key, _, label_value = label.partition("=")
            if site.metadata.labels.get(label_key) != label_value:
                return False
        elif not (
            term in site.name
            or any(term in owner for owner in site.spec.owners)
            or any(term in domain for domain in site.spec.domains)
        ):
            return False
    return True


def _page_number(raw: str | None, pages: int) -> int:
    number = int(raw) if raw and raw.isdigit() else 1
    return max(1, min(number, pages))


@dataclass(frozen=True)
class Row:
    site: Site
    state: dict[str, Any]
    urls: list[str]


def site_urls(site: Site) -> list[str]:
    if site.status is not None and site.status.urls:
        return list(site.status.urls)
    director: Settings = settings.DIRECTOR
    return director.site_urls(site.name, list(site.spec.domains))


@page
def sites(request: HttpRequest) -> HttpResponse:
    principal = principal_of(request)
    scope = request.GET.get("scope") or ("all" if principal.is_admin else "mine")
    if not principal.is_admin:
        scope = "mine"
    query = request.GET.get("q", "").strip()
    found = site_service(principal).list()
    if scope == "mine":
        found = [site for site in found if principal.username in site.spec.owners]
    terms = query.lower().split()
    if terms:
        found = [site for site in found if _matches(site, terms)]
    pages = max(1, -(-len(found) // PAGE_SIZE))
    number = _page_number(request.GET.get("page"), pages)
    shown = found[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    rows = [Row(site, site_state(site), site_urls(site)) for site in shown]

    def link(to: int) -> str:
        return "?" + urlencode({"q": query, "scope": scope, "page": to})

    return render(
        request,
        "ui/sites.html",
        {
            "rows": rows,
            "names": ",".join(row.site.name for row in rows),
            "query": query,
            "scope": scope,
            "total": len(found),
            "page_number": number,
            "pages": pages,
            "previous": link(number - 1) if number > 1 else None,
            "next": link(number + 1) if number < pages else None,
            "is_admin": principal.is_admin,
        },
    )


# ---- one site -------------------------------------------------------------------------------------------


def _spec_summary(site: Site) -> list[tuple[str, str]]:
    spec = site.spec
    rows = [
        ("Type", spec.type),
        ("Purpose", spec.purpose),
        ("Availability", spec.availability),
        ("Owners", ", ".join(spec.owners) or "none"),
        ("Custom domains", ", ".join(spec.domains) or "none"),
    ]
    if spec.type == "dynamic":
        rows += [
            ("Image", spec.image or ""),
            ("Command", " ".join(spec.command) if spec.command else "run.sh"),
            ("Replicas", str(spec.replicas)),
            (
                "Health check",
                f"GET {spec.health_check.path} every {spec.health_check.interval}"
                if spec.health_check
                else "none",
            ),
        ]
    rows += [
        ("Environment", ", ".join(spec.env) or "none"),
        (
            "Resources",
            f"{spec.resources.cpus:g} CPU, {spec.resources.memory} memory, "
            f"{spec.resources.upload_limit} uploads, {spec.resources.pids} processes",
        ),
        (
            "Generation",
            f"{site.metadata.generation} (observed "
            f"{site.status.observed_generation if site.status and site.status.observed_generation else '-'})",
        ),
    ]
    return rows


@page
def site_page(request: HttpRequest, name: str) -> HttpResponse:
    service = _service(request)
    site = service.get(name)
    events = [timeline_entry(event) for event in site_events_page(name, site.metadata.uid)]
    conditions = list(site.status.conditions) if site.status is not None else []
    managers = fields.managers_of(site.to_document(include_status=False))
    return render(
        request,
        "ui/site.html",
        {
            "site": site,
            "state": site_state(site),
            "urls": site_urls(site),
            "conditions": conditions,
            "summary": _spec_summary(site),
            "events": events,
            "annotations": {
                key: value
                for key, value in site.metadata.annotations.items()
                if key != fields.MANAGED_FIELDS_ANNOTATION
            },
            "labels": site.metadata.labels,
            "managers": managers,
            "dynamic": site.spec.type == "dynamic",
            "last_reconcile": site.status.last_reconcile if site.status is not None else None,
            "message": request.GET.get("done", ""),
        },
    )


def _annotate(request: HttpRequest, name: str, annotations: dict[str, str]) -> None:
    _service(request).merge_patch(name, {"metadata": {"annotations": annotations}}, _options())


@page
def reconcile(request: HttpRequest, name: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseRedirect(f"/sites/{name}")
    _annotate(request, name, {RECONCILE_REQUEST_ANNOTATION: _now()})
    return HttpResponseRedirect(f"/sites/{name}?done=reconcile")


@page
def restart(request: HttpRequest, name: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseRedirect(f"/sites/{name}")
    site = _service(request).get(name)
    if site.spec.type != "dynamic":
        raise ApiError(400, f'site "{name}" is static: it runs no process to restart')
    moment = _now()
    _annotate(request, name, {RESTART_REQUEST_ANNOTATION: moment, RECONCILE_REQUEST_ANNOTATION: moment})
    return HttpResponseRedirect(f"/sites/{name}?done=restart")


@page
def history(request: HttpRequest, name: str) -> HttpResponse:
    service = _service(request)
    site = service.get(name)
    earlier = service.history(name)
    return render(
        request,
        "ui/history.html",
        {
            "site": site,
            "current": _spec_summary(site),
            "generations": [(item.metadata.generation, _spec_summary(item)) for item in earlier],
        },
    )


@page
def rollback(request: HttpRequest, name: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseRedirect(f"/sites/{name}/history")
    service = _service(request)
    current = service.get(name)
    wanted = request.POST.get("generation", "")
    target = next((item for item in service.history(name) if str(item.metadata.generation) == wanted), None)
    if target is None:
        raise ApiError(404, f'site "{name}" has no earlier generation {wanted} (it may have been pruned)')
    document = current.to_document(include_status=False)
    document["spec"] = target.to_document(include_status=False)["spec"]
    metadata = document["metadata"]
    assert isinstance(metadata, dict)
    metadata["resourceVersion"] = request.POST.get("resource_version") or current.metadata.resource_version
    service.replace(name, document, _options())
    return HttpResponseRedirect(f"/sites/{name}?done=rollback")


@page
def delete(request: HttpRequest, name: str) -> HttpResponse:
    service = _service(request)
    site = service.get(name)
    problem = ""
    if request.method == "POST":
        if request.POST.get("confirm", "").strip() == name:
            service.delete(name, _options())
            return HttpResponseRedirect("/?" + urlencode({"deleted": name}))
        problem = f'Type the site\'s name, "{name}", to delete it.'
    return render(
        request, "ui/delete.html", {"site": site, "problem": problem}, status=400 if problem else 200
    )


# ---- the form -------------------------------------------------------------------------------------------


def _form_context(
    request: HttpRequest,
    *,
    site: Site | None,
    values: dict[str, str],
    problems: Problems | None = None,
    **extra: Any,
) -> dict[str, Any]:
    principal = principal_of(request)
    problems = problems or Problems()
    owned = siteforms.owners_by_field(site) if site is not None else {}
    clashes = extra.get("clashes", [])
    mine = extra.get("mine", {})
    inputs = {
        name: {
            "name": name,
            "label": siteforms.LABELS[name],
            "value": values.get(name, ""),
            "errors": problems.by_field.get(name, []),
            "owners": owned.get(name, []),
            "clash": name in clashes,
            "mine": mine.get(name, ""),
        }
        for name in siteforms.FORM_FIELDS
    }
    return {
        "site": site,
        "creating": site is None,
        "values": values,
        "f": inputs,
        "problems": problems,
        "labels": siteforms.LABELS,
        "owned": siteforms.owners_by_field(site) if site is not None else {},
        "is_admin": principal.is_admin,
        "resource_version": extra.pop("resource_version", site.metadata.resource_version if site else ""),
        "base": extra.pop("base", siteforms.encode_base(values)),
        "check_url": f"/sites/{site.name}/check" if site is not None else "/create/check",
        **extra,
    }


def _dry_run(request: HttpRequest, site_name: str | None, values: dict[str, str]) -> Problems:
    problems = Problems()
    document = siteforms.document_from(values, problems)
    if problems:
        return problems
    service = _service(request)
    try:
        if site_name is None:
            service.create(document, _options(dry_run=True))
        else:
            precondition = request.POST.get("resource_version") or None
            if precondition:
                document["metadata"]["resourceVersion"] = precondition
            service.apply(site_name, document, _options(dry_run=True, force=bool(request.POST.get("force"))))
    except ApiError as error:
        if siteforms.is_stale(error):
            problems.add(
                None, "Someone changed this site since you opened this page; saving shows what changed."
            )
        else:
            siteforms.place_error(error, problems)
    return problems


def _check_response(request: HttpRequest, problems: Problems) -> HttpResponse:
    return render(
        request,
        "ui/_form_errors.html",
        {"fields": siteforms.FORM_FIELDS, "problems": problems},
    )


@page
def create_check(request: HttpRequest) -> HttpResponse:
    return _check_response(request, _dry_run(request, None, siteforms.form_values(request.POST)))


@page
def edit_check(request: HttpRequest, name: str) -> HttpResponse:
    return _check_response(request, _dry_run(request, name, siteforms.form_values(request.POST)))


@page
def create(request: HttpRequest) -> HttpResponse:
    principal = principal_of(request)
    if request.method != "POST":
        values = siteforms.default_values(None if principal.is_admin else principal.username)
        return render(request, "ui/site_form.html", _form_context(request, site=None, values=values))
    values = siteforms.form_values(request.POST)
    problems = Problems()
    document = siteforms.document_from(values, problems)
    if not problems:
        try:
            created = _service(request).create(document, _options())
        except ApiError as error:
            siteforms.place_error(error, problems)
        else:
            return HttpResponseRedirect(f"/sites/{created.name}?done=created")
    context = _form_context(request, site=None, values=values, problems=problems)
    return render(request, "ui/site_form.html", context, status=422)


def _nulls_for(kept: list[str], intent: dict[str, Any]) -> dict[str, Any]:
    """A merge patch removing each kept field at its topmost part the intent leaves out."""
    patch: dict[str, Any] = {}
    for path in kept:
        parts = path.split(".")
        wanted: Any = intent
        for depth, part in enumerate(parts):
            if not isinstance(wanted, dict) or part not in wanted:
                target = patch
                for parent in parts[:depth]:
                    target = target.setdefault(parent, {})
                target[part] = None
                break
            wanted = wanted[part]
    return patch


class _Kept(Exception):
    def __init__(self, kept: list[str]) -> None:
        super().__init__(", ".join(kept))
        self.kept = kept


def _save(service: SiteService, name: str, document: dict[str, Any], precondition: str, force: bool) -> Site:
    """Apply the form's intent. Fields another manager set that the intent leaves out stay theirs, so they are
    refused (_Kept) unless forced; forcing removes them too, in a second write on top of the first."""
    document["metadata"]["resourceVersion"] = precondition
    if not force:
        dry, _ = service.apply(name, json.loads(json.dumps(document)), _options(dry_run=True))
        kept = siteforms.kept_fields(document, dry)
        if kept:
            raise _Kept(kept)
    stored, _ = service.apply(name, document, _options(force=force))
    kept = siteforms.kept_fields(document, stored)
    if kept and force:
        patch = _nulls_for(kept, document)
        patch.setdefault("metadata", {})["resourceVersion"] = stored.metadata.resource_version
        stored = service.merge_patch(name, patch, _options())
    return stored


@page
def edit(request: HttpRequest, name: str) -> HttpResponse:
    service = _service(request)
    site = service.get(name)
    if request.method != "POST":
        return render(
            request, "ui/site_form.html", _form_context(request, site=site, values=siteforms.values_of(site))
        )
    values = siteforms.form_values(request.POST)
    values["name"] = name
    precondition = request.POST.get("resource_version", "")
    base = siteforms.decode_base(request.POST.get("base", "")) or values
    problems = Problems()
    document = siteforms.document_from(values, problems)
    if not problems:
        try:
            _save(service, name, document, precondition, bool(request.POST.get("force")))
        except _Kept as kept:
            owners = _owners_of(site, kept.kept)
            context = _form_context(
                request,
                site=site,
                values=values,
                problems=problems,
                kept=owners,
                resource_version=precondition,
                base=siteforms.encode_base(base),
            )
            return render(request, "ui/site_form.html", context, status=409)
        except ApiError as error:
            if siteforms.is_stale(error):
                return _stale_form(request, service, name, values, base, precondition)
            conflicts = siteforms.field_conflicts(error)
            if conflicts:
                context = _form_context(
                    request,
                    site=site,
                    values=values,
                    problems=problems,
                    conflicts=conflicts,
                    resource_version=precondition,
                    base=siteforms.encode_base(base),
                )
                return render(request, "ui/site_form.html", context, status=409)
            siteforms.place_error(error, problems)
        else:
            return HttpResponseRedirect(f"/sites/{name}?done=saved")
    context = _form_context(
        request,
        site=site,
        values=values,
        problems=problems,
        resource_version=precondition,
        base=siteforms.encode_base(base),
    )
    return render(request, "ui/site_form.html", context, status=422)


def _owners_of(site: Site, paths: list[str]) -> list[tuple[str, str]]:
    managed = fields.managers_of(site.to_document(include_status=False))
    found = []
    for path in paths:
        owners = sorted(manager for manager, owned in managed.items() if path in owned) or ["another manager"]
        found.append((path, ", ".join(owners)))
    return found


def _stale_form(
    request: HttpRequest,
    service: SiteService,
    name: str,
    mine: dict[str, str],
    base: dict[str, str],
    precondition: str,
) -> HttpResponse:
    """Someone changed the site since this form was loaded: show what and who, merged with this person's
    own changes, and let them save again on top of it. Nothing typed is lost."""
    current = service.get(name)
    theirs = siteforms.values_of(current)
    merged, changes, clashes = siteforms.merge(base, theirs, mine)
    context = _form_context(
        request,
        site=current,
        values=merged,
        stale=True,
        changes=changes,
        clashes=clashes,
        writers=siteforms.writers_since(name, precondition),
        mine={name_: mine.get(name_, "") for name_ in clashes},
        resource_version=current.metadata.resource_version,
        base=siteforms.encode_base(theirs),
    )
    return render(request, "ui/site_form.html", context, status=409)


# ---- YAML -----------------------------------------------------------------------------------------------


def _yaml_context(request: HttpRequest, site: Site | None, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "site": site,
        "creating": site is None,
        "text": text,
        "resource_version": extra.pop("resource_version", site.metadata.resource_version if site else ""),
        "check_url": f"/sites/{site.name}/yaml/check" if site is not None else "/create/yaml/check",
        "diagnostics": extra.pop("diagnostics", []),
        **extra,
    }


def _yaml_write(
    request: HttpRequest, site_name: str | None, text: str, *, dry_run: bool
) -> tuple[Site | None, list[yamlcheck.Diagnostic], ApiError | None]:
    document, problems = yamlcheck.parse(text)
    if problems:
        return None, problems, None
    if not isinstance(document, dict):
        return None, [yamlcheck.Diagnostic("error: site.yaml: must be a Site mapping")], None
    service = _service(request)
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    shown = site_name or (name if isinstance(name, str) else "?")
    try:
        if site_name is None:
            return service.create(document, _options(dry_run=dry_run)), [], None
        precondition = request.POST.get("resource_version") or None
        if precondition and isinstance(metadata, dict):
            metadata["resourceVersion"] = precondition
        force = bool(request.POST.get("force"))
        stored, _ = service.apply(site_name, document, _options(dry_run=dry_run, force=force))
        return stored, [], None
    except ApiError as error:
        return None, yamlcheck.from_api_error(text, shown, error), error


@page
def yaml_check(request: HttpRequest, name: str | None = None) -> HttpResponse:
    _site, diagnostics, error = _yaml_write(request, name, request.POST.get("yaml", ""), dry_run=True)
    if error is not None and siteforms.is_stale(error):
        diagnostics = [
            yamlcheck.Diagnostic(
                "Someone changed this site since you opened this page; saving shows what changed."
            )
        ]
    return JsonResponse({"diagnostics": [item.to_json() for item in diagnostics]})


@page
def yaml_create(request: HttpRequest) -> HttpResponse:
    principal = principal_of(request)
    if request.method != "POST":
        text = siteforms.new_site_yaml(None if principal.is_admin else principal.username)
        return render(request, "ui/site_yaml.html", _yaml_context(request, None, text))
    text = request.POST.get("yaml", "")
    created, diagnostics, _error = _yaml_write(request, None, text, dry_run=False)
    if created is not None:
        return HttpResponseRedirect(f"/sites/{created.name}?done=created")
    return render(
        request, "ui/site_yaml.html", _yaml_context(request, None, text, diagnostics=diagnostics), status=422
    )


@page
def yaml_edit(request: HttpRequest, name: str) -> HttpResponse:
    service = _service(request)
    site = service.get(name)
    if request.method != "POST":
        return render(request, "ui/site_yaml.html", _yaml_context(request, site, siteforms.yaml_of(site)))
    text = request.POST.get("yaml", "")
    stored, diagnostics, error = _yaml_write(request, name, text, dry_run=False)
    if stored is not None:
        return HttpResponseRedirect(f"/sites/{name}?done=saved")
    extra: dict[str, Any] = {"diagnostics": diagnostics}
    if error is not None and siteforms.is_stale(error):
        precondition = request.POST.get("resource_version", "")
        current = service.get(name)
        extra.update(
            stale=True,
            writers=siteforms.writers_since(name, precondition),
            theirs=siteforms.yaml_of(current),
            resource_version=current.metadata.resource_version,
            diagnostics=[],
        )
    elif error is not None and siteforms.field_conflicts(error):
        extra["conflicts"] = siteforms.field_conflicts(error)
        extra["resource_version"] = request.POST.get("resource_version", "")
    else:
        extra["resource_version"] = request.POST.get("resource_version", "")
    return render(
        request,
        "ui/site_yaml.html",
        _yaml_context(request, site, text, **extra),
        status=409 if error and error.code == 409 else 422,
    )
