"""Request bodies are read under the bounds Site files have: nesting depth and keys given twice."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.api.api_helpers import SITES, site_doc

JSON = {"Content-Type": "application/json"}
MERGE = {"Content-Type": "application/merge-patch+json"}
APPLY_JSON = {"Content-Type": "application/apply-patch+json"}
APPLY_YAML = {"Content-Type": "application/apply-patch+yaml"}
YAML = {"Content-Type": "application/yaml"}


def nested_json(levels: int) -> bytes:
    """A Site whose spec.env holds a value `levels` lists deep: each level costs the parser a recursion."""
    document = json.dumps(site_doc("deep", env={"X": "@"}))
    return document.replace('"@"', "[" * levels + "]" * levels).encode()


def refused(response, *words: str) -> str:
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize("levels", [900, 5_000, 100_000])
def test_a_deeply_nested_json_body_is_400_naming_the_limit_for_every_write(api, levels):
    body = nested_json(levels)
    with api.client("alice") as client:
        assert client.post(SITES, json=site_doc("deep")).status_code == 201
        answers = [
            client.post(SITES, content=body, headers=JSON),
            client.put(f"{SITES}/deep", content=body, headers=JSON),
            client.patch(f"{SITES}/deep", content=body, headers=MERGE),
            client.patch(f"{SITES}/deep?fieldManager=cli", content=body, headers=APPLY_JSON),
        ]
        for answer in answers:
            refused(answer, "nested more than 64 levels")
        # The server is whole and the site unchanged.
        assert client.get(f"{SITES}/deep").json()["spec"].get("env", {}) == {}


def test_nesting_up_to_the_limit_reaches_validation_and_one_more_level_does_not(api):
    with api.client("alice") as client:
        # 3 levels of Site (document, spec, env) + 61 lists = 64: read, then refused as a Site.
        at_limit = client.post(SITES, content=nested_json(61), headers=JSON)
        past_limit = client.post(SITES, content=nested_json(62), headers=JSON)
    assert at_limit.status_code == 422, at_limit.text
    refused(past_limit, "nested more than 64 levels")


def test_brackets_inside_json_strings_are_text_not_nesting(api):
    document = site_doc("brackets", env={"X": "[{" * 200 + '\\"' + "]}" * 200})
    with api.client("alice") as client:
        created = client.post(SITES, content=json.dumps(document).encode(), headers=JSON)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["env"]["X"] == document["spec"]["env"]["X"]


def test_a_deep_yaml_body_is_400_naming_the_limit(api):
    body = "apiVersion: director.io/v1\nkind: Site\nmetadata: {name: deep}\nspec: {env: {X: " + "[" * 900
    with api.client("alice") as client:
        refused(client.post(SITES, content=body, headers=YAML), "nested more than 64 levels")


def test_a_key_given_twice_in_a_json_body_is_refused_by_name(api):
    body = b'{"apiVersion": "director.io/v1", "kind": "Site", "metadata": {"name": "twice"},'
    body += b' "spec": {"owners": ["alice"], "replicas": 1, "replicas": 2}}'
    patch = b'{"spec": {"env": {"A": "1", "A": "2"}}}'
    with api.client("alice") as client:
        refused(client.post(SITES, content=body, headers=JSON), "'replicas' appears twice")
        assert client.get(f"{SITES}/twice").status_code == 404
        assert client.post(SITES, json=site_doc("twice")).status_code == 201
        refused(client.patch(f"{SITES}/twice", content=patch, headers=MERGE), "'A' appears twice")
        refused(
            client.patch(f"{SITES}/twice?fieldManager=cli", content=body, headers=APPLY_JSON),
            "'replicas' appears twice",
        )
        assert client.get(f"{SITES}/twice").json()["spec"].get("env", {}) == {}


def test_a_key_given_twice_in_a_yaml_body_is_refused_with_its_line(api):
    body = yaml.safe_dump(site_doc("twiceyaml"), sort_keys=False) + "metadata:\n  name: other\n"
    line = body.count("\n") - 1
    with api.client("alice") as client:
        refused(client.post(SITES, content=body, headers=YAML), "'metadata' appears twice", f"line {line}")
        refused(
            client.patch(f"{SITES}/twiceyaml?fieldManager=cli", content=body, headers=APPLY_YAML),
            "'metadata' appears twice",
            f"line {line}",
        )
        assert client.get(f"{SITES}/twiceyaml").status_code == 404
        assert client.get(f"{SITES}/other").status_code == 404


def test_the_site_service_refuses_deep_documents_however_they_came(api, store):
    """The web UI calls the service without parse_body: copying, merge patch and apply must still not
    recurse without bound."""
    from api.auth import Principal
    from api.errors import ApiError
    from api.sites import SiteService, WriteOptions

    deep: object = "leaf"
    for _ in range(5_000):
        deep = [deep]
    service = SiteService(store, Principal("alice", 0, is_admin=False))
    document = site_doc("servicedeep", env={"X": deep})
    for write in (
        lambda: service.create(document, WriteOptions()),
        lambda: service.merge_patch("servicedeep", {"spec": {"env": {"X": deep}}}, WriteOptions()),
        lambda: service.apply("servicedeep", document, WriteOptions(field_manager="cli")),
    ):
        with pytest.raises(ApiError) as refusal:
            write()
        assert refusal.value.code == 400 and "nested more than 64 levels" in refusal.value.message
