"""The SSH shell with Debian's OpenSSH client, against Director whole (controller, API, shell server) on
the real Swarm: logins, the menu, commands and their exit status, the terminal, sftp and scp, who may enter
which site, session limits, events, and what a crash leaves behind."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time

import docker.errors
import pytest
from swarm_helpers import eventually, get, host_of

from reconcilers.isolation import OPEN_FILES
from reconcilers.terminals import DockerTerminals
from specs.terminal import STDOUT, TerminalRequest
from store.events import EventLog

pytestmark = [pytest.mark.swarm, pytest.mark.slow]


def no_terminal_left(director) -> None:
    eventually(lambda: not director.terminal_containers(), 60, "no terminal container left")


def test_a_key_login_runs_a_command_as_the_site_s_uid_in_its_directory(sites):
    answer = sites.ssh("alice/hello", "id -u; pwd; echo $HOME; ls /site")
    assert answer.returncode == 0, answer.stderr
    uid, cwd, home, listing = answer.stdout.split("\n", 3)
    assert int(uid) == (sites.settings.sites_dir / "hello").stat().st_uid >= 200_000
    assert (cwd, home) == ("/site", "/site/private/home")
    assert listing.split() == ["private", "public"]
    no_terminal_left(sites)


def test_an_unknown_key_and_another_user_s_key_are_refused(sites):
    stranger = sites.home / "id_stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    unknown = sites.ssh("alice/hello", "true", key=stranger)
    assert unknown.returncode == 255
    assert "Permission denied" in unknown.stderr
    bobs_key_as_alice = sites.ssh("alice/hello", "true", key=sites.keys["bob"])
    assert bobs_key_as_alice.returncode == 255
    assert not sites.terminal_containers()


def test_password_login_good_and_bad(sites):
    good = sites.ssh("alice/hello", "echo in", password="alice-password")
    assert (good.returncode, good.stdout.strip()) == (0, "in"), good.stderr
    bad = sites.ssh("alice/hello", "echo in", password="wrong")
    assert bad.returncode == 255
    assert "Permission denied" in bad.stderr


def test_the_exit_status_of_a_command_comes_back(sites):
    answer = sites.ssh("alice/hello", "echo out; echo err >&2; exit 3")
    assert (answer.returncode, answer.stdout, answer.stderr) == (3, "out\n", "err\n")


def test_standard_input_reaches_a_command_and_its_end_ends_it(sites):
    answer = sites.ssh("alice/hello", "wc -l", stdin="one\ntwo\nthree\n")
    assert (answer.returncode, answer.stdout.strip()) == (0, "3")


def test_the_menu_lists_alice_s_sites_and_takes_a_choice(sites):
    answer = sites.ssh("alice", tty=True, stdin="2\necho site=$SITE_NAME\nexit 7\n")
    assert "Sites of alice:" in answer.stdout
    assert "1) dyn" in answer.stdout and "2) hello" in answer.stdout
    assert "shut" not in answer.stdout  # disabled: not enterable by its owner
    assert "site=hello" in answer.stdout
    assert answer.returncode == 7


def test_without_a_site_and_without_a_terminal_the_server_says_which_to_name(sites):
    answer = sites.ssh("alice", "ls")
    assert answer.returncode == 1
    assert "ssh alice/SITE@HOST" in answer.stderr and "hello" in answer.stderr


def _read_until(descriptor: int, wanted: bytes, seconds: float = 180) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {wanted!r} within {seconds} s; the terminal showed {seen[-2000:]!r}")
        ready, _, _ = select.select([descriptor], [], [], left)
        if ready:
            try:
                chunk = os.read(descriptor, 4096)
            except OSError:
                break
            seen += chunk
    return seen


def _set_size(descriptor: int, rows: int, cols: int) -> None:
    fcntl.ioctl(descriptor, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_term_and_the_window_size_reach_the_shell_and_a_resize_follows(sites):
    main, child = pty.openpty()
    _set_size(child, 33, 101)
    argv, env = sites.ssh_argv("alice/hello", tty=False)
    argv = [part for part in argv if part != "-T"]
    argv.insert(1, "-t")
    ssh = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, env=env | {"TERM": "vt220"})
    os.close(child)
    try:
        os.write(main, b"echo TERM=$TERM SIZE=$(stty size)\n")
        _read_until(main, b"TERM=vt220 SIZE=33 101")
        _set_size(main, 40, 120)
        ssh.send_signal(signal.SIGWINCH)
        # ssh sends the window change when its loop next looks: ask until the shell sees it.
        deadline = time.monotonic() + 60
        seen = b""
        while b"NOW=40 120" not in seen:
            assert time.monotonic() < deadline, f"the resize never arrived: {seen[-500:]!r}"
            os.write(main, b"echo NOW=$(stty size)\n")
            seen += _read_until(main, b"NOW=")
            seen += _read_until(main, b"$ ")
        os.write(main, b"exit 0\n")
        assert ssh.wait(timeout=60) == 0
    finally:
        if ssh.poll() is None:
            ssh.kill()
        os.close(main)


def test_sftp_puts_a_file_the_edge_serves_owned_by_the_site_s_uid_and_stays_confined(sites, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<h1>put by sftp</h1>\n")
    site_dir = sites.settings.sites_dir / "hello"
    (site_dir / "private" / "out").symlink_to("/etc")
    batch = "\n".join(
        [
            f"put {page} public/page.html",
            "-cd /etc",
            "pwd",
            "cd ..",
            "cd ..",
            "pwd",
            "ls",
            "-get private/out/passwd " + str(tmp_path / "passwd"),
            "-get /etc/hostname " + str(tmp_path / "hostname"),
            "-put " + str(page) + " /etc/page.html",
        ]
    )
    argv, env = sites.ssh_argv("alice/hello", "-b", "-", program="sftp")
    answer = subprocess.run(
        argv, input=batch, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    # cd /etc fails (the site has no etc/), .. stays at the site's root, and nothing outside is reached.
    assert answer.stdout.count("Remote working directory: /\n") == 2
    assert not (tmp_path / "passwd").exists() and not (tmp_path / "hostname").exists()
    assert not (site_dir / "etc").exists()
    written = site_dir / "public" / "page.html"
    assert written.stat().st_uid == site_dir.stat().st_uid
    eventually(
        lambda: (
            get(sites.settings, host_of(sites.settings, "hello"), "/page.html")
            == (200, "<h1>put by sftp</h1>\n")
        ),
        30,
        "the edge serving the uploaded page",
    )
    no_terminal_left(sites)


def test_scp_both_ways(sites, tmp_path):
    upload = tmp_path / "up.txt"
    upload.write_text("scp up\n")
    argv, env = sites.ssh_argv("alice/hello", program="scp")
    to_site = subprocess.run(
        [*argv, "-o", "User=alice/hello", str(upload), "127.0.0.1:public/up.txt"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert to_site.returncode == 0, to_site.stderr
    assert (sites.settings.sites_dir / "hello" / "public" / "up.txt").read_text() == "scp up\n"
    back = tmp_path / "back.txt"
    url = f"scp://alice%2Fhello@127.0.0.1:{sites.ssh_port}/public/up.txt"
    from_site = subprocess.run(
        [*[part for part in argv if part not in ("-P", str(sites.ssh_port))], url, str(back)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert from_site.returncode == 0, from_site.stderr
    assert back.read_text() == "scp up\n"


def test_bob_cannot_enter_alice_s_site_nor_can_alice_a_disabled_one_but_an_admin_can_both(sites):
    bob = sites.ssh("bob/hello", "true")
    assert bob.returncode == 1
    assert 'you have no site named "hello"' in bob.stderr
    disabled = sites.ssh("alice/shut", "true")
    assert disabled.returncode == 1
    assert "disabled" in disabled.stderr
    for site in ("hello", "shut"):
        admin = sites.ssh(f"admin/{site}", "echo admin-in $SITE_NAME")
        assert (admin.returncode, admin.stdout.strip()) == (0, f"admin-in {site}"), admin.stderr
    no_terminal_left(sites)


def test_the_site_s_network_reaches_a_dynamic_site(sites):
    service = sites.settings.service_name("dyn")
    answer = sites.ssh("alice/hello", f"curl -s -o /dev/null -w '%{{http_code}}' http://{service}:8080/")
    assert (answer.returncode, answer.stdout) == (0, "200"), answer.stderr


def test_every_session_is_an_event_of_the_site_who_from_where_which_key_how_long(sites):
    started = time.time()
    assert sites.ssh("alice/hello", "echo events-test").returncode == 0
    log = EventLog(sites.settings.events_db)

    def this_session():
        recent = [
            e
            for e in log.query("hello", limit=200)
            if e.step == "terminal" and e.time.timestamp() >= started - 1
        ]
        opened = [e for e in recent if e.result == "created" and "echo events-test" in e.message]
        if not opened:
            return []
        # An event's reconcile id is its session's id: the opening and the end share it.
        return sorted((e for e in recent if e.reconcile_id == opened[0].reconcile_id), key=lambda e: e.id)

    eventually(lambda: len(this_session()) == 2, 30, "the session's two events")
    opened, ended = this_session()
    assert opened.result == "created"
    assert (
        "alice opened the command 'echo events-test' over SSH from 127.0.0.1 with the SSH key alice@tests"
        in (opened.message)
    )
    assert ended.result == "deleted" and "ended after" in ended.message and "exit status 0" in ended.message
    assert opened.uid == ended.uid == sites.store.get("hello").metadata.uid
    assert ended.duration_seconds > 0


def test_twenty_sessions_at_once_each_within_the_site_s_limits_and_the_twenty_first_refused(sites):
    # cgroup v2 (memory.max, cpu.max) or v1 (memory.limit_in_bytes, cfs quota and period), as the host has.
    limits = (
        "if [ -e /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max; "
        "else cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
        "/sys/fs/cgroup/cpu/cpu.cfs_period_us; fi"
    )
    sessions = []
    try:
        for _ in range(20):
            argv, env = sites.ssh_argv("alice/hello", f"{limits}; echo ready; read line; echo done")
            sessions.append(
                subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
                )
            )
        eventually(lambda: len(sites.terminal_containers()) == 20, 240, "20 terminal containers")
        refused = sites.ssh("alice/hello", "true")
        assert refused.returncode == 1
        assert "you have 20 sessions open, the most one person may have at once (20)" in refused.stderr
        outputs = [session.communicate(b"\n", timeout=240) for session in sessions]
    finally:
        for session in sessions:
            if session.poll() is None:
                session.kill()
    resources = sites.store.get("hello").spec.resources
    for session, (out, err) in zip(sessions, outputs, strict=True):
        assert session.returncode == 0, err
        memory, quota, period, ready, done = out.decode().split()
        assert (ready, done) == ("ready", "done")
        # The kernel keeps a memory limit in whole pages.
        assert 0 <= resources.memory_bytes - int(memory) < 4096
        assert int(quota) / int(period) == pytest.approx(resources.cpus)
    no_terminal_left(sites)


def test_a_session_ends_with_no_container_and_a_killed_shell_server_and_api_leave_none_after_restart(sites):
    argv, env = sites.ssh_argv("alice/hello", "echo started; sleep 600")
    session = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        eventually(lambda: len(sites.terminal_containers()) == 1, 120, "the session's container")
        sites.shell.kill()
        sites.api.kill()
        session.wait(timeout=60)
        # Nobody holds the container now; the next API start removes it.
        assert len(sites.terminal_containers()) == 1
        sites.restart_api()
        sites.restart_shell()
        no_terminal_left(sites)
        assert sites.ssh("alice/hello", "true").returncode == 0
    finally:
        if session.poll() is None:
            session.kill()
    no_terminal_left(sites)


def test_a_session_starts_when_the_engine_once_times_out_joining_it_to_the_network(sites):
    """A busy engine answers a start with "Could not attach to network ...: context deadline exceeded"
    (seen with the suite under load); the session waits and starts rather than failing."""
    terminals = DockerTerminals(sites.settings)
    engine_start = terminals.api.start
    starts: list[str] = []

    def start_timing_out_once(container_id: str) -> None:
        starts.append(container_id)
        if len(starts) == 1:
            raise docker.errors.APIError(
                "500 Server Error",
                explanation=f"Could not attach to network {sites.settings.network}: "
                "context deadline exceeded",
            )
        engine_start(container_id)

    terminals.api.start = start_timing_out_once
    request = TerminalRequest(
        session_id="engine-timeout",
        site=sites.store.get("hello"),
        username="alice",
        kind="exec",
        command="echo joined",
    )

    async def session() -> tuple[bytes, int | None]:
        terminal = await terminals.open(request)
        output = b""
        try:
            while (chunk := await terminal.read()) is not None:
                if chunk[0] == STDOUT:
                    output += chunk[1]
            return output, await terminal.exit_status()
        finally:
            await terminal.close()

    output, status = asyncio.run(session())
    assert (output.strip(), status) == (b"joined", 0)
    assert len(starts) == 2 and starts[0] == starts[1]
    no_terminal_left(sites)


def test_a_site_being_deleted_cannot_be_entered(sites):
    store = sites.store
    from specs.models import ObjectMeta, Site, SiteSpec

    store.create(Site(metadata=ObjectMeta(name="going"), spec=SiteSpec(owners=["alice"])))
    sites.wait_ready("going")
    store.add_finalizer("going", "tests.director.io/hold")
    with sites.http("admin") as admin:
        assert admin.delete("/apis/director.io/v1/sites/going").status_code in (200, 202)
    for command in (["true"], []):
        answer = sites.ssh("alice/going", *command, stdin="")
        assert answer.returncode == 1
        assert 'site "going" is being deleted' in answer.stderr
    store.remove_finalizer("going", "tests.director.io/hold")


def _session_over_socket(url: str, token: str, command: str) -> tuple[bytes, dict]:
    """Run `command` in alice's hello through the shell server's socket of the API at `url`: its output and
    the end message."""
    import json

    from websockets.sync.client import connect

    ws_url = "ws" + url.removeprefix("http") + "/shell-server/v1/sessions"
    output = b""
    with connect(
        ws_url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None, open_timeout=60
    ) as socket:
        socket.send(json.dumps({"user": "alice", "site": "hello", "kind": "exec", "command": command}))
        assert "started" in json.loads(socket.recv(timeout=120))
        while True:
            message = socket.recv(timeout=120)
            if isinstance(message, bytes):
                output += message[1:]
                continue
            end = json.loads(message).get("end")
            if end is not None:
                return output, end


@pytest.mark.parametrize(
    ("setting", "command", "reason"),
    [
        ("DIRECTOR_SHELL_IDLE_SECONDS", "sleep 600", "no input or output for 2 s"),
        (
            "DIRECTOR_SHELL_MAX_SESSION_SECONDS",
            "while true; do echo tick; sleep 0.5; done",
            "longest life (2 s)",
        ),
    ],
)
def test_a_session_ends_when_idle_and_at_its_longest_life_and_its_container_goes(
    sites, setting, command, reason
):
    from shell_helpers import Service, wait_for_api
    from swarm_helpers import free_tcp_port

    port = free_tcp_port()
    url = f"http://127.0.0.1:{port}"
    env = sites.env | {"DIRECTOR_API_PORT": str(port), setting: "2"}
    api = Service(list(sites.api.argv), env, sites.settings.state_dir.parent / f"api-{setting}.log")
    api.start()
    try:
        wait_for_api(url, api)
        token = (sites.settings.state_dir / "shell-server" / "token").read_text().strip()
        started = time.monotonic()
        output, end = _session_over_socket(url, token, command)
        assert time.monotonic() - started < 60
        assert end["status"] is None and reason in end["reason"]
        assert f"Director: session ended: {end['reason']}".encode() in output
    finally:
        api.stop()
    no_terminal_left(sites)


# What a hostile user tries first in a terminal session; its answers as JSON.
TERMINAL_PROBE = r"""
import errno, json, os, resource, socket, subprocess, sys

def gateway():
    with open("/proc/net/route") as routes:
        for line in list(routes)[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))

def connects(port):
    try:
        with socket.create_connection((gateway(), port), timeout=10):
            return "connected"
    except OSError as error:
        return type(error).__name__

children, refusal = [], None
for _ in range(int(sys.argv[1])):
    try:
        children.append(subprocess.Popen(["sleep", "60"]))
    except OSError as error:
        refusal = errno.errorcode.get(error.errno)
        break
for child in children:
    child.kill()
    child.wait()
with open("/proc/self/status") as status:
    fields = dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)
found = subprocess.run(["find", "/", "-xdev", "-perm", "/6000"], capture_output=True, text=True).stdout
print(json.dumps({
    "NoNewPrivs": fields["NoNewPrivs"].strip(),
    "CapEff": fields["CapEff"].strip(),
    "CapBnd": fields["CapBnd"].strip(),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    "started": len(children),
    "refusal": refusal,
    "setid": found.split(),
    "swarm": connects(2377),
    "edge": connects(int(sys.argv[2])),
}))
"""


def test_a_terminal_session_is_as_confined_as_the_site_s_service(sites):
    limit = sites.store.get("hello").spec.resources.pids
    answer = sites.ssh(
        "alice/hello", f"python3 - {limit + 50} {sites.settings.http_port}", stdin=TERMINAL_PROBE, timeout=180
    )
    assert answer.returncode == 0, answer.stderr
    found = json.loads(answer.stdout)
    assert found["NoNewPrivs"] == "1" and found["CapEff"] == found["CapBnd"] == "0000000000000000"
    assert found["nofile"] == OPEN_FILES
    # The shell and the probe count too: the limit's last processes are refused.
    assert found["refusal"] == "EAGAIN" and found["started"] < limit
    assert found["setid"] == []
    assert (found["swarm"], found["edge"]) == ("ConnectionRefusedError", "connected")
    no_terminal_left(sites)
