"""The sync reconciler with the real git binary against a live API: remotes over file://, git:// (git daemon)
and http with basic auth (Nginx + git-http-backend), on loopback.

Each test drives GitSync's reconcile as the controller would, writes its status part back as the runtime
does, and reads the sites from the record store the API writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import httpx
import pytest
from git_servers import GitDaemon, HttpGitServer, Repo, site_yaml

from controller.types import Outcome, ReconcileContext
from reconcilers.director_api import DirectorApi
from reconcilers.git import Git
from reconcilers.gitsource import GitSync
from specs.gitsource import GITSOURCE_LABEL, GitSourceStatus
from store.records import GitSourceStore, NotFound, SiteStore
from tests.api.api_helpers import SITES, site_doc

SOURCES = "/apis/director.io/v1/gitsources"
SECRETS = "/apis/director.io/v1/secrets"
APPLY = {"Content-Type": "application/apply-patch+yaml"}


class StaticCredential:
    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self, *, renew: bool = False) -> str:
        return self._token


class Harness:
    """GitSync over the live API's state directory, reconciling on demand."""

    def __init__(self, api, token: str, workdir: Path) -> None:
        self.api = api
        self.sites = SiteStore(api.state_dir)
        self.sources = GitSourceStore(api.state_dir)
        self.client = DirectorApi(api.url, StaticCredential(token), ca_file=api.ca_file)
        self.sync = GitSync(
            api=self.client, git=Git(workdir), sites=self.sites, sources=self.sources, workdir=workdir
        )

    def source(self, name: str, url: str, *, who: str = "admin", **spec) -> None:
        document = {
            "apiVersion": "director.io/v1",
            "kind": "GitSource",
            "metadata": {"name": name},
            "spec": {"url": url, "interval": "5s", **spec},
        }
        with self.api.client(who) as client:
            answer = client.patch(
                f"{SOURCES}/{name}",
                params={"fieldManager": "cli"},
                content=json.dumps(document),
                headers=APPLY,
            )
            assert answer.status_code in (200, 201), answer.text

    async def reconcile(self, name: str, trigger: str = "poll: routine recheck") -> Outcome:
        source = self.sources.get(name)
        ctx = ReconcileContext(reconcile_id="test", trigger=trigger, deadline=time.monotonic() + 60)
        outcome = await self.sync.reconcile(source, ctx)
        if outcome.status is not None:
            self.sources.update_status(name, GitSourceStatus(sync=outcome.status))
        return outcome

    def site(self, name: str):
        try:
            return self.sites.get(name)
        except NotFound:
            return None

    def ours(self, source: str) -> list[str]:
        return sorted(
            s.name for s in self.sites.list()[0] if s.metadata.labels.get(GITSOURCE_LABEL) == source
        )


@pytest.fixture(autouse=True)
def _orm_in_async_tests(monkeypatch):
    # These tests arrange users and secrets with the ORM from coroutines; nothing else runs meanwhile.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="module")
def controller_token(api) -> str:
    from django.contrib.auth.models import User

    from api.auth import CONTROLLER_SCOPE, CONTROLLER_USER, issue_token

    user, _ = User.objects.get_or_create(username=CONTROLLER_USER)
    User.objects.get_or_create(username="carol")
    return issue_token(user, "controller", scope=CONTROLLER_SCOPE)[1]


@pytest.fixture
async def harness(api, controller_token, tmp_path):
    made = Harness(api, controller_token, tmp_path / "gitsources")
    yield made
    await made.client.close()
    from api.models import Secret

    for source in made.sources.list()[0]:
        for finalizer in source.metadata.finalizers:
            made.sources.remove_finalizer(source.name, finalizer)
        with contextlib.suppress(NotFound):
            made.sources.delete(source.name)
    Secret.objects.all().delete()


@pytest.fixture
def remotes(tmp_path) -> Path:
    root = tmp_path / "remotes"
    root.mkdir()
    return root


def _refused_text(outcome: Outcome) -> str:
    assert outcome.status is not None
    return "\n".join(
        f"{r.file}:{r.document}:{r.field}:{r.line}:{r.column}: {r.message}" for r in outcome.status.refused
    )


async def test_two_sites_applied_an_edit_applied_a_removal_pruned_and_nothing_of_others_touched(
    harness, remotes, api
):
    with api.client("alice") as alice:
        assert alice.post(SITES, json=site_doc("handmade")).status_code == 201
    other = Repo(remotes, "other")
    other.write("theirs.yaml", site_yaml("theirs", owners="[alice]"))
    other.commit("another source's site")
    harness.source("other", other.file_url, applyAs="alice")
    assert (await harness.reconcile("other")).ready
    untouched = {name: harness.site(name).metadata.resource_version for name in ("handmade", "theirs")}

    repo = Repo(remotes, "club")
    repo.write("sites/one.yaml", site_yaml("gone-one", owners="[alice]"))
    repo.write("sites/two.yaml", site_yaml("gone-two", owners="[alice]"))
    repo.write("README.md", "not a document\n")
    first = repo.commit("two sites")
    harness.source("club", repo.file_url, path="sites/", prune=True, applyAs="alice")
    outcome = await harness.reconcile("club")
    assert outcome.ready, outcome.message
    assert outcome.reason == "Applied"
    assert harness.ours("club") == ["gone-one", "gone-two"]
    assert harness.site("gone-one").spec.owners == ["alice"]
    assert outcome.status.applied_revision == first
    assert outcome.status.inventory == ["gone-one", "gone-two"]

    repo.write("sites/one.yaml", site_yaml("gone-one", owners="[alice]", purpose="activity"))
    edited = repo.commit("edit one")
    outcome = await harness.reconcile("club")
    assert outcome.ready and outcome.status.applied_revision == edited
    assert harness.site("gone-one").spec.purpose == "activity"
    assert harness.site("gone-one").metadata.generation == 2
    assert harness.site("gone-two").metadata.generation == 1, "an unchanged document is not written again"

    repo.remove("sites/two.yaml")
    repo.commit("remove two")
    outcome = await harness.reconcile("club")
    assert outcome.ready
    assert any(step.step == "prune" and "gone-two" in step.message for step in outcome.steps)
    assert (
        harness.site("gone-two") is None or harness.site("gone-two").metadata.deletion_timestamp is not None
    )
    assert outcome.status.inventory == ["gone-one"]

    # Documents for sites made by dirctl and by another source: refused, never taken over.
    repo.write("sites/handmade.yaml", site_yaml("handmade", owners="[alice]", purpose="other"))
    repo.write("sites/theirs.yaml", site_yaml("theirs", owners="[alice]", purpose="other"))
    repo.commit("try to take over")
    outcome = await harness.reconcile("club")
    assert not outcome.ready
    assert outcome.reason == "DocumentsRefused"
    text = _refused_text(outcome)
    assert "sites/handmade.yaml:1:" in text and "never takes over" in text
    assert 'gitsource "other"' in text
    assert [r.line for r in outcome.status.refused] == [4, 4]
    for name, version in untouched.items():
        assert harness.site(name).metadata.resource_version == version, f"{name} was touched"
    assert [entry.result for entry in outcome.status.history][:3] == ["partial", "applied", "applied"]


async def test_an_invalid_document_is_reported_the_others_applied_nothing_pruned_and_a_fix_applies_at_once(
    harness, remotes
):
    daemon = GitDaemon(remotes).start()
    try:
        repo = Repo(remotes, "daemon")
        repo.write("a.yaml", site_yaml("inv-a", owners="[alice]"))
        repo.write("b.yaml", site_yaml("inv-b", owners="[alice]"))
        repo.commit("two")
        harness.source("daemon", daemon.url(repo), prune=True, applyAs="alice")
        assert (await harness.reconcile("daemon")).ready

        repo.write("a.yaml", site_yaml("inv-a", owners="[alice]", purpose="activity"))
        repo.write("b.yaml", site_yaml("inv-b", owners="[Alice Smith]"))
        repo.write("c.yaml", site_yaml("inv-c", owners="[alice]"))
        broken = repo.commit("one bad among good ones")
        outcome = await harness.reconcile("daemon")
        assert not outcome.ready and outcome.reason == "DocumentsRefused"
        assert outcome.message.startswith("1 of 3 documents refused")
        [refused] = outcome.status.refused
        assert (refused.file, refused.document, refused.field, refused.line, refused.column) == (
            "b.yaml",
            1,
            "spec.owners[0]",
            6,
            12,
        )
        assert harness.site("inv-a").spec.purpose == "activity"
        assert harness.site("inv-c") is not None
        # The bad document's site is kept as it was: not pruned, not changed.
        assert harness.site("inv-b").spec.owners == ["alice"]
        assert outcome.status.attempted_revision == broken
        assert outcome.status.applied_revision != broken

        repo.write("b.yaml", site_yaml("inv-b", owners="[alice]", purpose="other"))
        fixed = repo.commit("fix")
        outcome = await harness.reconcile("daemon")
        assert outcome.ready
        assert outcome.status.applied_revision == fixed
        assert harness.site("inv-b").spec.purpose == "other"
    finally:
        daemon.stop()


async def test_force_push_a_deleted_branch_and_an_emptied_path_prune_nothing_and_say_so(harness, remotes):
    server = HttpGitServer(remotes, "club", "right-password").start()
    try:
        with harness.api.client("alice") as alice:
            secret = {
                "metadata": {"name": "club-git"},
                "stringData": {"username": "club", "password": "right-password"},
            }
            assert alice.post(SECRETS, json=secret).status_code == 201
        repo = Repo(remotes, "pushed")
        repo.write("sites/x.yaml", site_yaml("fp-x", owners="[alice]"))
        repo.commit("x")
        harness.source(
            "pushed", server.url(repo), who="alice", path="sites", prune=True, secretRef={"name": "club-git"}
        )
        assert (await harness.reconcile("pushed")).ready

        repo.write("sites/x.yaml", site_yaml("fp-x", owners="[alice]", purpose="user"))
        rewritten = repo.rewrite("x, rewritten")
        outcome = await harness.reconcile("pushed")
        assert outcome.ready and outcome.status.applied_revision == rewritten
        assert harness.site("fp-x").spec.purpose == "user"

        repo.delete_branch()
        outcome = await harness.reconcile("pushed")
        assert not outcome.ready and outcome.reason == "RevisionNotFound"
        assert "branch main not found" in outcome.message and "nothing pruned" in outcome.message
        assert harness.site("fp-x") is not None

        repo.remove("sites/x.yaml")
        emptied = repo.commit("empty the path")
        outcome = await harness.reconcile("pushed")
        assert not outcome.ready and outcome.reason == "PathEmpty"
        assert outcome.message == f"path sites/ is empty or missing at {emptied[:12]}: nothing pruned"
        assert harness.site("fp-x") is not None
    finally:
        server.stop()


async def test_a_private_repository_with_wrong_or_no_credentials_says_why(harness, remotes):
    server = HttpGitServer(remotes, "club", "right-password").start()
    try:
        repo = Repo(remotes, "private")
        repo.write("x.yaml", site_yaml("priv-x", owners="[alice]"))
        repo.commit("x")
        with harness.api.client("alice") as alice:
            wrong = {"metadata": {"name": "wrong"}, "stringData": {"username": "club", "password": "guess"}}
            assert alice.post(SECRETS, json=wrong).status_code == 201
        harness.source("private", server.url(repo), who="alice", secretRef={"name": "wrong"})
        outcome = await harness.reconcile("private")
        assert not outcome.ready and outcome.reason == "FetchFailed"
        assert outcome.message == f"could not read from {server.url(repo)}: authentication failed"
        harness.source("anonymous", server.url(repo), who="alice")
        outcome = await harness.reconcile("anonymous")
        assert outcome.reason == "FetchFailed"
        assert "asks for credentials" in outcome.message
        assert harness.site("priv-x") is None
    finally:
        server.stop()


async def test_a_hostile_repository_is_refused_with_reasons_and_the_good_documents_still_apply(
    harness, remotes
):
    repo = Repo(remotes, "hostile")
    repo.write("sites/good.yaml", site_yaml("host-good", owners="[alice]"))
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    repo.write("sites/bomb.yaml", bomb)
    repo.symlink("sites/passwd.yaml", "/etc/passwd")
    repo.write("sites/huge.yaml", b"# " + b"x" * (50 * 1024 * 1024))
    repo.commit("hostile")
    harness.source("hostile", repo.file_url, path="sites/", prune=True, applyAs="alice")
    started = time.monotonic()
    outcome = await harness.reconcile("hostile")
    assert time.monotonic() - started < 30
    assert outcome.reason == "DocumentsRefused"
    text = _refused_text(outcome)
    assert "sites/bomb.yaml:1:" in text and "alias bomb" in text
    assert "sites/passwd.yaml" in text and "symbolic link (to /etc/passwd)" in text
    assert "sites/huge.yaml" in text and "50.0 MiB, larger than the 8 MiB" in text
    assert "root:" not in text
    assert harness.site("host-good") is not None
    assert "nothing pruned" in outcome.message

    many = Repo(remotes, "many")
    many.write("all.yaml", "".join(f"---\n{site_yaml(f'many-{i}', owners='[alice]')}" for i in range(10_000)))
    many.commit("10,000 documents")
    harness.source("many", many.file_url, applyAs="alice")
    outcome = await harness.reconcile("many")
    assert outcome.reason == "TooManyDocuments"
    assert "nothing applied, nothing pruned" in outcome.message
    assert harness.site("many-0") is None


async def test_apply_as_carol_cannot_make_a_site_carol_could_not(harness, remotes):
    repo = Repo(remotes, "carols")
    repo.write("mine.yaml", site_yaml("carol-ok"))
    repo.write("theirs.yaml", site_yaml("carol-not-owner", owners="[alice]"))
    repo.write(
        "big.yaml", site_yaml("carol-big", type="dynamic", image="nginx:1", replicas=5, owners="[carol]")
    )
    repo.commit("carol's")
    harness.source("carols", repo.file_url, applyAs="carol")
    outcome = await harness.reconcile("carols")
    assert outcome.reason == "DocumentsRefused"
    by_file = {r.file: r for r in outcome.status.refused}
    assert set(by_file) == {"theirs.yaml", "big.yaml"}
    assert by_file["theirs.yaml"].field == "spec.owners"
    assert 'user "carol" must stay among spec.owners' in by_file["theirs.yaml"].message
    assert (by_file["big.yaml"].field, by_file["big.yaml"].line) == ("spec.replicas", 8)
    assert harness.site("carol-ok").spec.owners == ["carol"]
    assert harness.site("carol-not-owner") is None and harness.site("carol-big") is None
    from api.models import WriteRecord

    record = WriteRecord.objects.filter(site="carol-ok").first()
    assert (record.username, record.field_manager) == ("carol", "gitsource-carols")


async def test_a_field_changed_by_hand_is_set_back_with_an_event_naming_it_and_who(harness, remotes, api):
    repo = Repo(remotes, "drift")
    repo.write("d.yaml", site_yaml("drift-d", owners="[alice]", purpose="activity"))
    repo.commit("d")
    harness.source("drift", repo.file_url, applyAs="alice")
    assert (await harness.reconcile("drift")).ready
    # An unchanged revision with nothing changed by hand writes nothing.
    quiet = await harness.reconcile("drift")
    assert [step.result for step in quiet.steps] == ["unchanged"]
    by_hand = site_doc("drift-d", owners=["alice"], purpose="user")
    with api.client("alice") as alice:
        answer = alice.patch(
            f"{SITES}/drift-d",
            params={"fieldManager": "cli", "force": "true"},
            content=json.dumps(by_hand),
            headers=APPLY,
        )
        assert answer.status_code == 200, answer.text
    assert harness.site("drift-d").spec.purpose == "user"
    outcome = await harness.reconcile("drift")
    assert harness.site("drift-d").spec.purpose == "activity"
    [drift] = [step for step in outcome.steps if step.step == "drift"]
    assert "spec.purpose (changed by cli)" in drift.message


async def test_suspend_holds_new_commits_and_drift_until_resumed(harness, remotes, api):
    repo = Repo(remotes, "held")
    repo.write("h.yaml", site_yaml("held-h", owners="[alice]"))
    repo.commit("h")
    harness.source("held", repo.file_url, applyAs="alice")
    assert (await harness.reconcile("held")).ready
    harness.source("held", repo.file_url, applyAs="alice", suspend=True)
    repo.write("h.yaml", site_yaml("held-h", owners="[alice]", purpose="other"))
    repo.commit("while suspended")
    outcome = await harness.reconcile("held")
    assert outcome.reason == "Suspended"
    assert harness.site("held-h").spec.purpose == "project"
    harness.source("held", repo.file_url, applyAs="alice", suspend=False)
    outcome = await harness.reconcile("held")
    assert outcome.ready and harness.site("held-h").spec.purpose == "other"


@pytest.mark.parametrize("policy", ["orphan", "delete"])
async def test_deleting_a_source_orphans_or_deletes_its_sites(harness, remotes, policy):
    repo = Repo(remotes, f"gone-{policy}")
    repo.write("s.yaml", site_yaml(f"pol-{policy}", owners="[alice]"))
    repo.commit("s")
    name = f"pol-{policy}"
    harness.source(name, repo.file_url, applyAs="alice", deletionPolicy=policy)
    assert (await harness.reconcile(name)).ready
    ctx = ReconcileContext(reconcile_id="test", trigger="deletion", deadline=time.monotonic() + 60)
    outcome = await harness.sync.finalize(name, ctx)
    site = harness.site(f"pol-{policy}")
    if policy == "orphan":
        assert site is not None and GITSOURCE_LABEL not in site.metadata.labels
        assert "orphaned 1 sites" in outcome.steps[-1].message
    else:
        assert site is None or site.metadata.deletion_timestamp is not None


async def test_a_webhook_wakes_the_controller_and_a_storm_costs_a_bounded_number_of_fetches(
    harness, remotes, api
):
    from controller.kinds import Kind
    from controller.runtime import Controller, ControllerOptions
    from store.events import EventLog

    repo = Repo(remotes, "hooked")
    repo.write("w.yaml", site_yaml("hook-w", owners="[alice]"))
    repo.commit("w")
    with api.client("alice") as alice:
        alice.post(SECRETS, json={"metadata": {"name": "hook"}, "stringData": {"hmac": "k3y"}})
    harness.source(
        "hooked", repo.file_url, applyAs="alice", interval="24h", webhook={"secretRef": {"name": "hook"}}
    )
    events = EventLog(api.state_dir / "gitops-test-events.db")
    controller = Controller(
        kinds=[Kind(records=harness.sources, reconcilers=[harness.sync])],
        events=events,
        state_dir=api.state_dir,
        options=ControllerOptions(workers=2, resync_seconds=3600),
    )
    running = asyncio.create_task(controller.run())
    try:
        deadline = time.monotonic() + 60
        while harness.site("hook-w") is None:
            assert time.monotonic() < deadline, "the first sync did not happen"
            await asyncio.sleep(0.05)
        repo.write("w.yaml", site_yaml("hook-w", owners="[alice]", purpose="user"))
        repo.commit("pushed")
        import hashlib
        import hmac

        body = b'{"ref": "refs/heads/main"}'
        signature = "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
        async with httpx.AsyncClient(verify=api.tls, base_url=api.url) as hooks:
            wrong = await hooks.post(
                "/hooks/gitsources/hooked", content=body, headers={"X-Hub-Signature-256": "sha256=00"}
            )
            assert wrong.status_code == 401
            pushed = time.monotonic()
            good = await hooks.post(
                "/hooks/gitsources/hooked", content=body, headers={"X-Hub-Signature-256": signature}
            )
            assert good.status_code == 202
            while harness.site("hook-w").spec.purpose != "user":
                assert time.monotonic() - pushed < 10, "the push was not applied"
                await asyncio.sleep(0.02)
            latency = time.monotonic() - pushed
            assert latency < 5, f"applied {latency:.2f}s after the webhook"

            def fetches() -> int:
                uid = harness.sources.get("hooked").metadata.uid
                return sum(
                    e.count for e in events.query("hooked", uid=uid, limit=1000) if e.step == "sync.fetch"
                )

            before = fetches()
            repo.write("w.yaml", site_yaml("hook-w", owners="[alice]", purpose="other"))
            repo.commit("storm")
            answers = await asyncio.gather(
                *(
                    hooks.post(
                        "/hooks/gitsources/hooked", content=body, headers={"X-Hub-Signature-256": signature}
                    )
                    for _ in range(100)
                )
            )
            assert {answer.status_code for answer in answers} <= {202, 429}
            stormed = time.monotonic()
            while harness.site("hook-w").spec.purpose != "other":
                assert time.monotonic() - stormed < 10, "the storm's push was not applied"
                await asyncio.sleep(0.02)
            await asyncio.sleep(0)
        assert fetches() - before <= 3
    finally:
        controller.stop()
        await asyncio.wait_for(running, 30)
        events.close()
