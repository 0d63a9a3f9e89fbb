"""The pieces of a site's confinement on their own: the launcher run for real, setid bits stripped from a
tree, the host's firewall chain installed, repaired and removed with the real iptables."""

from __future__ import annotations

import secrets
import stat
import struct
import subprocess
from collections.abc import Iterator

import pytest

from reconcilers.host_firewall import (
    CHAIN_PREFIX,
    IPV4,
    Family,
    FirewallError,
    HostFirewall,
    chain_rules,
    jump_rule,
)
from reconcilers.launcher import MESSAGE, architecture, install_launcher, launcher_program
from reconcilers.local_images import strip_setid_bits


def test_the_launcher_sets_no_new_privs_and_runs_its_command(tmp_path):
    launcher = tmp_path / "bin" / "no-new-privs"
    assert install_launcher(launcher) is True
    assert install_launcher(launcher) is False, "the same program is not written again"
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755

    ran = subprocess.run([launcher, "/bin/grep", "NoNewPrivs", "/proc/self/status"], capture_output=True)
    assert (ran.returncode, ran.stdout.split()) == (0, [b"NoNewPrivs:", b"1"])
    # Arguments and the environment reach the command unchanged.
    echoed = subprocess.run(
        [launcher, "/bin/sh", "-c", 'echo "$1 $GREETING"', "sh", "two words"],
        capture_output=True,
        env={"GREETING": "hi"},
    )
    assert echoed.stdout == b"two words hi\n"


def test_the_launcher_never_runs_a_command_without_the_bit_and_says_why(tmp_path):
    launcher = tmp_path / "no-new-privs"
    install_launcher(launcher)
    for argv in ([launcher, "/no/such/program"], [launcher]):
        failed = subprocess.run(argv, capture_output=True)
        assert (failed.returncode, failed.stderr) == (127, MESSAGE)


def test_a_changed_launcher_is_replaced(tmp_path):
    launcher = tmp_path / "no-new-privs"
    launcher.write_bytes(b'#!/bin/sh\nexec "$@"\n')
    assert install_launcher(launcher) is True
    assert launcher.read_bytes() == launcher_program(architecture())


@pytest.mark.parametrize(("arch", "machine"), [("x86_64", 62), ("aarch64", 183)])
def test_the_launcher_is_a_static_elf_for_its_machine(arch, machine):
    program = launcher_program(arch)
    assert program[:4] == b"\x7fELF" and program.endswith(MESSAGE)
    assert struct.unpack_from("<HH", program, 16) == (2, machine)


def test_setuid_and_setgid_bits_are_stripped_and_links_not_followed(tmp_path):
    root = tmp_path / "rootfs"
    (root / "usr" / "bin").mkdir(parents=True)
    su = root / "usr" / "bin" / "su"
    su.write_text("")
    su.chmod(0o4755)
    wall = root / "usr" / "bin" / "wall"
    wall.write_text("")
    wall.chmod(0o2755)
    shared = root / "srv"
    shared.mkdir()
    shared.chmod(0o2775)
    outside = tmp_path / "outside"
    outside.write_text("")
    outside.chmod(0o4755)
    (root / "usr" / "bin" / "link").symlink_to(outside)

    assert sorted(strip_setid_bits(root)) == sorted([su, wall, shared])
    assert [stat.S_IMODE(path.stat().st_mode) for path in (su, wall, shared)] == [0o755, 0o755, 0o775]
    assert stat.S_IMODE(outside.stat().st_mode) == 0o4755, "a link out of the tree is left alone"
    assert strip_setid_bits(root) == []


@pytest.fixture
def firewall() -> Iterator[HostFirewall]:
    """A chain of this test's own, for a bridge that does not exist: the real INPUT, nothing filtered."""
    chain = f"{CHAIN_PREFIX}T{secrets.token_hex(4).upper()}"
    wall = HostFirewall(IPV4, chain=chain, bridge=f"dt{secrets.token_hex(3)}")
    yield wall
    wall.remove()


def _input_rules() -> list[str]:
    listed = subprocess.run(
        ["iptables", "-w", "10", "-S", "INPUT"], capture_output=True, text=True, check=True
    )
    return listed.stdout.splitlines()


def test_the_host_chain_is_installed_once_kept_first_and_repaired(firewall):
    assert firewall.ensure([8080, 80]) is True
    assert firewall.installed_rules() == chain_rules(firewall.chain, IPV4, [80, 8080])
    jump = jump_rule(firewall.chain, firewall.bridge)
    assert jump in _input_rules()
    assert firewall.ensure([80, 8080]) is False, "nothing to do the second time"

    # An edge's port closed, a rule deleted by hand, a rule put before the jump: each is put right.
    assert firewall.ensure([80]) is True
    assert firewall.installed_rules() == chain_rules(firewall.chain, IPV4, [80])
    subprocess.run(["iptables", "-w", "10", "-D", firewall.chain, "1"], check=True)
    accept_first = ["-I", "INPUT", "1", "-i", firewall.bridge, "-j", "ACCEPT"]
    subprocess.run(["iptables", "-w", "10", *accept_first], check=True)
    try:
        assert firewall.ensure([80]) is True
        assert firewall.installed_rules() == chain_rules(firewall.chain, IPV4, [80])
        rules = _input_rules()
        assert rules.count(jump) == 1 and rules.index(jump) < rules.index(
            " ".join(["-A", "INPUT", *accept_first[3:]])
        )
    finally:
        subprocess.run(["iptables", "-w", "10", "-D", "INPUT", *accept_first[3:]], check=True)

    assert firewall.remove() is True
    assert firewall.installed_rules() is None and jump not in _input_rules()
    assert firewall.remove() is False


def test_a_missing_or_failing_iptables_is_an_error_saying_what_to_do():
    missing = HostFirewall(Family("no-such-iptables", "icmp-port-unreachable"), chain=f"{CHAIN_PREFIX}TX")
    with pytest.raises(FirewallError, match=r"no-such-iptables is not installed: apt-get install iptables"):
        missing.ensure([80])
    # A bridge name iptables refuses: the error quotes the command and iptables' own words.
    refused = HostFirewall(
        IPV4, chain=f"{CHAIN_PREFIX}T{secrets.token_hex(4).upper()}", bridge="no such bridge"
    )
    try:
        with pytest.raises(FirewallError, match=r"`iptables -w 10 .*` failed \(exit \d+\): "):
            refused.ensure([80])
    finally:
        subprocess.run(["iptables", "-w", "10", "-F", refused.chain], capture_output=True)
        subprocess.run(["iptables", "-w", "10", "-X", refused.chain], capture_output=True)
