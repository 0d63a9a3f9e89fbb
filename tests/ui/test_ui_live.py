"""The web UI in a real browser against the real controller, Swarm and edge: a site created with the form
turns Ready on its page without a reload and is served; a dynamic site made in the YAML editor shows its
process's log; a saved file is served by the edge at once; the timeline shows an apply as it happens; the
platform page names the controller. The screenshots in the README are taken here."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
from docker_cleanup import INSTANCE_LABEL, remove_labelled
from playwright.sync_api import Page, expect
from swarm_helpers import ControllerProcess, eventually, free_tcp_port, get, host_of, serves
from ui_helpers import UiServer, screenshot, sign_in, start_ui_server

from specs.config import Settings
from store.records import SiteStore

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

LOCAL_IMAGE = "director-local/site:latest"
EDGE_START_SECONDS = 90
READY_MS = 120_000


@pytest.fixture(scope="module")
def stack(
    test_run, base_image: str, swarm: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[UiServer, ControllerProcess]]:
    instance = test_run.new_instance()
    settings = Settings(
        instance=instance,
        state_dir=tmp_path_factory.mktemp(instance),
        http_port=free_tcp_port(),
        edge_image=base_image,
        site_image=base_image,
    )
    controller = ControllerProcess(settings, settings.state_dir.parent / f"{instance}-controller.log")
    server = start_ui_server(settings, free_tcp_port())
    controller.start()
    try:
        eventually(
            lambda: get(settings, "nobody.example.org")[0] == 404,
            EDGE_START_SECONDS,
            "the edge to answer",
            controller,
        )
        yield server, controller
    finally:
        server.stop()
        controller.stop()
        remove_labelled(swarm, f"{INSTANCE_LABEL}={instance}")


def test_a_site_made_with_the_form_turns_ready_live_and_is_served(page: Page, stack):
    server, controller = stack
    sign_in(page, server, "alice")
    page.goto(f"{server.url}/create")
    page.locator("#id_name").fill("formed")
    page.get_by_role("button", name="Create site").click()
    expect(page.get_by_role("status")).to_contain_text("Site created")
    # No reload: the page's one stream turns the dot green and the words to Ready.
    dot = page.locator('[data-dot="formed"]')
    expect(dot).to_have_attribute("data-ready", "True", timeout=READY_MS)
    expect(page.locator('[data-word="formed"]')).to_have_text("Ready")
    eventually(
        lambda: serves(server.settings, host_of(server.settings, "formed"), 200, "<h1>formed</h1>"),
        60,
        "the edge to serve the new site",
        controller,
    )
    # The timeline shows an apply's events as they happen: an apply from elsewhere (dirctl's way), and its
    # events arrive on the open page without a reload.
    expect(page.locator("#timeline")).to_contain_text("files.directories")
    before = page.locator("#timeline li.event").count()
    with server.api("alice") as api:
        applied = api.patch(
            "/apis/director.io/v1/sites/formed?fieldManager=cli",
            content="metadata: {name: formed}\nspec: {owners: [alice], env: {COLOUR: blue}}\n",
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        assert applied.status_code == 200, applied.text
    expect(page.locator("#timeline li.event").nth(before)).to_be_attached(timeout=READY_MS)
    page.get_by_role("button", name="Reconcile now").click()
    expect(page.get_by_role("status")).to_contain_text("Reconcile requested")
    screenshot(page, "site")
    page.goto(server.url + "/")
    expect(page.locator('[data-dot="formed"]')).to_have_attribute("data-ready", "True")
    screenshot(page, "sites")


def test_a_saved_file_is_served_by_the_edge_at_once(page: Page, stack):
    server, controller = stack
    store = SiteStore(server.settings.state_dir)
    sign_in(page, server, "alice")
    page.goto(f"{server.url}/create")
    page.locator("#id_name").fill("edited")
    page.get_by_role("button", name="Create site").click()
    expect(page.locator('[data-dot="edited"]')).to_have_attribute("data-ready", "True", timeout=READY_MS)
    page.goto(f"{server.url}/sites/edited/files")
    page.get_by_role("link", name="index.html").click()
    editor = page.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("<!doctype html>\n<h1>Edited in the browser</h1>\n")
    screenshot(page, "file-editor")
    page.keyboard.press("Control+s")
    expect(page.locator("#saved")).to_contain_text("saved public/index.html")
    eventually(
        lambda: serves(server.settings, host_of(server.settings, "edited"), 200, "Edited in the browser"),
        30,
        "the edge to serve the saved file",
        controller,
    )
    assert store.get("edited").spec.type == "static"


def test_a_dynamic_site_from_yaml_shows_its_process_log(page: Page, stack):
    server, controller = stack
    sign_in(page, server, "alice")
    page.goto(f"{server.url}/create/yaml")
    page.locator(".cm-content").click()
    command = (
        '["sh", "-c", "echo hello-from-the-process; exec python3 -m http.server \\"$PORT\\" '
        '--bind \\"$HOST\\" --directory /site/public"]'
    )
    document = (
        "apiVersion: director.io/v1\nkind: Site\nmetadata:\n  name: talker\nspec:\n  type: dynamic\n"
        f"  owners: [alice]\n  image: {LOCAL_IMAGE}\n  command: {command}\n  domains: [not_a_domain]\n"
    )
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(document)
    expect(page.locator("#yaml-errors")).to_contain_text("line 10")
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(document.replace("  domains: [not_a_domain]\n", ""))
    expect(page.locator("#yaml-ok")).to_be_visible()
    page.get_by_role("button", name="Create site").click()
    expect(page.locator('[data-dot="talker"]')).to_have_attribute("data-ready", "True", timeout=READY_MS)
    expect(page.locator("#process-log")).to_contain_text("hello-from-the-process", timeout=READY_MS)
    eventually(
        lambda: serves(server.settings, host_of(server.settings, "talker"), 200),
        60,
        "the edge to serve the dynamic site",
        controller,
    )
    # Restart: a rolling restart, asked through the page, reaches the service's task template.
    page.get_by_role("button", name="Restart").click()
    expect(page.get_by_role("status")).to_contain_text("Rolling restart requested")
    service = server.settings.service_name("talker")

    def restarted() -> bool:
        spec = docker.from_env().api.inspect_service(service)["Spec"]
        return "io.director.restart-requested-at" in spec["TaskTemplate"]["ContainerSpec"].get("Labels", {})

    eventually(restarted, 60, "the restart to reach the service", controller)


def test_the_platform_page_names_the_controller_and_the_edge(page: Page, stack):
    server, controller = stack
    sign_in(page, server, "admin")
    page.goto(f"{server.url}/admin/platform")
    assert controller.process is not None
    expect(page.locator("#leader")).to_contain_text(f"pid {controller.process.pid}")
    # The controller reports its last resync at the end of each one: reload until it has.

    def resync_reported() -> bool:
        page.reload()
        return "none reported yet" not in page.locator("#resync").inner_text()

    eventually(resync_reported, 90, "the controller to report a resync", controller, poll=1.0)
    expect(page.locator("#resync")).to_contain_text("Queue depth: ")
    expect(page.locator("#resync")).not_to_contain_text("none reported yet")
    expect(page.locator("#edge-tasks")).to_contain_text("running")
