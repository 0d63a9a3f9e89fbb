"""kubectl (v1.32, the machine's own) against the live API server over HTTPS, with kubeconfigs written the way
`make run` writes its own: every command a user types, with its exit code and what it prints."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# The machine's kubectl, or the one scripts/setup.sh puts in the venv where the machine has none.
KUBECTL = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def kubeconfigs(api, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One kubeconfig per test user, each as `make run` writes the demo admin's: the CA in it, a token, a
    context."""
    if KUBECTL is None:
        pytest.fail("kubectl is not installed: `make setup` installs it")
    from orchestrator.api_server import write_kubeconfig

    directory = tmp_path_factory.mktemp("kubeconfigs")
    ca_pem = api.ca_file.read_text()
    return {
        who: write_kubeconfig(directory / who, api.url, token, who, ca_pem)
        for who, token in api.tokens.items()
        if who != "shell"
    } | {"nobody": write_kubeconfig(directory / "nobody", api.url, "not-a-token", "nobody", ca_pem)}


@pytest.fixture(scope="module")
def kubectl_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubectl's HOME: its discovery cache lives there, kept across this module's commands, as a user's is."""
    return tmp_path_factory.mktemp("kubectl-home")


def _environment(kubeconfig: Path, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "DIRECTOR_"))}
    return environment | {"KUBECONFIG": str(kubeconfig), "HOME": str(home)} | (extra or {})


@pytest.fixture
def kubectl(kubeconfigs: dict[str, Path], kubectl_home: Path, tmp_path: Path) -> Kubectl:
    """Run kubectl as `who`, in tmp_path (where the tests write their manifests)."""

    def run(
        *args: str, who: str = "admin", stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        return subprocess.run(
            [KUBECTL, *args],
            cwd=tmp_path,
            env=_environment(kubeconfigs[who], kubectl_home, env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def site_manifest(name: str, owners: list[str] | None = None, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "director.io/v1",
        "kind": "Site",
        "metadata": {"name": name},
        "spec": {"owners": owners or ["alice"], **spec},
    }


def write_manifest(path: Path, *documents: dict[str, object]) -> str:
    path.write_text(yaml.safe_dump_all(documents))
    return path.name


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    return result.stdout


def header(table: str) -> list[str]:
    return table.splitlines()[0].split()


def names(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines()[1:]]


def test_discovery_version_and_whoami(kubectl):
    version = ok(kubectl("version", "-o", "yaml"))
    server = yaml.safe_load(version)["serverVersion"]
    assert (server["major"], server["minor"]) == ("1", "32")

    resources = ok(kubectl("api-resources"))
    rows = {tuple(line.split()[:1] + line.split()[-3:]) for line in resources.splitlines()[1:]}
    assert ("sites", "director.io/v1", "false", "Site") in rows
    assert ("gitsources", "director.io/v1", "false", "GitSource") in rows
    assert (
        "sites.director.io" in ok(kubectl("api-resources", "--api-group=director.io", "-o", "name")).split()
    )

    whoami = ok(kubectl("auth", "whoami", "-o", "yaml"))
    user = yaml.safe_load(whoami)["status"]["userInfo"]
    assert user["username"] == "admin" and "admins" in user["groups"]
    alice = yaml.safe_load(ok(kubectl("auth", "whoami", "-o", "yaml", who="alice")))["status"]["userInfo"]
    assert alice["username"] == "alice" and "admins" not in alice["groups"]


def test_explain_reads_the_schema_made_from_the_models(kubectl):
    explained = ok(kubectl("explain", "site.spec.resources"))
    assert "KIND:       Site" in explained and "GROUP:      director.io" in explained
    for field in ("cpus", "memory", "uploadLimit"):
        assert f"  {field}\t" in explained, explained
    # The models' docstrings are the descriptions.
    assert "What the site may use" in explained and "such as 256Mi" in explained
    site = ok(kubectl("explain", "site"))
    assert "spec\t<SiteSpec>" in site
    ref = ok(kubectl("explain", "gitsource.spec.ref"))
    assert "branch" in ref and "tag" in ref
    missing = kubectl("explain", "site.spec.colour")
    assert missing.returncode == 1 and 'field "colour" does not exist' in missing.stderr


def test_get_shows_the_columns_dirctl_shows_and_yaml_and_wide(kubectl, tmp_path, dirctl_header):
    ok(kubectl("apply", "-f", write_manifest(tmp_path / "site.yaml", site_manifest("hello"))))

    table = ok(kubectl("get", "sites"))
    assert header(table) == dirctl_header(wide=False)
    assert names(table) == ["hello"]
    one = ok(kubectl("get", "site", "hello"))
    assert header(one) == header(table) and names(one) == ["hello"]
    wide = ok(kubectl("get", "sites", "-o", "wide"))
    assert header(wide) == dirctl_header(wide=True)
    assert "alice" in wide.splitlines()[1].split()

    document = yaml.safe_load(ok(kubectl("get", "site", "hello", "-o", "yaml")))
    assert document["kind"] == "Site" and document["spec"]["owners"] == ["alice"]
    assert document["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    listed = yaml.safe_load(ok(kubectl("get", "sites", "-o", "yaml")))
    assert [item["metadata"]["name"] for item in listed["items"]] == ["hello"]
    assert ok(kubectl("get", "sites", "-o", "name")).split() == ["site.director.io/hello"]
    assert ok(kubectl("get", "director", "-o", "name")).split() == ["site.director.io/hello"]

    missing = kubectl("get", "site", "absent")
    assert missing.returncode == 1
    assert 'Error from server (NotFound): site "absent" not found' in missing.stderr


def test_client_side_apply_diff_and_server_side_apply(kubectl, tmp_path):
    manifest = tmp_path / "site.yaml"
    write_manifest(manifest, site_manifest("hello", domains=["hello.example.org"]))
    assert ok(kubectl("apply", "-f", "site.yaml")).strip() == "site.director.io/hello created"
    assert ok(kubectl("apply", "-f", "site.yaml")).strip() == "site.director.io/hello unchanged"
    # kubectl diff: 0 when the live object is what the file says, 1 with the difference.
    assert ok(kubectl("diff", "-f", "site.yaml")) == ""

    write_manifest(manifest, site_manifest("hello", domains=["www.hello.example.org"]))
    changed = kubectl("diff", "-f", "site.yaml")
    assert changed.returncode == 1, changed.stderr
    assert "-  - hello.example.org" in changed.stdout and "+  - www.hello.example.org" in changed.stdout
    assert ok(kubectl("apply", "-f", "site.yaml")).strip() == "site.director.io/hello configured"
    live = yaml.safe_load(ok(kubectl("get", "site", "hello", "-o", "yaml")))
    assert live["spec"]["domains"] == ["www.hello.example.org"]

    # Client-side apply leaves out of its patch what the file no longer says: the field is removed.
    document = site_manifest("hello", domains=["www.hello.example.org"])
    document["metadata"] = {"name": "hello", "labels": {"team": "web"}}
    write_manifest(manifest, document)
    ok(kubectl("apply", "-f", "site.yaml"))
    write_manifest(manifest, site_manifest("hello", domains=["www.hello.example.org"]))
    ok(kubectl("apply", "-f", "site.yaml"))
    assert ok(kubectl("get", "site", "hello", "-o", "jsonpath={.metadata.labels}")) in ("", "{}")

    # The first server-side apply takes over what client-side apply set, without a conflict.
    write_manifest(manifest, site_manifest("hello", domains=["ssa.hello.example.org"]))
    applied = kubectl("apply", "--server-side", "-f", "site.yaml")
    assert ok(applied).strip() == "site.director.io/hello serverside-applied" and applied.stderr == ""
    live = yaml.safe_load(ok(kubectl("get", "site", "hello", "-o", "yaml")))
    assert live["spec"]["domains"] == ["ssa.hello.example.org"]
    last = yaml.safe_load(live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["domains"] == ["ssa.hello.example.org"]

    # Another manager's field: a conflict, unless forced.
    write_manifest(manifest, site_manifest("hello", domains=["other.hello.example.org"]))
    conflict = kubectl("apply", "--server-side", "--field-manager=gitops", "-f", "site.yaml")
    assert conflict.returncode == 1
    assert 'conflict with "kubectl"' in conflict.stderr and "spec.domains" in conflict.stderr
    forced = kubectl(
        "apply", "--server-side", "--field-manager=gitops", "--force-conflicts", "-f", "site.yaml"
    )
    ok(forced)

    write_manifest(manifest, site_manifest("hello", domains=["dry.hello.example.org"]))
    ok(kubectl("apply", "--server-side", "--field-manager=gitops", "--dry-run=server", "-f", "site.yaml"))
    live = yaml.safe_load(ok(kubectl("get", "site", "hello", "-o", "yaml")))
    assert live["spec"]["domains"] == ["other.hello.example.org"]


def test_edit_describe_and_delete(kubectl, tmp_path, api, store):
    write_manifest(tmp_path / "sites.yaml", site_manifest("edited"), site_manifest("removed"))
    ok(kubectl("apply", "-f", "sites.yaml"))

    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i "s/replicas: 1/replicas: 2/" "$1"\n')
    editor.chmod(0o755)
    edited = kubectl("edit", "site", "edited", env={"KUBE_EDITOR": str(editor)})
    assert ok(edited).strip() == "site.director.io/edited edited"
    assert ok(kubectl("get", "site", "edited", "-o", "jsonpath={.spec.replicas}")) == "2"

    # An edit the API refuses: kubectl opens the editor again with the API's reasons at the top.
    seen = tmp_path / "seen-by-editor"
    refusing = tmp_path / "refusing.sh"
    refusing.write_text(f'#!/bin/sh\ncat "$1" >> {seen}\nsed -i "s/replicas: 2/replicas: many/" "$1"\n')
    refusing.chmod(0o755)
    refused = kubectl("edit", "site", "edited", env={"KUBE_EDITOR": str(refusing), "TMPDIR": str(tmp_path)})
    assert refused.returncode == 1 and "Edit cancelled, no valid changes were saved" in refused.stderr
    assert "# * spec.replicas: " in seen.read_text()
    assert ok(kubectl("get", "site", "edited", "-o", "jsonpath={.spec.replicas}")) == "2"

    from store.events import EventLog

    with EventLog(api.state_dir / "events.db") as log:
        log.record(
            site="edited",
            uid=store.get("edited").metadata.uid,
            generation=2,
            reconcile_id="r1",
            trigger="test",
            step="service",
            result="created",
            duration_seconds=0.2,
            message="created service director-site-edited",
        )
    described = ok(kubectl("describe", "site", "edited"))
    assert "Name:         edited" in described and "Replicas:  2" in described
    assert "created service director-site-edited" in described and "serviceCreated" in described
    quiet = ok(kubectl("describe", "site", "removed"))
    assert "Events:" in quiet and "<none>" in quiet.split("Events:")[1]

    assert ok(kubectl("delete", "site", "edited")).strip() == 'site.director.io "edited" deleted'
    assert ok(kubectl("delete", "-f", "sites.yaml", "--ignore-not-found")).strip() == (
        'site.director.io "removed" deleted'
    )
    gone = kubectl("delete", "site", "edited")
    assert gone.returncode == 1 and "NotFound" in gone.stderr
    assert ok(kubectl("get", "sites")) == ""


def test_errors_are_the_apis_own(kubectl, tmp_path):
    write_manifest(tmp_path / "bad.yaml", site_manifest("bad", domains=["not a domain!"]))
    bad = kubectl("apply", "-f", "bad.yaml")
    assert bad.returncode == 1
    assert 'The Site "bad" is invalid: spec.domains[0]:' in bad.stderr and "host name" in bad.stderr

    write_manifest(tmp_path / "unknown.yaml", site_manifest("unknown", colour="red"))
    unknown = kubectl("apply", "-f", "unknown.yaml")
    assert unknown.returncode == 1 and "spec.colour: unknown field" in unknown.stderr

    nobody = kubectl("get", "sites", who="nobody")
    assert nobody.returncode == 1
    assert "error: You must be logged in to the server" in nobody.stderr

    write_manifest(tmp_path / "big.yaml", site_manifest("big", replicas=10))
    forbidden = kubectl("apply", "-f", "big.yaml", who="alice")
    assert forbidden.returncode == 1
    assert "Error from server (Forbidden)" in forbidden.stderr and "spec.replicas" in forbidden.stderr

    write_manifest(tmp_path / "taken.yaml", site_manifest("taken"))
    ok(kubectl("create", "-f", "taken.yaml"))
    taken = kubectl("create", "-f", "taken.yaml")
    assert taken.returncode == 1
    assert (
        "Error from server (AlreadyExists)" in taken.stderr and 'site "taken" already exists' in taken.stderr
    )
    stale = kubectl("replace", "-f", "-", stdin=_with_resource_version(kubectl, "taken", "1"))
    assert stale.returncode == 1 and "Error from server (Conflict)" in stale.stderr


def _with_resource_version(kubectl: Kubectl, name: str, version: str) -> str:
    document = yaml.safe_load(ok(kubectl("get", "site", name, "-o", "yaml")))
    ok(kubectl("label", "site", name, "changed=yes"))
    document["metadata"]["resourceVersion"] = version
    return yaml.safe_dump(document)


def test_a_users_token_sees_only_their_sites(kubectl, tmp_path):
    write_manifest(
        tmp_path / "sites.yaml",
        site_manifest("alices", ["alice"]),
        site_manifest("bobs", ["bob"]),
    )
    ok(kubectl("apply", "-f", "sites.yaml"))
    assert names(ok(kubectl("get", "sites", who="alice"))) == ["alices"]
    assert names(ok(kubectl("get", "sites", who="bob"))) == ["bobs"]
    assert names(ok(kubectl("get", "sites"))) == ["alices", "bobs"]
    hidden = kubectl("get", "site", "bobs", who="alice")
    assert hidden.returncode == 1 and "NotFound" in hidden.stderr
    refused = kubectl("delete", "site", "bobs", who="alice")
    assert refused.returncode == 1 and "NotFound" in refused.stderr
    assert names(ok(kubectl("get", "sites", who="bob"))) == ["bobs"]


class Watch:
    """`kubectl get KIND -w --output-watch-events` in the background, its lines read as they come."""

    def __init__(self, command: list[str], environment: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, event: str, name: str) -> None:
        deadline = time.monotonic() + 60
        while not any(line.split()[:2] == [event, name] for line in self.seen):
            assert time.monotonic() < deadline, f"the watch showed {self.seen} in 60 s, not {event} {name}"
            try:
                self.seen.append(self.lines.get(timeout=1))
            except queue.Empty:
                stderr = self.process.stderr.read() if self.process.stderr else ""
                assert self.process.poll() is None, stderr

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def watch(kind: str, who: str, kubeconfigs: dict[str, Path], home: Path, cwd: Path) -> Watch:
    assert KUBECTL is not None
    command = [KUBECTL, "get", kind, "-w", "--output-watch-events"]
    return Watch(command, _environment(kubeconfigs[who], home), cwd)


def test_a_watch_sees_an_apply(kubectl, kubeconfigs, kubectl_home, tmp_path):
    write_manifest(tmp_path / "first.yaml", site_manifest("first"))
    ok(kubectl("apply", "-f", "first.yaml"))
    watcher = watch("sites", "alice", kubeconfigs, kubectl_home, tmp_path)
    try:
        # The listing's row comes first; the watch goes on from the listing's resourceVersion, so nothing
        # applied after it is missed.
        watcher.wait_for("ADDED", "first")
        write_manifest(tmp_path / "watched.yaml", site_manifest("watched"))
        ok(kubectl("apply", "-f", "watched.yaml"))
        watcher.wait_for("ADDED", "watched")
        ok(kubectl("label", "site", "watched", "seen=yes"))
        watcher.wait_for("MODIFIED", "watched")
        ok(kubectl("delete", "site", "watched", "--wait=false"))
        watcher.wait_for("DELETED", "watched")
    finally:
        watcher.stop()
    assert header(watcher.seen[0]) == ["EVENT", "NAME", "TYPE", "AVAILABILITY", "READY", "REASON", "AGE"]


def test_gitsources_through_kubectl(kubectl, kubeconfigs, kubectl_home, tmp_path):
    source = {
        "apiVersion": "director.io/v1",
        "kind": "GitSource",
        "metadata": {"name": "club"},
        "spec": {"url": "https://git.example.org/club/sites.git", "path": "sites/"},
    }
    write_manifest(tmp_path / "source.yaml", source)
    assert (
        ok(kubectl("apply", "-f", "source.yaml", who="alice")).strip() == "gitsource.director.io/club created"
    )
    table = ok(kubectl("get", "gitsources", "-o", "wide", who="alice"))
    assert header(table)[:7] == ["NAME", "READY", "REASON", "APPLIED", "SITES", "SUSPENDED", "AGE"]
    assert names(table) == ["club"] and "alice" in table
    assert names(ok(kubectl("get", "gitsources", who="bob"))) == []

    source["spec"]["path"] = "web/"  # type: ignore[index]
    write_manifest(tmp_path / "source.yaml", source)
    assert kubectl("diff", "-f", "source.yaml", who="alice").returncode == 1
    assert ok(kubectl("apply", "--server-side", "-f", "source.yaml", who="alice")).strip() == (
        "gitsource.director.io/club serverside-applied"
    )
    watcher = watch("gitsources", "alice", kubeconfigs, kubectl_home, tmp_path)
    try:
        watcher.wait_for("ADDED", "club")
        ok(kubectl("label", "gitsource", "club", "seen=yes", who="alice"))
        watcher.wait_for("MODIFIED", "club")
    finally:
        watcher.stop()

    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i "s/suspend: false/suspend: true/" "$1"\n')
    editor.chmod(0o755)
    ok(kubectl("edit", "gitsource", "club", who="alice", env={"KUBE_EDITOR": str(editor)}))
    described = ok(kubectl("describe", "gitsource", "club", who="alice"))
    assert "Suspend:   true" in described and "Path:" in described and "web/" in described
    assert ok(kubectl("delete", "-f", "source.yaml", who="alice")).strip() == (
        'gitsource.director.io "club" deleted'
    )


def test_the_kubeconfig_make_run_writes_works(api, kubectl_home, tmp_path):
    from orchestrator.api_server import ensure_demo_admin, kubeconfig_path

    demo = ensure_demo_admin(api.url, tmp_path / "dirctl.yaml", username="kubedemo")
    assert demo.kubeconfig == kubeconfig_path(api.state_dir)
    assert oct(demo.kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert KUBECTL is not None
    listed = subprocess.run(
        [KUBECTL, "get", "sites"],
        env=_environment(demo.kubeconfig, kubectl_home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0 and "No resources found" in listed.stderr, listed.stderr


@pytest.fixture
def dirctl(api, tmp_path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, who: str = "admin") -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTOR_")} | {
            "DIRECTOR_SERVER": api.url,
            "DIRECTOR_CONFIG": str(tmp_path / "dirctl.yaml"),
            "DIRECTOR_CA": str(api.ca_file),
            "DIRECTOR_TOKEN": api.tokens[who],
        }
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


@pytest.fixture
def dirctl_header(dirctl) -> Callable[..., list[str]]:
    """The column names `dirctl get sites` prints, to hold kubectl's to them."""

    def columns(*, wide: bool) -> list[str]:
        return header(ok(dirctl("get", "sites", *(["-o", "wide"] if wide else []))))

    return columns


def test_every_write_says_who_made_it(kubectl, dirctl, api, tmp_path):
    write_manifest(tmp_path / "site.yaml", site_manifest("kubectl-audited"))
    ok(kubectl("apply", "-f", "site.yaml"))
    write_manifest(tmp_path / "site.yaml", site_manifest("kubectl-audited", replicas=2))
    ok(kubectl("apply", "--server-side", "-f", "site.yaml", who="alice"))
    ok(dirctl("rollout", "undo", "site", "kubectl-audited"))
    with api.client("alice") as alice:
        patched = alice.patch(
            "/apis/director.io/v1/sites/kubectl-audited?fieldManager=ui",
            json={"spec": {"domains": ["audited.example.org"]}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert patched.status_code == 200, patched.text

    history = ok(dirctl("rollout", "history", "site", "kubectl-audited"))
    lines = [line.split() for line in history.splitlines()]
    assert lines[0] == ["GENERATION", "WRITTEN", "BY", "MANAGER", "SPEC"]
    made = {line[0]: line for line in lines[1:]}
    assert made["4"][1] == "current" and made["4"][4:6] == ["alice", "ui"]
    assert made["3"][3:5] == ["admin", "cli"]
    assert made["2"][3:5] == ["alice", "kubectl"]
    assert made["1"][3:5] == ["admin", "kubectl-client-side-apply"]

    writes = [line.split() for line in ok(dirctl("get", "writes", "--site", "kubectl-audited")).splitlines()]
    assert writes[0] == ["TIME", "USER", "SITE", "OPERATION", "MANAGER", "GENERATION"]
    assert [row[2:] for row in writes[1:]] == [
        ["alice", "kubectl-audited", "patch", "ui", "4"],
        ["admin", "kubectl-audited", "replace", "cli", "3"],
        # kubectl's own follow-up: it gives its record of the last client-side apply a manager of its own.
        ["alice", "kubectl-audited", "apply", "kubectl-last-applied", "2"],
        ["alice", "kubectl-audited", "apply", "kubectl", "2"],
        ["admin", "kubectl-audited", "create", "kubectl-client-side-apply", "1"],
    ]
    by_alice = ok(dirctl("get", "writes", "--user", "alice", "--site", "kubectl-audited"))
    assert [row.split()[3] for row in by_alice.splitlines()[1:]] == ["kubectl-audited"] * 3
    # A user sees the writes to the sites they may read, and no others.
    write_manifest(tmp_path / "bobs.yaml", site_manifest("bobs", ["bob"]))
    ok(kubectl("apply", "-f", "bobs.yaml"))
    seen_by_alice = ok(dirctl("get", "writes", who="alice"))
    assert {row.split()[3] for row in seen_by_alice.splitlines()[1:]} == {"kubectl-audited"}
    hidden = dirctl("get", "writes", "--site", "bobs", who="alice")
    assert hidden.returncode == 4 and 'site "bobs" not found' in hidden.stderr


def test_table_rows_carry_what_include_object_asks(api, kubectl, tmp_path):
    document = site_manifest("tabled")
    document["metadata"] = {"name": "tabled", "labels": {"tier": "web"}}
    write_manifest(tmp_path / "site.yaml", document)
    ok(kubectl("apply", "--server-side", "-f", "site.yaml"))
    table = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    with api.client() as admin:
        [default] = admin.get("/apis/director.io/v1/sites", headers=table).json()["rows"]
        assert default["object"]["kind"] == "PartialObjectMetadata"
        assert default["object"]["metadata"]["labels"] == {"tier": "web"}
        # Ownership is Director's own bookkeeping, not shown as an annotation.
        assert "director.io/managed-fields" not in default["object"]["metadata"].get("annotations", {})
        [bare] = admin.get(
            "/apis/director.io/v1/sites", params={"includeObject": "None"}, headers=table
        ).json()["rows"]
        assert set(bare) == {"cells"} and bare["cells"][0] == "tabled"
        [whole] = admin.get(
            "/apis/director.io/v1/sites", params={"includeObject": "Object"}, headers=table
        ).json()["rows"]
        assert whole["object"]["kind"] == "Site" and whole["object"]["spec"]["owners"] == ["alice"]
        refused = admin.get("/apis/director.io/v1/sites", params={"includeObject": "All"}, headers=table)
        assert (
            refused.status_code == 400 and refused.json()["details"]["causes"][0]["field"] == "includeObject"
        )
    shown = ok(kubectl("get", "sites", "--show-labels"))
    assert shown.splitlines()[1].split()[-1] == "tier=web"
