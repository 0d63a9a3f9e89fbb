"""The web UI in a real browser, without Swarm: signing in, who sees what, CSRF, text shown as text,
editing with conflicts, the YAML check at its line, files confined to the site, admin pages."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from swarm_helpers import free_tcp_port as free_port
from ui_helpers import PASSWORDS, UiServer, sign_in, start_ui_server

from reconcilers.files import SiteFiles
from specs.config import Settings
from specs.models import ObjectMeta, Site, SiteSpec
from store.events import EventLog
from store.records import SiteStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    settings = Settings(state_dir=tmp_path_factory.mktemp("ui-pages"), instance="uitest", http_port=18080)
    started = start_ui_server(settings, free_port())
    yield started
    started.stop()


@pytest.fixture(scope="module")
def store(server: UiServer) -> SiteStore:
    return SiteStore(server.settings.state_dir)


def make_site(store: SiteStore, server: UiServer, name: str, **spec: object) -> Site:
    """A site as the API would store it, with its directory as the files reconciler makes it."""
    site = store.create(
        Site(metadata=ObjectMeta(name=name, **spec.pop("meta", {})), spec=SiteSpec.model_validate(spec))
    )
    SiteFiles(server.settings)._converge(site)
    return site


def test_signed_out_visitors_get_the_login_page_and_failed_logins_wait(page: Page, server: UiServer):
    for path in ("/", "/sites/anything", "/admin/users", "/sites/anything/files"):
        page.goto(server.url + path)
        expect(page).to_have_url(re.compile(r"/login\?next="))
        expect(page.get_by_role("heading", name="Sign in to Director")).to_be_visible()
    # The API's throttle counts the UI's failed logins too: after the free failures, a wait.
    for attempt in range(6):
        page.goto(server.url + "/login")
        page.get_by_label("User name").fill("dave")
        page.get_by_label("Password").fill(f"wrong-{attempt}")
        page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-problem")).to_contain_text("too many failed logins")
    # Even the right password waits now, as at the API.
    page.get_by_label("Password").fill(PASSWORDS["dave"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-problem")).to_contain_text("try again in")


def test_a_user_sees_only_their_sites_and_admin_pages_are_not_theirs(page: Page, server: UiServer, store):
    make_site(store, server, "alice-own", owners=["alice"])
    make_site(store, server, "admins-own", owners=["admin"])
    sign_in(page, server, "alice")
    expect(page.get_by_role("link", name="alice-own", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="admins-own", exact=True)).to_have_count(0)
    for path in (
        "/sites/admins-own",
        "/sites/admins-own/edit",
        "/sites/admins-own/files",
        "/sites/admins-own/files/edit?path=public/index.html",
        "/sites/admins-own/history",
    ):
        response = page.goto(server.url + path)
        assert response is not None and response.status == 404, path
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    for path in ("/admin/users", "/admin/tokens", "/admin/platform", "/admin/availability"):
        response = page.goto(server.url + path)
        assert response is not None and response.status == 403, path
    # The files API answers a site one may not see as one that does not exist, too.
    with server.api("alice") as api:
        assert api.get("/apis/director.io/v1/sites/admins-own/files").status_code == 404
        assert api.get("/apis/director.io/v1/sites/alice-own/files").status_code == 200


def test_a_post_without_the_csrf_token_is_refused(page: Page, server: UiServer, store):
    make_site(store, server, "csrf-target", owners=["alice"])
    sign_in(page, server, "alice")
    before = store.get("csrf-target").metadata.resource_version
    response = page.request.post(f"{server.url}/sites/csrf-target/reconcile", form={"x": "1"})
    assert response.status == 403
    assert "security token" in response.text()
    assert store.get("csrf-target").metadata.resource_version == before
    # The same button on the page carries its token and works.
    page.goto(f"{server.url}/sites/csrf-target")
    page.get_by_role("button", name="Reconcile now").click()
    expect(page.get_by_role("status")).to_contain_text("Reconcile requested")


def test_text_a_user_controls_is_shown_as_text(page: Page, server: UiServer, store):
    hostile = "<script>window.pwned = 1</script><img src=x onerror=window.pwned=2>"
    site = make_site(store, server, "hostile", owners=["alice"], meta={"annotations": {"note": hostile}})
    EventLog(server.settings.events_db).record(
        site="hostile",
        uid=site.metadata.uid,
        generation=1,
        reconcile_id="r1",
        trigger="test",
        step="files",
        result="failed",
        duration_seconds=0.1,
        message=hostile,
    )
    public = server.settings.sites_dir / "hostile" / "public"
    (public / "<script>alert(1)<script>.html").write_text("x")
    sign_in(page, server, "alice")
    page.goto(f"{server.url}/sites/hostile")
    expect(page.locator("#annotations")).to_contain_text(hostile)
    expect(page.locator("#timeline")).to_contain_text(hostile)
    page.goto(f"{server.url}/sites/hostile/files")
    expect(page.get_by_role("link", name="<script>alert(1)<script>.html")).to_be_visible()
    assert page.evaluate("window.pwned") is None


def test_paths_out_of_the_site_and_links_are_refused(page: Page, server: UiServer, store):
    make_site(store, server, "confined", owners=["alice"])
    os.symlink("/etc", server.settings.sites_dir / "confined" / "public" / "etc")
    sign_in(page, server, "alice")
    for path, words in (
        ("../../etc/passwd", "give a path inside the site"),
        ("/etc/passwd", "is absolute"),
        ("public/etc/passwd", "symbolic link"),
        ("public/etc", "symbolic link"),
    ):
        page.goto(f"{server.url}/sites/confined/files/edit?path={path}")
        expect(page.locator("#file-problem")).to_contain_text(words)
    # Writing through the link is refused as well, and nothing lands in /etc.
    page.goto(f"{server.url}/sites/confined/files")
    # The tree offers no folder behind a link; a hand-made request naming one is refused all the same.
    page.locator("#new-file-folder").evaluate(
        "select => select.add(new Option('public/etc', 'public/etc', true, true))"
    )
    page.locator("#new-file-name").fill("director-was-here")
    page.get_by_role("button", name="Create and edit").click()
    expect(page.locator("#file-problem")).to_contain_text("symbolic link")
    assert not Path("/etc/director-was-here").exists()
    with server.api("alice") as api:
        traversal = api.get("/apis/director.io/v1/sites/confined/files/public/etc/passwd")
        assert traversal.status_code == 403 and "symbolic link" in traversal.json()["message"]


def test_files_upload_limit_rename_delete_and_the_executable_bit(
    page: Page, server: UiServer, store, tmp_path
):
    make_site(
        store,
        server,
        "filed",
        owners=["alice"],
        type="dynamic",
        image="director-local/site:latest",
        resources={"uploadLimit": "4Ki"},
    )
    site_dir = server.settings.sites_dir / "filed"
    uid = site_dir.stat().st_uid
    first, second, big = tmp_path / "one.txt", tmp_path / "two.css", tmp_path / "big.bin"
    first.write_text("one")
    second.write_text("body { color: red }")
    big.write_bytes(b"x" * 5000)
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, server, "alice")
    page.goto(f"{server.url}/sites/filed/files")
    page.get_by_label("Files (several at once; or drop them here)").set_input_files([first, second])
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_contain_text("uploaded public/one.txt, public/two.css")
    for name in ("one.txt", "two.css"):
        written = (site_dir / "public" / name).stat()
        assert (written.st_uid, written.st_gid) == (uid, 33)
    page.get_by_label("Files (several at once; or drop them here)").set_input_files([big])
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#file-problem")).to_contain_text("takes uploads of at most 4.0 KiB")
    assert not (site_dir / "public" / "big.bin").exists()

    row = page.locator('tr[data-path="public/one.txt"]')
    row.get_by_label("New name for public/one.txt").fill("renamed.txt")
    row.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("status")).to_contain_text("renamed public/one.txt to public/renamed.txt")
    assert (site_dir / "public" / "renamed.txt").read_text() == "one"
    page.get_by_role("button", name="Delete public/two.css").click()
    expect(page.get_by_role("status")).to_contain_text("deleted public/two.css")
    assert not (site_dir / "public" / "two.css").exists()

    run_sh = site_dir / "run.sh"
    run_sh.chmod(0o660)
    page.reload()
    page.get_by_role("button", name="Make run.sh executable").click()
    expect(page.get_by_role("status")).to_contain_text("run.sh is now executable")
    assert stat.S_IMODE(run_sh.stat().st_mode) & 0o100


def test_two_sessions_edit_one_site_and_the_second_sees_the_conflict(
    browser: Browser, server: UiServer, store
):
    make_site(store, server, "shared", owners=["alice", "bob"])
    first, second = browser.new_page(), browser.new_page()
    try:
        sign_in(first, server, "alice")
        sign_in(second, server, "bob")
        for page in (first, second):
            page.goto(f"{server.url}/sites/shared/edit")
        first.get_by_label("Environment").fill("GREETING=hello")
        first.get_by_role("button", name="Save").click()
        expect(first.get_by_role("status")).to_contain_text("Saved")

        second.get_by_label("Custom domains").fill("shared.example.org")
        second.get_by_role("button", name="Save").click()
        conflict = second.locator("#conflict")
        expect(conflict).to_contain_text("Someone else changed this site")
        expect(conflict).to_contain_text("alice")
        expect(conflict).to_contain_text("Environment")
        # Nothing is lost: theirs and mine are both in the form; saving again keeps both.
        expect(second.get_by_label("Custom domains")).to_have_value("shared.example.org")
        expect(second.get_by_label("Environment")).to_have_value("GREETING=hello")
        second.get_by_role("button", name="Save").click()
        expect(second.get_by_role("status")).to_contain_text("Saved")
    finally:
        first.close()
        second.close()
    saved = store.get("shared").spec
    assert saved.env == {"GREETING": "hello"} and saved.domains == ["shared.example.org"]


def test_a_field_another_manager_set_takes_a_deliberate_click(page: Page, server: UiServer, store):
    make_site(store, server, "managed", owners=["alice"])
    with server.api("alice") as api:
        applied = api.patch(
            "/apis/director.io/v1/sites/managed?fieldManager=cli",
            content="metadata: {name: managed}\nspec: {owners: [alice], purpose: activity}\n",
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        assert applied.status_code == 200, applied.text
    sign_in(page, server, "alice")
    page.goto(f"{server.url}/sites/managed/edit")
    expect(page.locator("#notes-purpose")).to_contain_text("Set by cli")
    page.get_by_label("Purpose").select_option("other")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#conflict")).to_contain_text('conflict with "cli"')
    assert store.get("managed").spec.purpose == "activity"
    page.get_by_role("button", name="Take over these fields and save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    assert store.get("managed").spec.purpose == "other"


def test_the_yaml_editor_shows_an_error_at_its_line_before_saving(page: Page, server: UiServer, store):
    make_site(store, server, "holder", owners=["admin"], domains=["held.example.org"])
    sign_in(page, server, "alice")
    page.goto(f"{server.url}/create/yaml")
    editor = page.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(
        "apiVersion: director.io/v1\nkind: Site\nmetadata:\n  name: typed\nspec:\n  owners: [alice]\n"
        "  domains:\n  - good.example.org\n  - bad_domain\n"
    )
    errors = page.locator("#yaml-errors")
    expect(errors).to_contain_text("line 9")
    expect(errors).to_contain_text(
        "spec.domains[1] (line 9, column 5): 'bad_domain' must be a lower-case host name"
    )
    expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
    # A domain another site holds is the server's to say: its line too.
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(
        "apiVersion: director.io/v1\nkind: Site\nmetadata:\n  name: typed\nspec:\n  owners: [alice]\n"
        "  domains:\n  - good.example.org\n  - held.example.org\n"
    )
    expect(errors).to_contain_text("line 9")
    expect(errors).to_contain_text("already served by site 'holder'")
    assert not store.spec_path("typed").exists()


def test_admins_manage_users(page: Page, server: UiServer):
    sign_in(page, server, "admin")
    page.goto(f"{server.url}/admin/users")
    page.get_by_label("User name").fill("carol")
    page.get_by_role("button", name="Create user").click()
    shown = page.locator("#shown-password")
    expect(shown).to_contain_text("The password of carol is")
    password = shown.locator("code").inner_text()
    row = page.locator('tr[data-user="carol"]')
    row.get_by_role("button", name="Make admin").click()
    expect(page.locator('tr[data-user="carol"]')).to_contain_text("administrator")
    page.locator('tr[data-user="carol"]').get_by_role("button", name="Disable").click()
    expect(page.locator('tr[data-user="carol"]')).to_contain_text("disabled")

    other = page.context.browser.new_page()
    try:
        other.goto(f"{server.url}/login")
        other.get_by_label("User name").fill("carol")
        other.get_by_label("Password").fill(password)
        other.get_by_role("button", name="Sign in").click()
        expect(other.locator("#login-problem")).to_contain_text("wrong")
    finally:
        other.close()
    page.locator('tr[data-user="carol"]').get_by_role("button", name="Enable").click()
    page.get_by_role("button", name="Reset the password of carol").click()
    expect(page.locator("#shown-password")).to_contain_text("The password of carol is")
    assert page.locator("#shown-password code").inner_text() != password


def test_history_goes_back_to_a_generation_and_delete_asks_for_the_name(page: Page, server: UiServer, store):
    make_site(store, server, "versions", owners=["alice"])
    sign_in(page, server, "alice")
    page.goto(f"{server.url}/sites/versions/edit")
    page.get_by_label("Purpose").select_option("activity")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    assert store.get("versions").metadata.generation == 2
    page.get_by_role("link", name="History").click()
    page.get_by_role("button", name="Go back to generation 1").click()
    expect(page.get_by_role("status")).to_contain_text("Went back")
    restored = store.get("versions")
    assert restored.spec.purpose == "project" and restored.metadata.generation == 3

    page.get_by_role("link", name="Delete").click()
    page.get_by_label("Type versions to confirm").fill("version")
    page.get_by_role("button", name="Delete this site").click()
    expect(page.get_by_role("alert")).to_contain_text('Type the site\'s name, "versions"')
    assert store.spec_path("versions").exists()
    page.get_by_label("Type versions to confirm").fill("versions")
    page.get_by_role("button", name="Delete this site").click()
    expect(page.get_by_role("status")).to_contain_text("Site versions is being deleted")
    assert not store.spec_path("versions").exists()


def test_a_person_changes_their_password(page: Page, server: UiServer):
    sign_in(page, server, "bob")
    page.goto(f"{server.url}/account/password")
    page.get_by_label("Current password").fill("not-it")
    page.get_by_label("New password (at least 8 characters)").fill("bob-new-password")
    page.get_by_label("New password again").fill("bob-new-password")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_contain_text("the current password is wrong")
    page.get_by_label("Current password").fill(PASSWORDS["bob"])
    page.get_by_label("New password (at least 8 characters)").fill("bob-new-password")
    page.get_by_label("New password again").fill("bob-new-password")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is changed")
    # Still signed in here; change it back for the other tests of this module.
    page.get_by_label("Current password").fill("bob-new-password")
    page.get_by_label("New password (at least 8 characters)").fill(PASSWORDS["bob"])
    page.get_by_label("New password again").fill(PASSWORDS["bob"])
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is changed")


def test_a_process_limit_above_the_users_ceiling_is_shown_at_its_field(page: Page, server: UiServer, store):
    make_site(store, server, "forky", owners=["alice"])
    sign_in(page, server, "alice")
    page.goto(f"{server.url}/sites/forky/edit")
    expect(page.get_by_label("Processes")).to_have_value("256")
    page.get_by_label("Processes").fill("5000")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#notes-pids")).to_contain_text("only an admin")
    assert store.get("forky").spec.resources.pids == 256
    page.get_by_label("Processes").fill("64")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    assert store.get("forky").spec.resources.pids == 64
    page.goto(f"{server.url}/sites/forky")
    expect(page.get_by_text("64 processes")).to_be_visible()
