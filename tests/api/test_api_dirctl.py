"""The whole of dirctl against the live API server, run as a user runs it: a separate process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.api.api_helpers import SITES, site_doc

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dirctl(api, tmp_path):
    """Run dirctl as `who` (a token name in api.tokens, or None for no credentials)."""

    def run(
        *args: str,
        who: str | None = "admin",
        stdin: str | None = None,
        env: dict | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTOR_")}
        environment |= {
            "DIRECTOR_SERVER": api.url,
            "DIRECTOR_CONFIG": str(tmp_path / "dirctl.yaml"),
            "DIRECTOR_CA": str(api.ca_file),
        }
        if who is not None:
            environment["DIRECTOR_TOKEN"] = api.tokens[who]
        environment |= env or {}
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=REPO,
            env=environment,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


def write_sites(path: Path, *documents: dict) -> Path:
    path.write_text(yaml.safe_dump_all(documents))
    return path


def ready_status(generation: int, ready: str = "True", reason: str = "Serving"):
    from specs.models import Condition, SiteStatus

    now = datetime.now(UTC)
    return SiteStatus(
        observed_generation=generation,
        urls=["http://x.sites.localhost:8080/"],
        conditions=[
            Condition(
                type="Ready",
                status=ready,
                reason=reason,
                last_transition_time=now,
                observed_generation=generation,
            ),
            Condition(type="Reconciling", status="False", reason="Done", last_transition_time=now),
        ],
    )


def test_apply_get_and_the_three_apply_outcomes(dirctl, tmp_path):
    manifest = write_sites(tmp_path / "sites.yaml", site_doc("one"), site_doc("two", purpose="activity"))
    first = dirctl("apply", "-f", str(manifest))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["site/one created", "site/two created"]
    assert dirctl("apply", "-f", str(manifest)).stdout.splitlines() == [
        "site/one unchanged",
        "site/two unchanged",
    ]
    write_sites(manifest, site_doc("one", replicas=2), site_doc("two", purpose="activity"))
    assert dirctl("apply", "-f", str(manifest)).stdout.splitlines() == [
        "site/one configured",
        "site/two unchanged",
    ]

    table = dirctl("get", "sites")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "AVAILABILITY", "READY", "REASON", "AGE"]
    assert [line.split()[0] for line in lines[1:]] == ["one", "two"]
    assert "OWNERS" in dirctl("get", "sites", "-o", "wide").stdout
    assert dirctl("get", "sites", "-o", "name").stdout == "site/one\nsite/two\n"
    assert json.loads(dirctl("get", "sites", "one", "-o", "json").stdout)["spec"]["replicas"] == 2
    assert yaml.safe_load(dirctl("get", "sites", "-o", "yaml").stdout)["kind"] == "SiteList"
    assert dirctl("get", "site", "two").stdout.splitlines()[1].split()[0] == "two"


def test_get_with_a_label_selector(dirctl, tmp_path):
    web = site_doc("web")
    web["metadata"]["labels"] = {"tier": "web"}
    dirctl("apply", "-f", str(write_sites(tmp_path / "s.yaml", web, site_doc("db"))))
    assert dirctl("get", "sites", "-l", "tier=web", "-o", "name").stdout == "site/web\n"
    bad = dirctl("get", "sites", "-l", "tier in ()")
    assert bad.returncode == 1 and bad.stderr.startswith("error: invalid labelSelector")


def test_exit_codes_for_missing_unauthenticated_and_forbidden(api, dirctl, tmp_path):
    missing = dirctl("get", "sites", "nope")
    assert (missing.returncode, missing.stderr) == (4, 'error: site "nope" not found\n')
    anonymous = dirctl("get", "sites", who=None)
    assert anonymous.returncode == 3 and anonymous.stderr.startswith(
        "error: this endpoint needs an API token"
    )
    wrong = dirctl("get", "sites", env={"DIRECTOR_TOKEN": "dir_wrong"})
    assert wrong.returncode == 3 and "token is unknown" in wrong.stderr and "dirctl login" in wrong.stderr
    unreachable = dirctl("get", "sites", env={"DIRECTOR_SERVER": "http://127.0.0.1:9"})
    assert unreachable.returncode == 3 and "cannot reach the Director API" in unreachable.stderr

    dirctl("apply", "-f", str(write_sites(tmp_path / "b.yaml", site_doc("bobs", owners=["bob"]))))
    hidden = dirctl("get", "sites", "bobs", who="alice")
    assert (hidden.returncode, hidden.stderr) == (4, 'error: site "bobs" not found\n')


def test_a_refused_apply_is_one_line_with_the_field_causes(dirctl, tmp_path):
    manifest = write_sites(tmp_path / "s.yaml", site_doc("mine", availability="disabled"), site_doc("fine"))
    result = dirctl("apply", "-f", str(manifest), who="alice")
    assert result.returncode == 1
    assert result.stdout == "site/fine created\n"
    [line] = result.stderr.splitlines()
    assert line.startswith("error: site/mine (") and "spec.availability" in line and "admin" in line


def test_field_manager_conflicts_and_forcing(api, dirctl, tmp_path):
    manifest = write_sites(tmp_path / "s.yaml", site_doc("shared", replicas=2))
    assert dirctl("apply", "-f", str(manifest), "--field-manager", "gitops").returncode == 0
    with api.client() as client:
        client.patch(
            f"{SITES}/shared?fieldManager=ui",
            json={"spec": {"replicas": 3}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
    conflict = dirctl("apply", "-f", str(manifest), "--field-manager", "gitops")
    assert conflict.returncode == 1
    assert 'conflict with "ui": spec.replicas' in conflict.stderr and len(conflict.stderr.splitlines()) == 1
    forced = dirctl("apply", "-f", str(manifest), "--field-manager", "gitops", "--force-conflicts")
    assert forced.returncode == 0 and forced.stdout == "site/shared configured\n"


def test_server_dry_run_and_diff_exit_codes(api, dirctl, tmp_path, store):
    manifest = write_sites(tmp_path / "s.yaml", site_doc("diffed"))
    dry = dirctl("apply", "-f", str(manifest), "--dry-run=server")
    assert dry.returncode == 0 and dry.stdout == "site/diffed created (server dry run)\n"
    assert dirctl("get", "sites", "diffed").returncode == 4

    new = dirctl("diff", "-f", str(manifest))
    assert new.returncode == 1 and "+++ merged/site/diffed" in new.stdout
    dirctl("apply", "-f", str(manifest))
    same = dirctl("diff", "-f", str(manifest))
    assert (same.returncode, same.stdout) == (0, "")
    write_sites(manifest, site_doc("diffed", domains=["diffed.example.org"]))
    changed = dirctl("diff", "-f", str(manifest))
    assert changed.returncode == 1 and "+  - diffed.example.org" in changed.stdout
    version = store.get("diffed").metadata.resource_version
    broken = dirctl("diff", "-f", str(manifest), env={"DIRECTOR_SERVER": "http://127.0.0.1:9"})
    assert broken.returncode > 1
    refused = dirctl("diff", "-f", str(manifest), who="bob")
    assert refused.returncode > 1 and refused.stderr.startswith("error:")
    assert store.get("diffed").metadata.resource_version == version


def test_get_watch_streams_changes(api, dirctl, tmp_path):
    dirctl("apply", "-f", str(write_sites(tmp_path / "s.yaml", site_doc("watched"))))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTOR_")} | {
        "DIRECTOR_SERVER": api.url,
        "DIRECTOR_TOKEN": api.tokens["admin"],
        "DIRECTOR_CONFIG": str(tmp_path / "none.yaml"),
        "DIRECTOR_CA": str(api.ca_file),
    }
    watcher = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "get", "sites", "-w", "-o", "wide"],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().split()[0] == "NAME"
        assert watcher.stdout.readline().split()[0] == "watched"
        time.sleep(0.5)
        with api.client() as client:
            client.patch(
                f"{SITES}/watched",
                json={"spec": {"domains": ["w.example.org"]}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        change = watcher.stdout.readline()
        assert change.split()[0] == "watched" and "w.example.org" in change
    finally:
        watcher.kill()
        watcher.wait()


def test_delete_by_name_and_by_file_and_wait_for_finalizers(dirctl, tmp_path, store):
    manifest = write_sites(tmp_path / "s.yaml", site_doc("gone1"), site_doc("gone2"))
    dirctl("apply", "-f", str(manifest))
    assert dirctl("delete", "site", "gone1").stdout == "site/gone1 deleted\n"
    assert dirctl("delete", "site/gone1").returncode == 4
    store.add_finalizer("gone2", "director.io/cleanup")

    def controller_finishes() -> None:
        # As the controller does: once the deletion is asked for (dirctl has had its answer), finish it.
        deadline = time.monotonic() + 60
        while store.get("gone2").metadata.deletion_timestamp is None:
            assert time.monotonic() < deadline, "dirctl did not ask to delete gone2 within 60 s"
            time.sleep(0.02)
        store.remove_finalizer("gone2", "director.io/cleanup")

    finisher = threading.Thread(target=controller_finishes)
    finisher.start()
    result = dirctl("delete", "-f", str(manifest), "--wait", "--ignore-not-found")
    finisher.join()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "site/gone2 deleting: waiting for director.io/cleanup",
        "site/gone2 deleted",
    ]


def test_apply_wait_follows_conditions_until_ready(dirctl, tmp_path, store):
    manifest = write_sites(tmp_path / "s.yaml", site_doc("waiting"))

    def controller() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                site = store.get("waiting")
                break
            except Exception:
                time.sleep(0.05)
        time.sleep(0.5)
        store.update_status("waiting", ready_status(site.metadata.generation or 1, "False", "Deploying"))
        time.sleep(0.5)
        store.update_status("waiting", ready_status(site.metadata.generation or 1))

    thread = threading.Thread(target=controller)
    thread.start()
    result = dirctl("apply", "-f", str(manifest), "--wait", "--timeout", "20s")
    thread.join()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "site/waiting created"
    assert any("Ready=False (Deploying)" in line for line in lines)
    assert lines[-1] == "site/waiting condition met: Ready"


def test_wait_times_out_with_exit_5_and_describe_shows_status_and_events(api, dirctl, tmp_path, store):
    from store.events import EventLog

    dirctl(
        "apply",
        "-f",
        str(write_sites(tmp_path / "s.yaml", site_doc("slow", type="dynamic", image="nginx:1"))),
    )
    timeout = dirctl("wait", "--for=condition=Ready", "site/slow", "--timeout", "1s")
    assert timeout.returncode == 5 and "timed out" in timeout.stderr
    store.update_status("slow", ready_status(1))
    assert dirctl("wait", "--for=condition=Ready", "site/slow", "--timeout", "10s").returncode == 0
    log = EventLog(api.state_dir / "events.db")
    log.record(
        site="slow",
        uid=store.get("slow").metadata.uid,
        generation=1,
        reconcile_id="r1",
        trigger="test",
        step="service",
        result="created",
        duration_seconds=0.2,
        message="created service director-site-slow",
    )
    log.close()
    described = dirctl("describe", "site", "slow")
    assert described.returncode == 0, described.stderr
    for expected in (
        "Name:          slow",
        "Image:         nginx:1",
        "Ready",
        "Serving",
        "http://x.sites.localhost:8080/",
        "created service director-site-slow",
    ):
        assert expected in described.stdout
    events = dirctl("events", "slow")
    assert "created service director-site-slow" in events.stdout


def test_logs_and_follow(api, dirctl, tmp_path):
    dirctl(
        "apply",
        "-f",
        str(write_sites(tmp_path / "s.yaml", site_doc("talky", type="dynamic", image="nginx:1"))),
    )
    (api.state_dir / "test-logs" / "talky.log").write_text("a\nb\nc\n")
    assert dirctl("logs", "talky").stdout == "a\nb\nc\n"
    assert dirctl("logs", "talky", "--tail", "1").stdout == "c\n"
    assert dirctl("logs", "nope").returncode == 4


def test_rollout_history_and_undo(dirctl, tmp_path):
    manifest = tmp_path / "s.yaml"
    for image in ("nginx:1", "nginx:2", "nginx:3"):
        write_sites(manifest, site_doc("rolled", type="dynamic", image=image))
        assert dirctl("apply", "-f", str(manifest)).returncode == 0
    history = dirctl("rollout", "history", "site", "rolled").stdout.splitlines()
    assert [line.split()[0] for line in history[1:]] == ["3", "2", "1"]
    assert "image=nginx:3" in history[1] and "current" in history[1]
    undo = dirctl("rollout", "undo", "site", "rolled")
    assert undo.returncode == 0 and "generation 2" in undo.stdout
    assert json.loads(dirctl("get", "site", "rolled", "-o", "json").stdout)["spec"]["image"] == "nginx:2"
    to_first = dirctl("rollout", "undo", "site", "rolled", "--to-generation", "1")
    assert to_first.returncode == 0
    assert json.loads(dirctl("get", "site", "rolled", "-o", "json").stdout)["spec"]["image"] == "nginx:1"
    assert dirctl("rollout", "undo", "site", "rolled", "--to-generation", "99").returncode == 1


def test_reconcile_sets_the_request_annotation(dirctl, tmp_path, store):
    from specs.models import RECONCILE_REQUEST_ANNOTATION

    dirctl("apply", "-f", str(write_sites(tmp_path / "s.yaml", site_doc("poked"))))
    result = dirctl("reconcile", "site", "poked")
    assert result.returncode == 0 and result.stdout.startswith("site/poked reconcile requested at ")
    assert RECONCILE_REQUEST_ANNOTATION in store.get("poked").metadata.annotations


def test_login_writes_the_config_and_config_precedence(api, dirctl, tmp_path):
    config = tmp_path / "dirctl.yaml"
    login = dirctl(
        "login",
        "--server",
        api.url,
        "--ca",
        str(api.ca_file),
        "-u",
        "alice",
        "--password-stdin",
        who=None,
        stdin="alice-password\n",
        env={"DIRECTOR_SERVER": "", "DIRECTOR_CA": ""},
    )
    assert login.returncode == 0, login.stderr
    assert "The token expires at " in login.stdout and "(in 30 days)" in login.stdout
    saved = yaml.safe_load(config.read_text())
    assert saved["server"] == api.url and saved["token"].startswith("dir_")
    # The CA itself is kept, so the file works wherever the CA file goes.
    assert saved["ca"] == api.ca_file.read_text()
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    alice_site = write_sites(tmp_path / "a.yaml", site_doc("alices"))
    # Only the file: server, token and CA come from it.
    only_the_file = {"DIRECTOR_SERVER": "", "DIRECTOR_CA": ""}
    assert dirctl("apply", "-f", str(alice_site), who=None, env=only_the_file).returncode == 0
    # The environment overrides the file, and flags override the environment.
    assert dirctl("get", "sites", who=None, env={"DIRECTOR_TOKEN": "dir_bad"}).returncode == 3
    flagged = dirctl("get", "sites", "--token", saved["token"], who=None, env={"DIRECTOR_TOKEN": "dir_bad"})
    assert flagged.returncode == 0 and "alices" in flagged.stdout
    refused = dirctl("login", "--server", api.url, "-u", "alice", "--password-stdin", who=None, stdin="no\n")
    assert refused.returncode == 3 and "password is wrong" in refused.stderr


def test_an_expired_token_says_to_log_in_again(api, dirctl):
    from django.contrib.auth.models import User

    from api.auth import issue_token

    alice = User.objects.get(username="alice")
    _, expired = issue_token(alice, "old", expires=datetime.now(UTC) - timedelta(minutes=1))
    result = dirctl("get", "sites", who=None, env={"DIRECTOR_TOKEN": expired})
    assert result.returncode == 3
    assert "expired" in result.stderr and "dirctl login" in result.stderr


def test_a_server_whose_certificate_is_not_signed_by_the_configured_ca_is_refused(api, dirctl, tmp_path):
    from orchestrator.tls import ensure_certificates

    elsewhere = tmp_path / "elsewhere"
    ensure_certificates(elsewhere, ["127.0.0.1"])
    other_ca = str(elsewhere / "tls" / "ca.crt")
    refused = dirctl("get", "sites", env={"DIRECTOR_CA": other_ca})
    assert refused.returncode == 3
    assert "certificate is not trusted" in refused.stderr and "--ca FILE" in refused.stderr
    # Without a CA of its own, dirctl trusts the system's authorities, which never signed this server's.
    assert dirctl("get", "sites", env={"DIRECTOR_CA": ""}).returncode == 3
    unreadable = dirctl("get", "sites", env={"DIRECTOR_CA": str(tmp_path / "missing.crt")})
    assert unreadable.returncode == 3 and "cannot be used" in unreadable.stderr


def test_no_configuration_says_how_to_get_one(dirctl, tmp_path):
    result = dirctl("get", "sites", who=None, env={"DIRECTOR_SERVER": ""})
    assert result.returncode == 3 and "dirctl login --server" in result.stderr


def _background(api, tmp_path, *args: str) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTOR_")} | {
        "DIRECTOR_SERVER": api.url,
        "DIRECTOR_TOKEN": api.tokens["admin"],
        "DIRECTOR_CONFIG": str(tmp_path / "none.yaml"),
        "DIRECTOR_CA": str(api.ca_file),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_events_watch_and_logs_follow_stream_as_things_happen(api, dirctl, tmp_path, store):
    from store.events import EventLog

    dirctl(
        "apply",
        "-f",
        str(write_sites(tmp_path / "s.yaml", site_doc("live", type="dynamic", image="nginx:1"))),
    )
    log_file = api.state_dir / "test-logs" / "live.log"
    log_file.write_text("first\n")
    events = _background(api, tmp_path, "events", "live", "-w", "-o", "json")
    logs = _background(api, tmp_path, "logs", "live", "-f")
    try:
        assert logs.stdout is not None and events.stdout is not None
        assert logs.stdout.readline() == "first\n"
        with log_file.open("a") as handle:
            handle.write("second\n")
        assert logs.stdout.readline() == "second\n"

        event_log = EventLog(api.state_dir / "events.db")
        event_log.record(
            site="live",
            uid=store.get("live").metadata.uid,
            generation=1,
            reconcile_id="r9",
            trigger="test",
            step="routes",
            result="updated",
            duration_seconds=0.1,
            message="route added",
        )
        event_log.close()
        assert json.loads(events.stdout.readline())["message"] == "route added"
    finally:
        for process in (events, logs):
            process.kill()
            process.wait()


def test_admins_keep_the_blocked_domains_with_dirctl(dirctl, tmp_path):
    refused = dirctl("create", "blockeddomain", "casino.example", "--reason", "no gambling", who="alice")
    assert refused.returncode == 1 and "admins only" in refused.stderr
    created = dirctl("create", "blockeddomain", "casino.example", "--reason", "no gambling")
    assert (created.returncode, created.stdout) == (0, "blockeddomain/casino.example created\n")
    listed = dirctl("get", "blockeddomains")
    assert listed.returncode == 0
    assert listed.stdout.split("\n")[1].split()[:2] == ["casino.example", "admin"]
    assert listed.stdout.rstrip().endswith("no gambling")
    try:
        manifest = write_sites(tmp_path / "s.yaml", site_doc("bets", domains=["www.casino.example"]))
        applied = dirctl("apply", "-f", str(manifest), who="alice")
        assert applied.returncode == 1
        assert "spec.domains[0]" in applied.stderr and "blocked by the administrators" in applied.stderr
    finally:
        deleted = dirctl("delete", "blockeddomain", "casino.example")
    assert (deleted.returncode, deleted.stdout) == (0, "blockeddomain/casino.example deleted\n")
    assert dirctl("get", "blockeddomain", "casino.example").returncode == 4


def test_events_of_an_earlier_site_of_a_name_are_read_by_uid_with_dirctl(api, dirctl, tmp_path, store):
    from store.events import EventLog

    dirctl("apply", "-f", str(write_sites(tmp_path / "s.yaml", site_doc("again"))))
    first_uid = store.get("again").metadata.uid
    with EventLog(api.state_dir / "events.db") as log:
        log.record(
            site="again",
            uid=first_uid,
            generation=1,
            reconcile_id="r1",
            trigger="test",
            step="files.remove",
            result="deleted",
            duration_seconds=0.1,
            message="removed the first site's files",
        )
    assert dirctl("delete", "site", "again").returncode == 0
    dirctl("apply", "-f", str(write_sites(tmp_path / "s.yaml", site_doc("again"))))
    assert store.get("again").metadata.uid != first_uid
    assert "removed the first" not in dirctl("events", "again", who="alice").stdout
    earlier = dirctl("events", "again", "--uid", str(first_uid), "-o", "json")
    assert earlier.returncode == 0, earlier.stderr
    assert [json.loads(line)["uid"] for line in earlier.stdout.splitlines()] == [first_uid]
    refused = dirctl("events", "again", "--uid", str(first_uid), who="alice")
    assert refused.returncode != 0 and "only administrators" in refused.stderr
    assert dirctl("events", "--uid", str(first_uid)).returncode == 2


def test_everyone_reads_the_platform_with_dirctl(api, dirctl):
    from specs.models import Condition
    from specs.platform import EdgeStatus, NodeTask, Platform, PlatformMeta, PlatformStatus
    from store.records import PlatformStore

    platforms = PlatformStore(api.state_dir)
    if not platforms.list()[0]:
        platforms.create(Platform(metadata=PlatformMeta(name="edge")))
    now = datetime.now(UTC)
    platforms.update_status(
        "edge",
        PlatformStatus(
            observed_generation=1,
            conditions=[Condition(type="Ready", status="True", reason="Ready", last_transition_time=now)],
            platform=EdgeStatus(
                network="director-sites",
                network_id="0123456789ab",
                service="director-edge",
                running_nodes=1,
                desired_nodes=1,
                tasks=[NodeTask(node="n0de1d", state="running", desired_state="running", since=now)],
                edge_revision="e1",
                routes_revision="r1",
            ),
        ),
    )
    listed = dirctl("get", "platform", who="alice")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:4] == ["edge", "True", "1/1", "r1"]
    described = dirctl("describe", "platform", "edge", who="alice")
    assert described.returncode == 0, described.stderr
    assert "running on 1 of 1 nodes" in described.stdout and "n0de1d" in described.stdout
    assert "edge e1, routes r1" in described.stdout
    as_yaml = dirctl("get", "platform", "edge", "-o", "yaml")
    assert "routesRevision: r1" in as_yaml.stdout
    assert dirctl("get", "platform", "nope").returncode == 4
