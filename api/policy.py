"""Who may see and change which site, and the fields reserved to admins."""

from __future__ import annotations

from dataclasses import dataclass

from api.auth import Principal
from api.errors import ApiError, Cause
from specs.models import DEFAULT_PIDS, Site


@dataclass(frozen=True)
class Ceiling:
    """The most a user who is not an admin may ask for; an admin may set more."""

    cpus: float = 1.0
    memory_bytes: int = 1024**3
    upload_limit_bytes: int = 100 * 1024**2
    replicas: int = 3
    pids: int = DEFAULT_PIDS


USER_CEILING = Ceiling()


def can_read(principal: Principal, site: Site) -> bool:
    return principal.is_admin or principal.username in site.spec.owners


def require_read(principal: Principal, site: Site, verb: str = "get") -> None:
    if not can_read(principal, site):
        raise ApiError(
            403,
            f'user "{principal.username}" may not {verb} site "{site.name}": not among its owners',
            name=site.name,
        )


def _reserved_field_causes(old: Site | None, new: Site) -> list[Cause]:
    causes: list[Cause] = []
    spec, resources = new.spec, new.spec.resources
    old_spec = old.spec if old is not None else None

    def changed(value: object, old_value: object) -> bool:
        return old_spec is None or value != old_value

    if (new.spec.availability == "disabled" or (old_spec and old_spec.availability == "disabled")) and (
        changed(spec.availability, old_spec.availability if old_spec else None)
    ):
        causes.append(Cause("spec.availability", "only an admin may disable a site or enable a disabled one"))
    limits = [
        (
            "spec.resources.cpus",
            resources.cpus,
            USER_CEILING.cpus,
            old_spec and old_spec.resources.cpus,
            f"{USER_CEILING.cpus:g}",
        ),
        (
            "spec.resources.memory",
            resources.memory_bytes,
            USER_CEILING.memory_bytes,
            old_spec and old_spec.resources.memory_bytes,
            f"{USER_CEILING.memory_bytes // 1024**2}Mi",
        ),
        (
            "spec.resources.uploadLimit",
            resources.upload_limit_bytes,
            USER_CEILING.upload_limit_bytes,
            old_spec and old_spec.resources.upload_limit_bytes,
            f"{USER_CEILING.upload_limit_bytes // 1024**2}Mi",
        ),
        (
            "spec.resources.pids",
            resources.pids,
            USER_CEILING.pids,
            old_spec and old_spec.resources.pids,
            str(USER_CEILING.pids),
        ),
        (
            "spec.replicas",
            spec.replicas,
            USER_CEILING.replicas,
            old_spec and old_spec.replicas,
            str(USER_CEILING.replicas),
        ),
    ]
    for field, value, ceiling, old_value, shown in limits:
        # A value above the ceiling an admin set is kept through a user's edits of other fields.
        if value > ceiling and changed(value, old_value):
            causes.append(Cause(field, f"above the limit of {shown} for users; only an admin may set more"))
    return causes


def authorize_write(principal: Principal, old: Site | None, new: Site | None) -> None:
    """403 unless `principal` may turn `old` into `new` (None: the site does not exist / is deleted)."""
    if principal.is_component and not principal.is_admin:
        raise ApiError(403, f'the component credential of "{principal.username}" may not change sites')
    if principal.is_admin:
        return
    if old is not None:
        require_read(principal, old, "change")
    if new is None:
        if old is not None and old.spec.availability == "disabled":
            # Deleting it and creating it again would undo an admin's decision: the disabled record keeps
            # the name until an admin deletes it, which is how an admin releases the name.
            raise ApiError(
                403,
                f'site "{old.name}" was disabled by an administrator: only an administrator may delete it',
                causes=[Cause("spec.availability", "disabled by an administrator")],
                name=old.name,
            )
        return
    if principal.username not in new.spec.owners:
        raise ApiError(
            403,
            f'user "{principal.username}" must stay among spec.owners of site "{new.name}", '
            "or they could no longer manage it",
            causes=[Cause("spec.owners", f'must include "{principal.username}"')],
            name=new.name,
        )
    causes = _reserved_field_causes(old, new)
    if causes:
        listing = "; ".join(f"{cause.field}: {cause.message}" for cause in causes)
        raise ApiError(
            403, f'user "{principal.username}" may not set {listing}', causes=causes, name=new.name
        )
