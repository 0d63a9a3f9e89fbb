from __future__ import annotations

SITES = "/apis/director.io/v1/sites"


def site_doc(name: str, owners: list[str] | None = None, **spec) -> dict:
    return {
        "apiVersion": "director.io/v1",
        "kind": "Site",
        "metadata": {"name": name},
        "spec": {"owners": owners if owners is not None else ["alice"], **spec},
    }
