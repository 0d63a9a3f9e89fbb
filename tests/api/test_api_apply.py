"""Server-side apply: field ownership between the CLI, the UI and GitOps."""

from __future__ import annotations

import yaml

from tests.api.api_helpers import SITES, site_doc

APPLY = {"Content-Type": "application/apply-patch+yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}


def _apply(client, name: str, document: dict, manager: str, force: bool = False):
    params = {"fieldManager": manager} | ({"force": "true"} if force else {})
    return client.patch(f"{SITES}/{name}", content=yaml.safe_dump(document), headers=APPLY, params=params)


def test_apply_creates_then_updates_and_needs_a_field_manager(api):
    with api.client() as client:
        created = _apply(client, "applied", site_doc("applied", replicas=2), "cli")
        assert created.status_code == 201, created.text
        again = _apply(client, "applied", site_doc("applied", replicas=3), "cli")
        assert again.status_code == 200 and again.json()["spec"]["replicas"] == 3
        anonymous = client.patch(
            f"{SITES}/applied", content=yaml.safe_dump(site_doc("applied")), headers=APPLY
        )
    assert anonymous.status_code == 400
    assert anonymous.json()["details"]["causes"][0]["field"] == "fieldManager"


def test_a_field_set_by_another_manager_is_a_conflict_unless_forced(api):
    with api.client() as client:
        assert _apply(client, "owned", site_doc("owned", replicas=2), "gitops").status_code == 201
        # The UI changes replicas: ownership of that field moves to the UI.
        assert (
            client.patch(
                f"{SITES}/owned?fieldManager=ui", json={"spec": {"replicas": 3}}, headers=MERGE
            ).status_code
            == 200
        )
        conflict = _apply(client, "owned", site_doc("owned", replicas=2), "gitops")
        assert conflict.status_code == 409
        causes = conflict.json()["details"]["causes"]
        assert causes == [
            {
                "reason": "FieldManagerConflict",
                "field": "spec.replicas",
                "message": 'conflict with "ui": spec.replicas',
            }
        ]
        assert client.get(f"{SITES}/owned").json()["spec"]["replicas"] == 3

        # The CLI applying a different field the UI does not own is no conflict, and the same value is
        # shared ownership, not a conflict.
        assert (
            _apply(client, "owned", site_doc("owned", replicas=3, purpose="activity"), "cli").status_code
            == 200
        )

        forced = _apply(client, "owned", site_doc("owned", replicas=2), "gitops", force=True)
        assert forced.status_code == 200 and forced.json()["spec"]["replicas"] == 2
        # Forced away from the UI and the CLI: now the UI's old value would conflict with GitOps.
        ui_apply = _apply(client, "owned", site_doc("owned", replicas=3), "ui")
        assert ui_apply.status_code == 409


def test_a_field_dropped_from_a_managers_configuration_is_removed(api):
    with api.client() as client:
        first = site_doc("dropping", type="dynamic", image="nginx:1", env={"A": "1", "B": "2"})
        assert _apply(client, "dropping", first, "cli").status_code == 201
        second = site_doc("dropping", type="dynamic", image="nginx:1", env={"A": "1"})
        applied = _apply(client, "dropping", second, "cli")
    assert applied.status_code == 200
    assert applied.json()["spec"]["env"] == {"A": "1"}


def test_apply_responses_never_show_the_ownership_bookkeeping(api):
    with api.client() as client:
        document = site_doc("quiet")
        document["metadata"]["annotations"] = {"director.io/managed-fields": "{}", "note": "kept"}
        response = _apply(client, "quiet", document, "cli")
    assert response.json()["metadata"]["annotations"] == {"note": "kept"}


def test_apply_dry_run_writes_nothing(api):
    with api.client() as client:
        assert _apply(client, "dryapply", site_doc("dryapply"), "cli").status_code == 201
        dry = client.patch(
            f"{SITES}/dryapply?fieldManager=cli&dryRun=All",
            content=yaml.safe_dump(site_doc("dryapply", replicas=3)),
            headers=APPLY,
        )
        assert dry.status_code == 200 and dry.json()["spec"]["replicas"] == 3
        assert client.get(f"{SITES}/dryapply").json()["spec"]["replicas"] == 1


def test_reapplying_the_same_configuration_writes_nothing(api, store):
    with api.client() as client:
        assert _apply(client, "steady", site_doc("steady", replicas=2), "gitops").status_code == 201
        version = store.get("steady").metadata.resource_version
        again = _apply(client, "steady", site_doc("steady", replicas=2), "gitops")
    assert again.status_code == 200
    assert again.json()["metadata"]["resourceVersion"] == version
    assert store.get("steady").metadata.resource_version == version
