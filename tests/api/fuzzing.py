"""Bad input at scale: hypothesis strategies for hostile API requests, the rules every answer must keep, and a
live server of its own to send them to.

A request (a `Probe`) is a caller (an admin, a normal user, nobody, a component, or a forged or mangled
credential), a method, a path of Director's API with names well-formed and not, a query string of the
parameters Kubernetes clients send, headers, and a body: documents generated from the pydantic models in
specs/ (valid ones, and ones with a field replaced by a hostile value) in JSON and YAML, or hostile texts
(deep, huge, keys given twice, anchors and aliases, tags, bad encodings, numbers past every limit).

What must hold (`problems`): no answer is a 5xx or carries a traceback; every failure is a well-formed
Kubernetes Status whose code is the HTTP status; a success is a resource, a list or a Status (or a file, a
log or a watch stream of such objects); and nothing is written by a refused request, a read or a dry run:
the records, the site files and the database rows are compared before and after each request.

The server has a state directory of its own (its writes never touch the session's shared `api` server), and
is seeded with sites, a GitSource with a webhook, a secret, a blocked domain and an SSH key so that requests
reach the code past the "not found". `python -m tests.api.fuzzing seed STATE_DIR` makes its users and
tokens in a process of its own, since this process's Django may already be bound to another state dir.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import yaml
from hypothesis import strategies as st

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

V1 = "/apis/director.io/v1"
AUTH = "/apis/auth.director.io/v1"
SITES = f"{V1}/sites"
PASSWORDS = {"admin": "admin-password", "alice": "alice-password", "bob": "bob-password"}
# Names the seed creates, so that requests get past "not found" to the code behind.
SEEDED_SITES = ("alice-site", "bob-site", "alice-app")
# Each seeded site's owner and spec beyond that: a dynamic one has logs (tests/api/live_server.py's files).
_SEEDED_SPECS: dict[str, dict[str, Any]] = {
    "alice-site": {"owners": ["alice"], "domains": ["alice-site.example.org"]},
    "bob-site": {"owners": ["bob"], "domains": ["bob-site.example.org"]},
    "alice-app": {"owners": ["alice"], "type": "dynamic", "image": "nginx:1"},
}
SEEDED_SOURCE = "alice-src"
SEEDED_SECRET = "alice-hook"
HOOK_KEY = "fuzz-hmac-key"
SEEDED_BLOCKED = "blocked.example.org"
STREAM_BUDGET_SECONDS = 3.0
# ui/urls.py's API_ROOTS (importing that module needs Django set up): the first segment of an API URL.
API_ROOTS = frozenset({"apis", "shell-server", "controller", "hooks"})


# ---- the server ----------------------------------------------------------------------------------------


def _seed_users(state_dir: Path) -> dict[str, str]:
    """Runs in a process of its own (`seed`): migrate, make the callers, answer their tokens."""
    os.environ["DIRECTOR_STATE_DIR"] = str(state_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from api.auth import (
        CONTROLLER_SCOPE,
        CONTROLLER_USER,
        SHELL_SERVER_SCOPE,
        ensure_admin_group,
        issue_token,
    )

    call_command("migrate", interactive=False, verbosity=0)
    tokens = {}
    for name, password in PASSWORDS.items():
        user = User.objects.create_user(name, password=password)
        if name == "admin":
            user.groups.add(ensure_admin_group())
        tokens[name] = issue_token(user, "fuzz")[1]
    tokens["shell"] = issue_token(
        User.objects.create_user("shell-server"), "shell", scope=SHELL_SERVER_SCOPE
    )[1]
    controller = User.objects.create_user(CONTROLLER_USER)
    tokens["controller"] = issue_token(controller, "controller", scope=CONTROLLER_SCOPE)[1]
    return tokens


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def public_key() -> str:
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519", comment="fuzz@laptop")
    return key.export_public_key().decode().strip()


@dataclass
class Target:
    """A live API server over a state directory of its own, and its callers' tokens."""

    url: str
    state_dir: Path
    tokens: dict[str, str]
    ssh_key: str

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def seed(self) -> None:
        """(Re)create what requests should find; what is there already is left as it is."""
        from store.sitefiles import FIRST_SITE_UID

        for index, name in enumerate(SEEDED_SITES):
            # What the controller makes at a site's first reconcile: without it every file request is a 409.
            for part in ("", "public", "private"):
                directory = self.state_dir / "sites" / name / part
                directory.mkdir(parents=True, exist_ok=True)
                os.chown(directory, FIRST_SITE_UID + index, FIRST_SITE_UID + index)
        (self.state_dir / "test-logs" / "alice-app.log").write_text("one\ntwo\nthree\n")
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for name, spec in _SEEDED_SPECS.items():
                client.post(
                    SITES,
                    headers=self.auth("admin"),
                    json={
                        "apiVersion": "director.io/v1",
                        "kind": "Site",
                        "metadata": {"name": name, "labels": {"tier": "web"}},
                        "spec": spec,
                    },
                )
            client.put(
                f"{SITES}/alice-site/files/public/index.html",
                headers=self.auth("alice"),
                content=b"<p>hi</p>",
            )
            client.post(
                f"{V1}/secrets",
                headers=self.auth("alice"),
                json={"metadata": {"name": SEEDED_SECRET}, "stringData": {"hmac": HOOK_KEY}},
            )
            client.patch(
                f"{V1}/gitsources/{SEEDED_SOURCE}?fieldManager=fuzz",
                headers=self.auth("alice") | {"Content-Type": "application/apply-patch+yaml"},
                content=yaml.safe_dump(
                    {
                        "apiVersion": "director.io/v1",
                        "kind": "GitSource",
                        "metadata": {"name": SEEDED_SOURCE},
                        "spec": {
                            "url": "https://git.example.org/alice/site.git",
                            "webhook": {"secretRef": {"name": SEEDED_SECRET}},
                        },
                    }
                ),
            )
            client.post(
                f"{V1}/blockeddomains",
                headers=self.auth("admin"),
                json={"metadata": {"name": SEEDED_BLOCKED}, "spec": {"reason": "fuzz"}},
            )
            client.post(f"{AUTH}/sshkeys", headers=self.auth("alice"), json={"publicKey": self.ssh_key})


@contextlib.contextmanager
def live_target(server_from: Path = REPO) -> Iterator[Target]:
    """A server of this checkout, or of `server_from` (another checkout, say main, to count what it lets
    through), over a new state directory seeded by this one."""
    with tempfile.TemporaryDirectory(prefix="director-fuzz-") as directory:
        state_dir = Path(directory)
        (state_dir / "test-logs").mkdir()
        env = os.environ | {
            "DIRECTOR_STATE_DIR": str(state_dir),
            "DJANGO_SETTINGS_MODULE": "ui.settings",
            "PYTHONPATH": str(REPO),
            "DIRECTOR_ADMIN_ONLY_DOMAINS": "school.example.edu",
            "DIRECTOR_API_TLS": "off",
        }
        seeded = subprocess.run(
            [sys.executable, "-m", "tests.api.fuzzing", "seed", str(state_dir)],
            cwd=REPO,
            env=env,
            capture_output=True,
            check=True,
        )
        tokens = json.loads(seeded.stdout.decode().strip().splitlines()[-1])
        port = _free_port()
        log = (state_dir / "server.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.api.live_server", str(port)],
            cwd=server_from,
            env=env | {"PYTHONPATH": str(server_from)},
            stdout=log,
            stderr=log,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/apis", timeout=1).status_code == 401:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((state_dir / "server.log").read_text())
                time.sleep(0.05)
            target = Target(url, state_dir, tokens, public_key())
            target.seed()
            yield target
        finally:
            process.terminate()
            process.wait(timeout=10)
            log.close()


# ---- what the store holds ---------------------------------------------------------------------------------

# Every directory the API writes records or site files into, and the store's version counter.
_STATE_PARTS = ("specs", "status", "history", "claims", "sites", ".resource-version")
# The database rows a request may write, without the columns a read writes by design (a token's lastUsed).
_TABLES = {
    "auth_user": "id, username, is_active, is_superuser, password",
    "auth_user_groups": "user_id, group_id",
    "api_apitoken": "id, name, scope, expires, revoked, parent_id, user_id",
    "api_blockeddomain": "id, domain, reason, blocked_by",
    "api_sshkey": "id, user_id, name, fingerprint, public_key",
    "api_secret": "*",
    "api_writerecord": "*",
}


def snapshot(state_dir: Path) -> dict[str, str]:
    """What a write would change: each record and site file by its content, each table by its rows."""
    seen: dict[str, str] = {}
    for part in _STATE_PARTS:
        root = state_dir / part
        if root.is_file():
            seen[part] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        for directory, subdirectories, files in os.walk(root):
            subdirectories.sort()
            # A store makes its empty directories when it is first opened, reads too; a site's folders are
            # its files, though.
            entries = (*subdirectories, *sorted(files)) if part == "sites" else sorted(files)
            for name in entries:
                path = Path(directory, name)
                relative = str(path.relative_to(state_dir))
                if path.is_symlink() or not path.is_file():
                    seen[relative] = f"{'link' if path.is_symlink() else 'dir'} {path.lstat().st_mode:o}"
                else:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    seen[relative] = f"{path.stat().st_mode:o} {digest}"
    database = sqlite3.connect(f"file:{state_dir / 'director.sqlite3'}?mode=ro", uri=True, timeout=30)
    try:
        for table, columns in _TABLES.items():
            rows = database.execute(f"SELECT {columns} FROM {table} ORDER BY 1").fetchall()
            seen[f"table {table}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    finally:
        database.close()
    return seen


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


# ---- requests -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One request: who sends it (a name in Target.tokens, or a label of a forged header), and what."""

    who: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, bytes], ...] = ()
    body: bytes = b""
    # What the path is, for grouping findings: "sites/{name}/files/{path}".
    route: str = ""

    def query_value(self, name: str) -> str | None:
        return next((value for key, value in self.query if key == name), None)

    def describe(self) -> str:
        query = "&".join(f"{key[:40]!r}={value[:40]!r}" for key, value in self.query)
        headers = ", ".join(f"{key}: {value[:60]!r}" for key, value in self.headers if key != "Authorization")
        body = self.body[:300]
        return (
            f"{self.method} {self.path}{'?' + query if query else ''} as {self.who}\n"
            f"  headers: {headers}\n  body ({len(self.body)} bytes): {body!r}"
        )


def _spread(value: int) -> int:
    """0-999, spread evenly: hypothesis draws the ends of a range (0, the maximum, small numbers) far more
    often than the rest, which would turn a rare choice into a common one."""
    return (value + 12345) * 2654435761 % 2**32 % 1000


_HOSTILE_TEXTS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\n",
    "é",
    "日本語",
    "\u202e",
    "\ufeff",
    "😀" * 3,
    "\ud800",
    "../../etc/passwd",
    "..",
    ".",
    "%2e%2e",
    "a/b",
    "${HOME}",
    "{{7*7}}",
    "; rm -rf /",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "-1",
    "0",
    "1e309",
    "NaN",
    "true",
    "null",
    "~",
    "a" * 300,
    "x" * 10_000,
]
# What broke things before, drawn more often than the rest: half a surrogate pair, NUL, numbers past 64 bits.
_POTENT_TEXTS = ["\ud800", "a\udfffb", "\x00", "99999999999999999999", "-9223372036854775809", "é", ""]
hostile_text = st.one_of(
    st.sampled_from(_POTENT_TEXTS), st.sampled_from(_HOSTILE_TEXTS), st.text(max_size=40)
)
_huge_numbers = st.sampled_from([2**63, 2**63 - 1, 2**64, -(2**63) - 1, 10**20, 10**400]).map(str)
# Site names: the seeded ones, new well-formed ones, and ones no site may have.
names = (
    st.integers(0, 2**32)
    .map(lambda value: _spread(value))
    .flatmap(
        lambda pick: (
            st.sampled_from([*SEEDED_SITES, SEEDED_SOURCE, SEEDED_SECRET, "fuzz-new", "admin"])
            if pick < 600
            else st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
            if pick < 800
            else hostile_text
        )
    )
)
file_paths = st.one_of(
    st.sampled_from(["public/index.html", "public", "private/x", "public/new.txt", "a/b/c/d", ".ssh/keys"]),
    st.lists(hostile_text, min_size=1, max_size=4).map("/".join),
)


def _segment(text: str) -> str:
    # A name is sent as the client would encode it; '/' too, so that it stays one segment.
    return quote(text.encode("utf-8", "surrogatepass"), safe="") or "%20"


def _file_path(text: str) -> str:
    return "/".join(_segment(part) for part in text.split("/")) or "%20"


@dataclass(frozen=True)
class Route:
    """A path of the API, the methods it serves and what its writes take (a key of `_DOCUMENTS`)."""

    template: str
    methods: tuple[str, ...]
    body: str = "none"


ROUTES = (
    Route("/apis", ("GET",)),
    Route(V1, ("GET",)),
    # The routes that write records, thrice: that is where a partial write would be.
    *[Route(SITES, ("GET", "POST"), "site")] * 3,
    *[Route(SITES + "/{name}", ("GET", "PUT", "PATCH", "DELETE"), "site")] * 3,
    *[Route(V1 + "/gitsources/{name}", ("GET", "PATCH", "DELETE"), "gitsource")] * 2,
    *[Route(SITES + "/{name}/files/{path}", ("GET", "PUT", "POST", "PATCH", "DELETE"), "file")] * 2,
    Route(SITES + "/{name}/status", ("GET",)),
    Route(SITES + "/{name}/history", ("GET",)),
    Route(SITES + "/{name}/events", ("GET",)),
    Route(SITES + "/{name}/logs", ("GET",)),
    Route(SITES + "/{name}/files", ("GET",)),
    *[Route(V1 + "/events", ("GET",))] * 2,
    Route(V1 + "/platforms", ("GET",)),
    Route(V1 + "/platforms/{name}", ("GET",)),
    Route(V1 + "/blockeddomains", ("GET", "POST"), "blocked"),
    Route(V1 + "/blockeddomains/{domain}", ("GET", "DELETE")),
    Route(V1 + "/gitsources", ("GET", "POST"), "gitsource"),
    Route(V1 + "/gitsources/{name}/events", ("GET",)),
    Route(V1 + "/secrets", ("GET", "POST"), "secret"),
    Route(V1 + "/secrets/{name}", ("GET", "DELETE")),
    Route(AUTH + "/sshkeys", ("GET", "POST"), "sshkey"),
    Route(AUTH + "/sshkeys/{name}", ("GET", "DELETE")),
    Route(AUTH + "/tokens", ("GET", "POST"), "token"),
    # Never a real token's id: revoking the fuzzer's own credentials would end the run.
    Route(AUTH + "/tokens/{id}", ("GET", "DELETE")),
    Route(AUTH + "/login", ("POST",)),
    Route("/hooks/gitsources/{name}", ("POST",), "any"),
    Route("/controller/v1/gitsources/{name}/credentials", ("GET",)),
    Route("/shell-server/v1/users/{name}/sites", ("GET",)),
    Route("/shell-server/v1/authenticate", ("POST",), "any"),
    Route("/shell-server/v1/publickey", ("POST",), "any"),
    Route(V1 + "/{name}", ("GET",)),
    Route("/apis/{name}/v1/sites", ("GET",)),
    Route(SITES + "/{name}/{name}", ("GET",)),
    Route(SITES + "/", ("GET",)),
)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "get", "BREW")


@st.composite
def paths(draw: st.DrawFn, route: Route) -> str:
    path = route.template.replace("{name}", _segment(draw(names)))
    path = path.replace("{path}", _file_path(draw(file_paths)))
    path = path.replace("{domain}", _segment(draw(st.sampled_from([SEEDED_BLOCKED, "x.org"]) | hostile_text)))
    return path.replace("{id}", str(draw(st.integers(10**6, 10**12))))


_QUERY_VALUES: dict[str, st.SearchStrategy[str]] = {
    "labelSelector": st.one_of(
        st.sampled_from(
            [
                "tier=web",
                "tier!=web",
                "tier in (web,db)",
                "tier notin (web)",
                "!tier",
                "tier",
                "tier==web,app",
                "tier in ()",
                "tier in (web",
                "(((",
                "=",
                "a=b=c",
                "tier in (" + ",".join(["x"] * 5000) + ")",
            ]
        ),
        hostile_text,
    ),
    "fieldSelector": st.one_of(
        st.sampled_from(
            ["metadata.name=alice-site", "metadata.name==bob-site", "metadata.name=", "spec.x=y"]
        ),
        hostile_text,
    ),
    "limit": st.one_of(st.integers(-5, 2000).map(str), _huge_numbers, hostile_text),
    "continue": st.one_of(st.integers(-5, 10**20).map(str), _huge_numbers, hostile_text),
    "watch": st.sampled_from(["true", "false", "1", "0", "", "yes", "TRUE", "\x00"]),
    "timeoutSeconds": st.sampled_from(["0", "0.2", "abc", "-3", "nan", ""]),
    "resourceVersion": st.one_of(st.integers(-1, 10**20).map(str), _huge_numbers, hostile_text),
    "dryRun": st.sampled_from(["All", "All", "all", "", "None", "Client"]),
    "fieldManager": st.one_of(st.sampled_from(["cli", "ui", "kubectl", "before-first-apply"]), hostile_text),
    "force": st.sampled_from(["true", "false", "", "maybe"]),
    "depth": st.one_of(st.integers(-2, 20).map(str), _huge_numbers, hostile_text),
    "path": st.one_of(file_paths, hostile_text),
    "type": st.sampled_from(["directory", "file", ""]),
    "owner": st.sampled_from(["alice", "bob", "admin", "nobody", "", "é"]),
    "uid": st.one_of(st.uuids().map(str), hostile_text),
    "tailLines": st.one_of(st.integers(-5, 10**6).map(str), _huge_numbers, hostile_text),
    "follow": st.sampled_from(["true", "false", "x"]),
    "tokenName": hostile_text,
}
queries = st.lists(
    st.tuples(st.sampled_from(list(_QUERY_VALUES)), st.just("")).flatmap(
        lambda pair: st.tuples(st.just(pair[0]), _QUERY_VALUES[pair[0]])
    )
    | st.tuples(hostile_text, hostile_text),
    max_size=4,
).map(tuple)


# Header values h11 will send: visible ASCII, spaces and tabs, and bytes past ASCII.
_HEADER_BYTES = st.binary(max_size=60).map(
    lambda raw: bytes(b for b in raw if b >= 0x20 and b != 0x7F).strip()
)

CONTENT_TYPES = [
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
    "application/apply-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "text/yaml",
    "application/x-yaml",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "APPLICATION/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    ";",
    "",
]
ACCEPTS = [
    "application/json",
    "application/yaml",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/yaml;as=Table;v=v1;g=meta.k8s.io",
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json",
    "*/*",
    "text/html",
    "application/vnd.kubernetes.protobuf",
    "",
]


def authorization(target_tokens: dict[str, str], who: str) -> st.SearchStrategy[tuple[str, bytes | None]]:
    """The caller's own credential mostly; sometimes one forged, mangled or of another kind."""
    token = target_tokens.get(who, "")
    basic = base64.b64encode(f"{who}:{PASSWORDS.get(who, 'x')}".encode()).decode()
    proper = f"Bearer {token}".encode() if token else None
    variants: list[tuple[str, bytes | None]] = [
        ("no credential", None),
        ("empty bearer", b"Bearer "),
        ("unknown token", b"Bearer dir_" + b"A" * 43),
        ("lower-case scheme", f"bearer {token}".encode()),
        ("padded token", f"Bearer   {token}".encode()),
        ("token with a suffix", f"Bearer {token}x".encode()),
        ("basic", f"Basic {basic}".encode()),
        ("bad basic", b"Basic !!!"),
        ("scheme only", b"Bearer"),
        ("shell-server token", f"Bearer {target_tokens['shell']}".encode()),
        ("controller token", f"Bearer {target_tokens['controller']}".encode()),
        ("huge token", b"Bearer " + b"x" * 8000),
    ]
    return st.integers(0, 9).flatmap(
        lambda pick: (
            st.just((who, proper))
            if pick < 7
            else st.sampled_from(variants)
            if pick < 9
            else _HEADER_BYTES.map(lambda raw: ("raw", raw))
        )
    )


# ---- bodies ---------------------------------------------------------------------------------------------


def from_schema(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a JSON schema (pydantic's, of the models in specs/) describes. Optional fields come and go;
    the validators pydantic runs past the schema (reserved names, ranges of memory) are not known here."""
    if "$ref" in schema:
        definition = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
        return st.deferred(lambda: from_schema(definition, root))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema(option, root) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "string":
        if "pattern" in schema:
            text = st.from_regex(schema["pattern"], fullmatch=True)
        elif schema.get("format") == "date-time":
            text = st.datetimes().map(lambda moment: moment.isoformat() + "Z")
        else:
            text = st.text(max_size=20)
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        return text.filter(lambda value: len(value) >= low and (high is None or len(value) <= high))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1e6))
        return st.floats(low, schema.get("maximum", 1e6), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {}), root)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        # A resource's status is the controller's: the API drops it, and generating it costs most of the time.
        optional = {key for key in properties if key not in required and key != "status"}
        fixed = st.fixed_dictionaries(
            {key: from_schema(properties[key], root) for key in required},
            optional={key: from_schema(properties[key], root) for key in optional},
        )
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            patterns = schema.get("patternProperties") or {}
            key_schema = schema.get("propertyNames") or (
                {"type": "string", "pattern": next(iter(patterns))} if patterns else {"type": "string"}
            )
            values = from_schema(next(iter(patterns.values())) if patterns else extra, root)
            mapping = st.dictionaries(from_schema(key_schema, root), values, max_size=3)
            return st.tuples(fixed, mapping).map(lambda pair: pair[1] | pair[0])
        return fixed
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10), _containers, max_leaves=5
    )


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)


hostile_values: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(
        [0, -1, 2**63, -(2**63) - 1, 10**30, 1.5, float("nan"), float("inf"), -float("inf"), 1e-320]
    ),
    hostile_text,
    st.recursive(hostile_text | st.integers() | st.none(), _containers, max_leaves=8),
)


@functools.cache
def _site_schema() -> dict[str, Any]:
    from specs.models import Site

    return Site.model_json_schema(by_alias=True)


@functools.cache
def _gitsource_schema() -> dict[str, Any]:
    from specs.gitsource import GitSource

    return GitSource.model_json_schema(by_alias=True)


def _locations(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found.extend(_locations(value, (*prefix, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.extend(_locations(value, (*prefix, index)))
    return found


def _retyped(value: Any) -> Any:
    """The same value as another JSON type: text as a number or a list, a number as text, and so on."""
    if isinstance(value, str):
        return int(value) if value.isdigit() else [value]
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int | float):
        return {"value": value}
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    return [value]


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> Any:
    """A document with up to three places replaced by hostile values, removed, or given an unknown key."""
    document = draw(documents)
    for _ in range(draw(st.integers(0, 3))):
        location = draw(st.sampled_from(_locations(document)))
        action = draw(st.sampled_from(["replace", "replace", "retype", "remove", "add"]))
        if not location:
            document = draw(hostile_values) if action == "replace" else document
            continue
        parent = document
        for step in location[:-1]:
            parent = parent[step]
        last = location[-1]
        if action == "replace":
            parent[last] = draw(hostile_values)
        elif action == "retype":
            parent[last] = _retyped(parent[last])
        elif action == "remove":
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last][draw(hostile_text)] = draw(hostile_values)
    return document


def _with_callers(document: dict[str, Any], name: str, owners: list[str] | None) -> dict[str, Any]:
    """Mostly the seeded names and real owners, so that some writes succeed and reach the store."""
    metadata = document.get("metadata")
    if isinstance(metadata, dict):
        metadata["name"] = name
    spec = document.get("spec")
    if isinstance(spec, dict) and owners is not None:
        spec["owners"] = owners
    return document


@st.composite
def _few_fields(draw: st.DrawFn, schema: dict[str, Any], root: dict[str, Any], base: dict[str, Any]) -> Any:
    """`base` with up to three more of the schema's fields: a document with every field is rarely valid."""
    properties = schema["properties"]
    chosen = draw(st.lists(st.sampled_from(sorted(properties)), max_size=3, unique=True))
    return base | {key: draw(from_schema(properties[key], root)) for key in chosen if key not in base}


@st.composite
def site_documents(draw: st.DrawFn) -> Any:
    """A Site from the model's schema: whole (rarely valid), or a few fields on a minimal valid one."""
    schema = _site_schema()
    name = draw(st.sampled_from([*SEEDED_SITES, "fuzz-new", "fuzz-two"]) | names)
    owners = draw(st.sampled_from([["alice"], ["bob"], ["alice", "bob"], ["admin"], None]))
    if chance(draw, 0.3):
        return _with_callers(draw(from_schema(schema, schema)), name, owners)
    definitions = schema["$defs"]
    base: dict[str, Any] = {"name": name}
    if chance(draw, 0.15):
        base["resourceVersion"] = draw(st.integers(0, 99).map(str) | hostile_values)
    return {
        "apiVersion": "director.io/v1",
        "kind": "Site",
        "metadata": draw(_few_fields(definitions["ObjectMeta"], schema, base)),
        "spec": draw(_few_fields(definitions["SiteSpec"], schema, {"owners": owners or ["alice"]})),
    }


@st.composite
def gitsource_documents(draw: st.DrawFn) -> Any:
    schema = _gitsource_schema()
    name = draw(st.sampled_from([SEEDED_SOURCE, "fuzz-src"]) | names)
    if chance(draw, 0.3):
        document = draw(from_schema(schema, schema))
        if isinstance(document.get("metadata"), dict):
            document["metadata"]["name"] = name
        return document
    definitions = schema["$defs"]
    url = draw(st.sampled_from(["https://git.example.org/a/b.git", "file:///etc", "ssh://git@x.org/r"]))
    return {
        "apiVersion": "director.io/v1",
        "kind": "GitSource",
        "metadata": draw(_few_fields(definitions["GitSourceMeta"], schema, {"name": name})),
        "spec": draw(_few_fields(definitions["GitSourceSpec"], schema, {"url": url})),
    }


def _documents(ssh_key: str) -> dict[str, st.SearchStrategy[Any]]:
    """What each kind of route takes in a write, well-formed or nearly so."""
    return {
        "site": site_documents(),
        "gitsource": gitsource_documents(),
        "secret": st.fixed_dictionaries(
            {
                "metadata": st.fixed_dictionaries(
                    {"name": st.sampled_from([SEEDED_SECRET, "fuzz-secret"]) | names}
                ),
                "stringData": st.dictionaries(
                    st.sampled_from(["hmac", "token", "password", "username", "bogus"]),
                    hostile_text,
                    max_size=3,
                ),
            }
        ),
        "blocked": st.fixed_dictionaries(
            {
                "metadata": st.fixed_dictionaries(
                    {"name": st.sampled_from([SEEDED_BLOCKED, "fuzz.example.org"]) | names}
                ),
                "spec": st.fixed_dictionaries({}, optional={"reason": hostile_text}),
            }
        ),
        "sshkey": st.fixed_dictionaries(
            {"publicKey": st.sampled_from([ssh_key, ssh_key + "\n" + ssh_key]) | hostile_text},
            optional={"name": names},
        ),
        "token": st.fixed_dictionaries(
            {}, optional={"name": hostile_text, "expiresInSeconds": hostile_values}
        ),
        "delete": st.fixed_dictionaries(
            {},
            optional={
                "apiVersion": st.just("v1"),
                "kind": st.just("DeleteOptions"),
                "preconditions": st.fixed_dictionaries(
                    {},
                    optional={
                        "resourceVersion": st.integers(0, 100).map(str) | hostile_values,
                        "uid": st.uuids().map(str),
                    },
                ),
                "propagationPolicy": st.sampled_from(["Background", "Foreground", "Orphan"]),
                "dryRun": st.just(["All"]),
            },
        ),
        "file": st.one_of(
            st.fixed_dictionaries({}, optional={"name": file_paths, "executable": hostile_values}),
            st.fixed_dictionaries(
                {"preconditions": st.fixed_dictionaries({"resourceVersion": hostile_values})}
            ),
        ),
    }


def _yaml_text(document: Any) -> bytes:
    try:
        return yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, UnicodeError):
        return json.dumps(document).encode()


def _json_text(document: Any, ascii_only: bool) -> bytes:
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _nested(depth: int, opening: str, closing: str) -> bytes:
    return (opening * depth + closing * depth).encode()


_SITE_HEAD = "apiVersion: director.io/v1\nkind: Site\nmetadata: {name: fuzz-new}\n"
HOSTILE_BODIES: list[bytes] = [
    b"",
    b" \n",
    b"null",
    b"[]",
    b"{}",
    b'"text"',
    b"0",
    b"true",
    b"NaN",
    b"1" * 5000,
    b'{"spec": {"resources": {"cpus": 1e999}}}',
    b'{"spec": {"replicas": Infinity}}',
    b'{"metadata": {"name": "alice-site"}, "metadata": {"name": "bob-site"}}',
    b'{"metadata": {"name": "\\ud800"}}',
    b'{"metadata": {"name": "a\\u0000b"}}',
    b"\xff\xfe\x00\x00",
    b"\xc3\x28",
    "\ufeff{}".encode(),
    json.dumps({"metadata": {"name": "fuzz-new"}, "spec": {"owners": ["alice"]}}).encode("utf-16"),
    json.dumps({"metadata": {"name": "fuzz-new"}, "spec": {"owners": ["alice"]}}).encode("utf-32"),
    _nested(64, "[", "]"),
    _nested(65, "[", "]"),
    _nested(100_000, "[", "]"),
    _nested(100_000, "{", "}"),
    b'{"a":' * 70 + b"1" + b"}" * 70,
    ("a:\n" + "".join("  " * depth + "a:\n" for depth in range(1, 80))).encode(),
    (_SITE_HEAD + "spec: &s {owners: [alice]}\nother: *s\n").encode(),
    (_SITE_HEAD + "spec:\n  <<: {owners: [alice]}\n").encode(),
    b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
    b"!!python/object/apply:os.system ['touch /tmp/pwned']\n",
    (_SITE_HEAD + "spec: !!binary aGVsbG8=\n").encode(),
    (_SITE_HEAD + "spec: !!set {a, b}\n").encode(),
    (_SITE_HEAD + "spec: {owners: [alice]}\n---\n" + _SITE_HEAD + "spec: {owners: [bob]}\n").encode(),
    (_SITE_HEAD + "spec: {owners: [alice], owners: [bob]}\n").encode(),
    (_SITE_HEAD + "spec:\n\towners: [alice]\n").encode(),
    (_SITE_HEAD + "spec: {owners: [alice], replicas: 0x10, cpus: .inf}\n").encode(),
    (_SITE_HEAD + "spec: {owners: [alice], type: dynamic, replicas: yes}\n").encode(),
    (_SITE_HEAD + "spec: {owners: [alice]}\n? [complex, key]\n: value\n").encode(),
    (_SITE_HEAD + "spec: {owners: [alice]}\n1: integer key\n").encode(),
    (_SITE_HEAD + "spec: {owners: [alice]}\nnull: null key\n").encode(),
    b"%YAML 1.1\n%TAG ! tag:evil.example,2000:\n--- !thing\na: 1\n",
    b"a=1&" * 3000,
    b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="../../x"\r\n\r\nhi\r\n--xyz--\r\n',
    b'--xyz\r\nContent-Disposition: form-data; name="files"\r\n\r\nhi',
    b"x" * (3 * 1024 * 1024),
    (
        '{"metadata": {"name": "fuzz-new"}, "spec": {"owners": ["alice"], "env": {"A": "'
        + "v" * 40_000
        + '"}}}'
    ).encode(),
]


def bodies(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, bytes]]:
    """(what kind of body, its bytes): the documents as JSON or YAML, whole or mutated, or a hostile text."""
    return st.one_of(
        st.tuples(documents, st.booleans()).map(lambda pair: ("json", _json_text(pair[0], pair[1]))),
        documents.map(lambda document: ("yaml", _yaml_text(document))),
        mutated(documents).map(lambda document: ("json", _json_text(document, True))),
        mutated(documents).map(lambda document: ("yaml", _yaml_text(document))),
        st.sampled_from(HOSTILE_BODIES).map(lambda body: ("hostile", body)),
        st.binary(max_size=200).map(lambda body: ("binary", body)),
    )


_TYPE_OF_BODY = {
    "json": ["application/json", "application/merge-patch+json", "application/apply-patch+json"],
    "yaml": ["application/yaml", "application/apply-patch+yaml", "text/yaml"],
}


def pick(draw: st.DrawFn, choices: Sequence[T]) -> T:
    """One of `choices`, each about as often."""
    return choices[_spread(draw(st.integers(0, 2**32))) * len(choices) // 1000]


def chance(draw: st.DrawFn, probability: float) -> bool:
    """True about `probability` of the time."""
    return _spread(draw(st.integers(0, 2**32))) < probability * 1000


@st.composite
def probes(draw: st.DrawFn, target_tokens: dict[str, str], ssh_key: str, who: str) -> Probe:
    """Mostly a method the route serves with the body it takes, sometimes anything at all."""
    documents = _documents(ssh_key)
    route = pick(draw, ROUTES)
    path = draw(paths(route))
    method = pick(draw, route.methods if chance(draw, 0.85) else METHODS)
    if method == "DELETE" and chance(draw, 0.5):
        kind, body = draw(bodies(documents["delete"]))
    elif route.body in documents and chance(draw, 0.75):
        kind, body = draw(bodies(documents[route.body]))
    elif method in ("GET", "HEAD", "DELETE") and chance(draw, 0.75):
        kind, body = "none", b""
    else:
        kind, body = draw(bodies(st.one_of(list(documents.values()))))
    headers: list[tuple[str, bytes]] = []
    label, credential = draw(authorization(target_tokens, who))
    if credential is not None:
        headers.append(("Authorization", credential))
    if kind in _TYPE_OF_BODY and chance(draw, 0.8):
        content_type = draw(st.sampled_from(_TYPE_OF_BODY[kind]))
    else:
        content_type = draw(
            st.sampled_from(CONTENT_TYPES) | _HEADER_BYTES.map(lambda raw: raw.decode("latin-1"))
        )
    if content_type or draw(st.booleans()):
        headers.append(("Content-Type", content_type.encode("latin-1")))
    if chance(draw, 0.3):
        headers.append(("Accept", draw(st.sampled_from(ACCEPTS)).encode()))
    if chance(draw, 0.05):
        headers.append(
            (
                "Impersonate-User",
                draw(st.sampled_from([b"alice", b"bob", b"admin", b"nobody", b""]) | _HEADER_BYTES),
            )
        )
    if chance(draw, 0.05):
        headers.append(
            ("X-Hub-Signature-256", draw(st.sampled_from([b"sha256=00", b"", b"sha256="]) | _HEADER_BYTES))
        )
    if chance(draw, 0.02):
        headers.append(("Host", draw(st.sampled_from([b"evil.example", b"", b"127.0.0.1:1"]))))
    query = list(draw(queries))
    if method in ("PATCH", "POST", "PUT") and chance(draw, 0.5):
        query.append(("fieldManager", "fuzz"))  # what server-side apply needs to get past its first check
    if method in ("PATCH", "POST", "PUT", "DELETE") and chance(draw, 0.2):
        query.append(("dryRun", "All"))  # which must write nothing, or be refused
    if any(key == "watch" for key, _ in query) or chance(draw, 0.2):
        # A watch without an end holds the connection until the stream budget runs out, every time.
        query.append(("timeoutSeconds", draw(_QUERY_VALUES["timeoutSeconds"])))
    return Probe(label, method, path, tuple(query), tuple(headers), body, route.template)


# ---- sending and judging ------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    disposition: str = ""
    streamed: bool = False
    error: str = ""
    # The path as sent: the client resolves dot segments, which may take a request out of the API.
    sent_path: str = ""


def _query_string(query: tuple[tuple[str, str], ...]) -> str:
    """Encoded here, not by httpx: a lone surrogate goes as the bytes it would be (invalid UTF-8)."""
    if not query:
        return ""
    return "?" + "&".join(
        f"{quote(key.encode('utf-8', 'surrogatepass'), safe='')}="
        f"{quote(value.encode('utf-8', 'surrogatepass'), safe='')}"
        for key, value in query
    )


def send(client: httpx.Client, probe: Probe) -> Answer:
    """Send the probe; a stream is read for STREAM_BUDGET_SECONDS at most (a watch may go on for ever)."""
    client.cookies.clear()
    streaming = probe.query_value("watch") is not None or probe.query_value("follow") is not None
    try:
        request = client.build_request(
            probe.method,
            probe.path + _query_string(probe.query),
            headers=list(probe.headers),
            content=probe.body,
            # A watch or a followed log may send nothing for as long as it is open: wait for the next line
            # no longer than the budget.
            timeout=httpx.Timeout(30, read=STREAM_BUDGET_SECONDS) if streaming else httpx.USE_CLIENT_DEFAULT,
        )
        if not probe.body:
            request.headers.pop("Content-Length", None)
        response = client.send(request, stream=True)
    except (httpx.InvalidURL, httpx.LocalProtocolError) as error:
        # Not a request HTTP/1.1 can carry (h11 refuses it): nothing reached the server.
        return Answer(0, "", b"", error=f"not sendable: {error}")
    except httpx.ReadTimeout as error:
        if streaming:
            # A stream that has not even begun within the budget, on a busy machine: not judged.
            return Answer(0, "", b"", error=f"no answer within the stream budget: {error}")
        return Answer(-1, "", b"", error=f"{type(error).__name__}: {error}")
    except httpx.TransportError as error:
        return Answer(-1, "", b"", error=f"{type(error).__name__}: {error}")
    try:
        chunks: list[bytes] = []
        started = time.monotonic()
        streamed = False
        try:
            for chunk in response.iter_raw():
                chunks.append(chunk)
                if time.monotonic() - started > STREAM_BUDGET_SECONDS:
                    streamed = True
                    break
        except httpx.ReadTimeout:
            streamed = True
        except httpx.TransportError as error:
            return Answer(
                response.status_code, "", b"".join(chunks), error=f"{type(error).__name__}: {error}"
            )
        return Answer(
            response.status_code,
            response.headers.get("Content-Type", ""),
            b"".join(chunks),
            response.headers.get("Content-Disposition", ""),
            streamed,
            sent_path=request.url.path,
        )
    finally:
        response.close()


def _parsed(answer: Answer) -> Any:
    if answer.content_type.startswith("application/yaml"):
        return yaml.safe_load(answer.body)
    return json.loads(answer.body)


def status_problem(document: Any, code: int) -> str | None:
    """What makes `document` not a Kubernetes Status of this HTTP status code, if anything."""
    if not isinstance(document, dict) or document.get("kind") != "Status":
        return f"the answer is not a Status object: {str(document)[:200]!r}"
    expected = {"apiVersion": "v1", "status": "Failure" if code >= 400 else "Success", "code": code}
    wrong = {key: document.get(key) for key, value in expected.items() if document.get(key) != value}
    if wrong:
        return f"the Status has {wrong}, expected {expected}"
    if not isinstance(document.get("message"), str) or not document["message"]:
        return "the Status has no message"
    if code >= 400 and not isinstance(document.get("reason"), str):
        return "the Status has no reason"
    if "details" in document and not isinstance(document["details"], dict):
        return "the Status details are not a mapping"
    return None


def _dry_run_in_body(body: bytes) -> bool:
    """Whether the body is DeleteOptions asking for a dry run, as kubectl sends them."""
    if b"dryRun" not in body:
        return False
    try:
        options = yaml.safe_load(body)
    except (yaml.YAMLError, ValueError, RecursionError):
        return False
    return isinstance(options, dict) and options.get("dryRun") == ["All"]


def _writes_nothing(probe: Probe, answer: Answer) -> str | None:
    """Why this request must leave the store as it was, or None when it may write."""
    if answer.status >= 400 or answer.status <= 0:
        return f"it was refused ({answer.status})"
    if probe.method.upper() in ("GET", "HEAD", "OPTIONS"):
        return "it was a read"
    if probe.query_value("dryRun") == "All" or (probe.method == "DELETE" and _dry_run_in_body(probe.body)):
        return "it was a dry run"
    return None


def problems(probe: Probe, answer: Answer, written: list[str]) -> list[str]:
    """Every rule the answer breaks: (one line each)."""
    found: list[str] = []
    if answer.error and answer.status != 0:
        found.append(f"the connection failed: {answer.error}")
    if answer.status >= 500:
        found.append(f"HTTP {answer.status}")
    if b"Traceback (most recent call last)" in answer.body or b'File "/' in answer.body:
        found.append("the answer carries a traceback")
    why = _writes_nothing(probe, answer) if answer.status != 0 else None
    if why is not None and written:
        found.append(f"{why}, yet it wrote {', '.join(written[:5])}")
    if answer.status <= 0 or probe.method.upper() == "HEAD":
        return found
    if answer.sent_path.split("/", 2)[1] not in API_ROOTS:
        return found  # a web UI page: "/apis/../x" is sent as "/x"
    if answer.status >= 400 or (answer.status == 202 and probe.route.startswith("/hooks")):
        try:
            problem = status_problem(_parsed(answer), answer.status)
        except (ValueError, yaml.YAMLError):
            problem = f"the {answer.status} answer is not JSON or YAML: {answer.body[:200]!r}"
        if problem:
            found.append(problem)
        return found
    problem = _success_problem(probe, answer)
    if problem:
        found.append(problem)
    return found


def _success_problem(probe: Probe, answer: Answer) -> str | None:
    if answer.disposition.startswith("attachment") or answer.content_type.startswith("text/plain"):
        return None  # a file download or a log
    if "stream=watch" in answer.content_type:
        lines = answer.body.split(b"\n")
        if answer.streamed:
            lines = lines[:-1]  # the last may have been cut
        for line in filter(None, lines):
            try:
                event = json.loads(line)
            except ValueError:
                return f"a watch event is not JSON: {line[:200]!r}"
            if not isinstance(event, dict) or not {"type", "object"} <= event.keys():
                return f"a watch event is not {{type, object}}: {line[:200]!r}"
        return None
    try:
        document = _parsed(answer)
    except (ValueError, yaml.YAMLError):
        return (
            f"the {answer.status} answer is not JSON or YAML ({answer.content_type}): {answer.body[:200]!r}"
        )
    if not isinstance(document, dict) or not isinstance(document.get("kind"), str):
        return f"the {answer.status} answer is no resource, list or Status: {str(document)[:200]!r}"
    if document["kind"] == "Status":
        return status_problem(document, answer.status)
    return None


@dataclass
class Findings:
    """Problems grouped by what they are and where, with the first request that showed each."""

    examples: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    # Examples with no answer to judge (status 0), by why: see send().
    unanswered: dict[str, int] = field(default_factory=dict)
    first: dict[tuple[str, str, str], tuple[Probe, list[str]]] = field(default_factory=dict)
    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def record(self, probe: Probe, answer: Answer, found: list[str]) -> None:
        self.examples += 1
        if answer.status == 0:
            why = answer.error.split(":")[0]
            self.unanswered[why] = self.unanswered.get(why, 0) + 1
        else:
            self.by_status[answer.status] = self.by_status.get(answer.status, 0) + 1
        for problem in found:
            key = (probe.method.upper(), probe.route, problem.split(":")[0][:80])
            self.counts[key] = self.counts.get(key, 0) + 1
            self.first.setdefault(key, (probe, found))


def check(target: Target, client: httpx.Client, probe: Probe) -> tuple[Answer, list[str]]:
    before = snapshot(target.state_dir)
    answer = send(client, probe)
    written = changed(before, snapshot(target.state_dir))
    found = problems(probe, answer, written)
    if found or (answer.status < 400 and probe.method.upper() == "DELETE"):
        # Whatever went, the next requests should still find the seeded objects.
        target.seed()
    return answer, found


if __name__ == "__main__":
    if sys.argv[1:2] == ["seed"]:
        print(json.dumps(_seed_users(Path(sys.argv[2]))))
