"""A hostile site on the real Swarm: what its own code tries from inside its service, and what it gets.

The site's server is the probe: it runs as the site's command does (through Director's launcher, as the
site's uid), tries what a student's code could try, and answers what happened as JSON through the edge.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from reconciler_helpers import context, make_site, wait_for_http

from reconcilers.isolation import OPEN_FILES

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

PROCESS_LIMIT = 64
SPAWNED = 200
# Ports every Swarm node answers on all its addresses: the control port and the gossip port.
SWARM_PORTS = (2377, 7946)
PROBE_SECONDS = 90

PROBE = r"""
import errno, json, os, resource, socket, subprocess
from multiprocessing.pool import ThreadPool
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def status_fields():
    with open("/proc/self/status") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)

def gateway():
    with open("/proc/net/route") as routes:
        for line in list(routes)[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))

def connects(address, port):
    try:
        with socket.create_connection((address, port), timeout=3):
            return "connected"
    except OSError as error:
        return type(error).__name__

def spawn(count):
    children, refusal = [], None
    for _ in range(count):
        try:
            children.append(subprocess.Popen(["sleep", "60"]))
        except OSError as error:
            refusal = errno.errorcode.get(error.errno, str(error.errno))
            break
    for child in children:
        child.kill()
        child.wait()
    return {"started": len(children), "refusal": refusal}

def writes(directory):
    path = os.path.join(directory, "probe-%d" % os.getpid())
    try:
        with open(path, "w") as handle:
            handle.write("x")
        os.unlink(path)
        return "written"
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))

def setid_files():
    found = subprocess.run(["find", "/", "-xdev", "-perm", "/6000"], capture_output=True, text=True)
    return found.stdout.split()

SETUID_ID = "/usr/local/bin/setuid-id"

def setuid_id():
    return subprocess.run([SETUID_ID, "-u"], capture_output=True, text=True).stdout.strip()

def probe():
    env = os.environ
    targets = [(address, int(port)) for address in env["PROBE_ADDRESSES"].split(",") + [gateway()]
               for port in env["PROBE_PORTS"].split(",")]
    status = status_fields()
    return {
        "uid": os.getuid(),
        "NoNewPrivs": status["NoNewPrivs"].strip(),
        "CapEff": status["CapEff"].strip(),
        "CapPrm": status["CapPrm"].strip(),
        "CapBnd": status["CapBnd"].strip(),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
        "spawn": spawn(int(env["PROBE_SPAWN"])),
        "setid": setid_files(),
        "host": dict(zip(["%s:%d" % target for target in targets], ThreadPool(8).starmap(connects, targets))),
        "edge": connects(gateway(), int(env["PROBE_EDGE_PORT"])),
        "loopback": connects("127.0.0.1", int(env["PROBE_LOOPBACK_PORT"])),
        "docker_socket": [p for p in ("/var/run/docker.sock", "/run/docker.sock") if os.path.exists(p)],
        "neighbour": os.path.exists(env["PROBE_NEIGHBOUR_FILE"]) or os.path.exists(env["PROBE_SITES_DIR"]),
        "writes": {d: writes(d) for d in ("/", "/etc", "/usr/local/bin", "/var/tmp", "/home", "/root", "/opt",
                                          "/site/private", "/tmp", "/run", "/dev/shm")},
        "mount": subprocess.run(["mount", "-t", "tmpfs", "probe", "/tmp"], capture_output=True).returncode,
        "setuid_id": setuid_id() if os.path.exists(SETUID_ID) else None,
    }

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/probe":
            found = probe()
        else:
            edges = socket.gethostbyname_ex("tasks." + os.environ["PROBE_EDGE_SERVICE"])[2]
            found = {"headers": dict(self.headers.items()), "peer": self.client_address[0], "edges": edges}
        body = json.dumps(found).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


def _host_addresses() -> list[str]:
    """Every IPv4 address of this host but loopback (the bridges' gateways among them)."""
    listed = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    addresses = [line.split()[3].split("/")[0] for line in listed.splitlines()]
    return [address for address in addresses if not address.startswith("127.")]


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A port this host answers on every address: a site reaching it would reach any host service."""
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture
def loopback_listener() -> Iterator[int]:
    """A port on this host's loopback only, as the API's is."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture
def setuid_image(swarm, base_image, test_run, test_labels) -> Iterator[str]:
    """The site image plus a setuid-root `id`: what a site's own image (from anywhere) may well carry."""
    container = swarm.containers.run(
        base_image,
        ["sh", "-c", "cp /usr/bin/id /usr/local/bin/setuid-id && chmod 4755 /usr/local/bin/setuid-id"],
        detach=True,
        labels=test_labels,
    )
    try:
        assert container.wait(timeout=60)["StatusCode"] == 0
        repository = f"director-test/setuid-{test_run.new_instance()}"
        container.commit(repository=repository, tag="latest")
    finally:
        container.remove(force=True)
    yield f"{repository}:latest"
    swarm.images.remove(f"{repository}:latest", force=True)


async def _hostile_site(stack, write_site_file, name: str, image: str, env: dict[str, str]) -> str:
    site = make_site(name, type="dynamic", image=image, resources={"pids": PROCESS_LIMIT}, env=env)
    await stack.files.reconcile(site, context())
    write_site_file(name, "probe.py", PROBE, 0o640)
    write_site_file(name, "run.sh", "#!/bin/sh\nexec python3 /site/probe.py\n", 0o750)
    await stack.converge(site)
    ready = await stack.until_ready(site, 120)
    assert ready.ready, ready.message
    host = f"{name}.{stack.settings.sites_domain}"
    wait_for_http(stack.settings, host, 200, "{", seconds=60)
    return host


def _get(stack, host: str, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """What the site answered as JSON, waiting as long as its probe takes (spawning, connecting, finding)."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.settings.http_port, timeout=PROBE_SECONDS)
    try:
        connection.request("GET", path, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
    finally:
        connection.close()
    assert response.status == 200, body
    found: dict[str, Any] = json.loads(body)
    return found


async def test_a_site_s_own_code_finds_itself_confined(
    stack, write_site_file, host_listener, loopback_listener
):
    neighbour = make_site("neighbour")
    await stack.files.reconcile(neighbour, context())
    secret = write_site_file("neighbour", "private/secret.txt", "the neighbour's secret")
    env = {
        "PROBE_ADDRESSES": ",".join(_host_addresses()),
        "PROBE_PORTS": ",".join(str(port) for port in (*SWARM_PORTS, host_listener)),
        "PROBE_EDGE_PORT": str(stack.settings.http_port),
        "PROBE_EDGE_SERVICE": stack.settings.edge_service,
        "PROBE_LOOPBACK_PORT": str(loopback_listener),
        "PROBE_SPAWN": str(SPAWNED),
        "PROBE_NEIGHBOUR_FILE": str(secret),
        "PROBE_SITES_DIR": str(stack.settings.sites_dir),
    }
    host = await _hostile_site(stack, write_site_file, "hostile", stack.settings.site_image, env)
    found = _get(stack, host, "/probe")

    assert found["uid"] == stack.files.uid_of("hostile")
    assert found["NoNewPrivs"] == "1"
    assert found["CapEff"] == found["CapPrm"] == found["CapBnd"] == "0000000000000000"
    assert found["nofile"] == [OPEN_FILES, OPEN_FILES] and found["core"] == [0, 0]
    # Its server, shell and init count too: the 200th process is far beyond reach.
    assert found["spawn"]["refusal"] == "EAGAIN" and found["spawn"]["started"] < PROCESS_LIMIT
    assert found["setid"] == []
    assert found["mount"] != 0

    # The edge's published port is the one way to this host; the rest is refused, Swarm's ports included.
    assert found["edge"] == "connected"
    assert found["host"] and set(found["host"].values()) == {"ConnectionRefusedError"}, json.dumps(
        found["host"]
    )
    assert found["loopback"] == "ConnectionRefusedError"
    assert found["docker_socket"] == [] and found["neighbour"] is False

    writable = {directory for directory, result in found["writes"].items() if result == "written"}
    # Its tmpfs: /run is one, but Docker gives it the image's mode (root's 755), not the spec's 1777.
    assert {"/site/private", "/tmp"} <= writable <= {"/site/private", "/tmp", "/run", "/dev/shm"}, json.dumps(
        found["writes"]
    )

    # A client's own X-Forwarded-For and X-Real-IP never reach the site as if the edge had seen them.
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6", "Forwarded": "for=6.6.6.6"}
    received = _get(stack, host, "/headers", forged)
    headers = {key.lower(): value for key, value in received["headers"].items()}
    assert "6.6.6.6" not in json.dumps(headers) and "forwarded" not in headers
    assert headers["x-forwarded-for"] == headers["x-real-ip"] != ""
    # How a site tells the edge's requests from a neighbour's, as the README says: by the edges' addresses.
    assert received["peer"] in received["edges"]


async def test_a_setuid_program_in_a_site_s_own_image_gains_nothing(stack, write_site_file, setuid_image):
    env = {
        "PROBE_ADDRESSES": "127.0.0.1",
        "PROBE_PORTS": "1",
        "PROBE_EDGE_PORT": str(stack.settings.http_port),
        "PROBE_EDGE_SERVICE": stack.settings.edge_service,
        "PROBE_LOOPBACK_PORT": "1",
        "PROBE_SPAWN": "1",
        "PROBE_NEIGHBOUR_FILE": "/nothing",
        "PROBE_SITES_DIR": "/nothing",
    }
    host = await _hostile_site(stack, write_site_file, "setuid", setuid_image, env)
    found = _get(stack, host, "/probe")
    # The image does carry it: it is no-new-privileges that keeps it from running as root.
    assert "/usr/local/bin/setuid-id" in found["setid"]
    assert found["NoNewPrivs"] == "1"
    assert found["setuid_id"] == str(stack.files.uid_of("setuid"))
