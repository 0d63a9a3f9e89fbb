"""What a GitSource may do to sites, decided where every site write is decided (api/sites.py).

A source writes through its own field manager, `gitsource-NAME`, and only the controller's credential acting
as the source's applyAs writes so. It creates sites marked with the label `director.io/gitsource: NAME`, and
it updates and deletes only sites that carry its mark: a site someone else created, or another source, is
refused here and never taken over, whatever the controller believed when it sent the write.
"""

from __future__ import annotations

from api.auth import Principal
from api.errors import ApiError, Cause
from specs.gitsource import GITSOURCE_LABEL, source_of_field_manager
from specs.models import Site

_LABEL_FIELD = f'metadata.labels["{GITSOURCE_LABEL}"]'


def _mark(site: Site) -> str | None:
    return site.metadata.labels.get(GITSOURCE_LABEL)


def _maker(site: Site) -> str:
    mark = _mark(site)
    return f'gitsource "{mark}"' if mark else "someone else (not a GitSource)"


def guard_site_write(principal: Principal, field_manager: str, old: Site | None, new: Site | None) -> None:
    """403/409 unless this write respects who made the site; `new` None is a deletion."""
    source = source_of_field_manager(field_manager)
    if principal.impersonated_by is not None and source is None:
        raise ApiError(
            403,
            "the controller writes sites as a user only through a GitSource's field manager gitsource-NAME",
        )
    if source is None:
        return
    if principal.impersonated_by is None:
        raise ApiError(
            403,
            f'the field manager "{field_manager}" is GitSource "{source}"\'s own: only the controller writes '
            "with it; choose another (--field-manager)",
            causes=[Cause("fieldManager", "is a GitSource's own")],
        )
    subject = new if new is not None else old
    name = subject.name if subject is not None else ""
    if old is not None and _mark(old) != source:
        raise ApiError(
            409,
            f'site "{name}" was created by {_maker(old)}, not by gitsource "{source}": a source never takes '
            "over a site it did not create; rename the document's site, or delete the site first",
            reason="AlreadyExists",
            causes=[
                Cause(
                    "metadata.name",
                    f"site exists and was created by {_maker(old)}",
                    reason="FieldValueDuplicate",
                )
            ],
            name=name,
        )
    if new is not None and old is None and _mark(new) != source:
        raise ApiError(
            422,
            f'a site gitsource "{source}" creates must carry the label {GITSOURCE_LABEL}={source}',
            causes=[Cause(_LABEL_FIELD, f"must be {source}")],
            name=name,
        )
    if new is not None and _mark(new) not in (None, source):
        raise ApiError(
            422,
            f'gitsource "{source}" may not hand site "{name}" to another source',
            causes=[Cause(_LABEL_FIELD, f"must be {source} or left out")],
            name=name,
        )
