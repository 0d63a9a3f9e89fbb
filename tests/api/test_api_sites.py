from __future__ import annotations

import threading

import yaml

from tests.api.api_helpers import SITES, site_doc


def test_discovery_documents_name_the_group_and_its_resources(api):
    with api.client() as client:
        groups = client.get("/apis").json()
        resources = client.get("/apis/director.io/v1").json()
    assert groups["groups"][0]["preferredVersion"]["groupVersion"] == "director.io/v1"
    names = {resource["name"] for resource in resources["resources"]}
    assert {"sites", "sites/status", "sites/events", "sites/logs"} <= names


def test_create_get_list_replace_delete(api):
    with api.client() as client:
        created = client.post(SITES, json=site_doc("alpha", domains=["alpha.example.org"]))
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["metadata"]["generation"] == 1 and body["metadata"]["uid"]
        assert client.get(f"{SITES}/alpha").json()["spec"]["domains"] == ["alpha.example.org"]
        assert [item["metadata"]["name"] for item in client.get(SITES).json()["items"]] == ["alpha"]

        replacement = body | {"spec": body["spec"] | {"replicas": 2}}
        replaced = client.put(f"{SITES}/alpha", json=replacement)
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["metadata"]["generation"] == 2

        stale = client.put(f"{SITES}/alpha", json=replacement)
        assert stale.status_code == 409
        assert stale.json()["reason"] == "Conflict" and "modified" in stale.json()["message"]

        deleted = client.delete(f"{SITES}/alpha")
        assert deleted.status_code == 200 and deleted.json()["status"] == "Success"
        assert client.get(f"{SITES}/alpha").status_code == 404


def test_creating_an_existing_name_is_a_409(api):
    with api.client() as client:
        assert client.post(SITES, json=site_doc("twice")).status_code == 201
        again = client.post(SITES, json=site_doc("twice", replicas=3))
    assert again.status_code == 409
    assert again.json()["reason"] == "AlreadyExists"


def test_invalid_writes_are_refused_with_field_causes_and_change_nothing(api, store):
    with api.client() as client:
        refused = client.post(SITES, json=site_doc("broken", type="dynamic", domains=["Not A Host"]))
        assert refused.status_code == 422
        status = refused.json()
        assert status["kind"] == "Status" and status["code"] == 422
        fields = {cause["field"] for cause in status["details"]["causes"]}
        assert fields == {"spec.domains[0]"}
        assert client.get(f"{SITES}/broken").status_code == 404

        assert client.post(SITES, json=site_doc("keep")).status_code == 201
        before = store.get("keep").metadata.resource_version
        patched = client.patch(
            f"{SITES}/keep",
            json={"spec": {"resources": {"memory": "1Ki"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert patched.status_code == 422
        assert patched.json()["details"]["causes"][0]["field"] == "spec.resources.memory"
    assert store.get("keep").metadata.resource_version == before


def test_dry_run_validates_and_writes_nothing(api, store):
    with api.client() as client:
        dry = client.post(f"{SITES}?dryRun=All", json=site_doc("dry"))
        assert dry.status_code == 201 and dry.json()["metadata"]["name"] == "dry"
        assert client.get(f"{SITES}/dry").status_code == 404
        assert client.post(f"{SITES}?dryRun=All", json=site_doc("dry", replicas=99)).status_code == 422

        client.post(SITES, json=site_doc("dry"))
        version = store.get("dry").metadata.resource_version
        patched = client.patch(
            f"{SITES}/dry?dryRun=All",
            json={"spec": {"replicas": 2}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert patched.json()["spec"]["replicas"] == 2 and patched.json()["metadata"]["generation"] == 2
        assert client.delete(f"{SITES}/dry?dryRun=All").status_code == 200
        assert store.get("dry").metadata.resource_version == version
        assert store.get("dry").spec.replicas == 1


def test_yaml_in_and_yaml_out(api):
    body = yaml.safe_dump(site_doc("yamlsite", purpose="activity"))
    with api.client() as client:
        created = client.post(SITES, content=body, headers={"Content-Type": "application/yaml"})
        assert created.status_code == 201, created.text
        shown = client.get(f"{SITES}/yamlsite", headers={"Accept": "application/yaml"})
    assert shown.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(shown.text)["spec"]["purpose"] == "activity"


def test_yaml_aliases_and_bad_bodies_are_400_status_objects(api):
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nmetadata: {name: bomb}\n"
    with api.client() as client:
        alias = client.post(SITES, content=bomb, headers={"Content-Type": "application/yaml"})
        broken = client.post(SITES, content=b"{not json", headers={"Content-Type": "application/json"})
        unsupported = client.post(SITES, content=b"x", headers={"Content-Type": "text/html"})
        wrong_method = client.request("PATCH", SITES)
        unknown = client.get("/apis/director.io/v1/widgets")
    assert (alias.status_code, broken.status_code, unsupported.status_code) == (400, 400, 415)
    assert "aliases" in alias.json()["message"]
    assert wrong_method.status_code == 405 and unknown.status_code == 404
    for response in (alias, broken, unsupported, wrong_method, unknown):
        assert response.headers["content-type"] == "application/json"
        assert response.json()["kind"] == "Status"


def test_label_selector_filters_and_a_bad_one_is_400(api):
    with api.client() as client:
        for name, tier in (("web-a", "web"), ("web-b", "web"), ("db-a", "db")):
            document = site_doc(name)
            document["metadata"]["labels"] = {"tier": tier, **({"canary": "yes"} if name == "web-b" else {})}
            assert client.post(SITES, json=document).status_code == 201

        def names(selector: str) -> list[str]:
            response = client.get(SITES, params={"labelSelector": selector})
            assert response.status_code == 200, response.text
            return [item["metadata"]["name"] for item in response.json()["items"]]

        assert names("tier=web") == ["web-a", "web-b"]
        assert names("tier in (db),!canary") == ["db-a"]
        assert names("tier!=db,canary") == ["web-b"]
        bad = client.get(SITES, params={"labelSelector": "tier in ()"})
    assert bad.status_code == 400 and bad.json()["details"]["causes"][0]["field"] == "labelSelector"


def test_merge_patch_and_status_and_history(api, store):
    from datetime import UTC, datetime

    from specs.models import Condition, SiteStatus

    with api.client() as client:
        client.post(SITES, json=site_doc("hist"))
        for replicas in (2, 3):
            client.patch(
                f"{SITES}/hist",
                json={"spec": {"replicas": replicas}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        store.update_status(
            "hist",
            SiteStatus(
                observed_generation=3,
                conditions=[
                    Condition(
                        type="Ready", status="True", reason="Serving", last_transition_time=datetime.now(UTC)
                    )
                ],
            ),
        )
        status = client.get(f"{SITES}/hist/status").json()
        history = client.get(f"{SITES}/hist/history").json()["items"]
    assert status["status"]["conditions"][0]["reason"] == "Serving"
    assert [item["metadata"]["generation"] for item in history] == [2, 1]
    assert [item["spec"]["replicas"] for item in history] == [2, 1]


def test_every_write_is_recorded_with_its_field_manager_and_generation(api):
    from api.models import WriteRecord

    with api.client("alice") as client:
        client.post(f"{SITES}?fieldManager=ui", json=site_doc("audited"))
        client.patch(
            f"{SITES}/audited?fieldManager=cli",
            json={"spec": {"replicas": 2}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        client.delete(f"{SITES}/audited?fieldManager=cli")
    records = list(WriteRecord.objects.filter(site="audited").order_by("id"))
    assert [(r.username, r.operation, r.field_manager, r.generation) for r in records] == [
        ("alice", "create", "ui", 1),
        ("alice", "patch", "cli", 2),
        ("alice", "delete", "cli", None),
    ]


def test_two_writers_racing_on_one_site_lose_no_update(api, store):
    with api.client() as client:
        client.post(SITES, json=site_doc("race"))
    errors: list[str] = []

    def writer(prefix: str) -> None:
        with api.client() as client:
            for index in range(15):
                response = client.patch(
                    f"{SITES}/race",
                    json={"metadata": {"labels": {f"{prefix}{index}": "x"}}},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                if response.status_code != 200:
                    errors.append(response.text)

    threads = [threading.Thread(target=writer, args=(prefix,)) for prefix in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    labels = store.get("race").metadata.labels
    assert len(labels) == 30


def test_two_racing_replaces_with_the_same_resource_version_one_wins_one_gets_409(api):
    with api.client() as client:
        document = client.post(SITES, json=site_doc("cas")).json()
    results: list[int] = []

    def replace(replicas: int) -> None:
        with api.client() as client:
            body = document | {"spec": document["spec"] | {"replicas": replicas}}
            results.append(client.put(f"{SITES}/cas", json=body).status_code)

    threads = [threading.Thread(target=replace, args=(n,)) for n in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 409]


def test_a_hand_broken_record_is_a_clear_error_and_does_not_break_the_list(api, store):
    with api.client() as client:
        client.post(SITES, json=site_doc("healthy"))
        client.post(SITES, json=site_doc("broken-by-hand"))
        record = store.specs_dir / "broken-by-hand.yaml"
        record.write_text(record.read_text().replace("replicas: 1", "replicas: many"))
        shown = client.get(f"{SITES}/broken-by-hand")
        listed = client.get(SITES)
    assert shown.status_code == 500 and shown.json()["reason"] == "InvalidRecord"
    assert "broken-by-hand.yaml" in shown.json()["message"] and "replicas" in shown.json()["message"]
    assert [item["metadata"]["name"] for item in listed.json()["items"]] == ["healthy"]
    record.unlink()


def test_a_status_written_since_the_read_does_not_make_a_write_stale(api, store):
    """The store's rule, kept by the API: only a spec write since the caller's read is a conflict."""
    from specs.models import SiteStatus

    with api.client() as client:
        body = client.post(SITES, json=site_doc("steady")).json()
        store.update_status("steady", SiteStatus(observed_generation=1))
        replaced = client.put(f"{SITES}/steady", json=body | {"spec": body["spec"] | {"replicas": 2}})
        assert replaced.status_code == 200, replaced.text
        again = client.put(f"{SITES}/steady", json=body | {"spec": body["spec"] | {"replicas": 3}})
        assert again.status_code == 409 and "modified" in again.json()["message"]
