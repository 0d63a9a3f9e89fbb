"""The host's firewall rules that keep sites' containers off the host's own ports.

A container on an overlay network reaches everything outside it through docker_gwbridge, whose gateway is
the host: from inside a site, 172.18.0.1:2377 (the Swarm's control port), 7946 and 4789 (its gossip and
VXLAN), the host's other addresses and whatever a host process listens on are one connect() away. Docker
filters the traffic it forwards (DOCKER-USER), not traffic for the host itself, so these rules sit in
INPUT: a new connection arriving from docker_gwbridge is refused, unless it is DNS (Docker's embedded
resolver asks the host's resolvers from the container's own namespace) or goes to the published port of a
Director edge (a site's public address may well be this host's). Replies to connections the host opened,
such as Docker's proxy to a published port, pass.

docker_gwbridge carries every Swarm container of the node, not only Director's: on a Director node those
are Director's. The chain is one per host, shared by every Director instance on it, and its content is
computed from what the Swarm holds (the ports of all Director edges), so each instance writes the same
rules. The rules use the `iptables` Docker itself uses (legacy or nf_tables, as the host chose).

`python -m reconcilers.host_firewall --port 8080` installs them on a node the controller does not run on;
`--remove` takes them away.
"""

from __future__ import annotations

import argparse
import fcntl
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Every chain of Director's starts so; CHAIN is the one installed (tests install others beside it).
CHAIN_PREFIX = "DIRECTOR-"
CHAIN = f"{CHAIN_PREFIX}SITES"
GATEWAY_BRIDGE = "docker_gwbridge"
LOCK_WAIT_SECONDS = "10"
COMMAND_TIMEOUT_SECONDS = 30
DNS_PORT = 53
BUILTIN_CHAINS = frozenset({"INPUT", "FORWARD", "OUTPUT"})
# Two Directors on one host may repair the shared chain at the same moment: one at a time.
LOCK_PATH = Path(tempfile.gettempdir()) / "director-host-firewall.lock"


class FirewallError(Exception):
    """The rules could not be read or written; the message says which command failed and why."""


@dataclass(frozen=True)
class Family:
    binary: str
    reject_with: str


IPV4 = Family("iptables", "icmp-port-unreachable")
IPV6 = Family("ip6tables", "icmp6-port-unreachable")


def chain_rules(chain: str, family: Family, open_ports: Iterable[int]) -> list[str]:
    """The chain's rules, spelled as `iptables -S` prints them (so what is installed compares as text)."""
    return [
        f"-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {chain} -p udp -m udp --dport {DNS_PORT} -j RETURN",
        f"-A {chain} -p tcp -m tcp --dport {DNS_PORT} -j RETURN",
        *(f"-A {chain} -p tcp -m tcp --dport {port} -j RETURN" for port in sorted(set(open_ports))),
        # A reset, not an ICMP error, for TCP: the kernel rate-limits ICMP errors, and a connect() whose
        # refusal was dropped hangs for its whole timeout instead of failing at once.
        f"-A {chain} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {chain} -j REJECT --reject-with {family.reject_with}",
    ]


def _is_director_jump(rule: str) -> bool:
    words = rule.split()
    return words[-2:-1] == ["-j"] and words[-1].startswith(CHAIN_PREFIX)


def jump_rule(chain: str, bridge: str) -> str:
    return f"-A INPUT -i {bridge} -j {chain}"


class HostFirewall:
    """The chain `chain`, entered first thing in INPUT for packets arriving from `bridge`, in one family."""

    def __init__(self, family: Family, chain: str = CHAIN, bridge: str = GATEWAY_BRIDGE) -> None:
        self.family = family
        self.chain = chain
        self.bridge = bridge

    def _run(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [self.family.binary, "-w", LOCK_WAIT_SECONDS, *arguments]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False
            )
        except FileNotFoundError:
            raise FirewallError(
                f"{self.family.binary} is not installed: apt-get install iptables (Docker needs it too)"
            ) from None
        except subprocess.TimeoutExpired:
            raise FirewallError(
                f"`{' '.join(command)}` took more than {COMMAND_TIMEOUT_SECONDS} s (the xtables lock held?)"
            ) from None
        if check and done.returncode != 0:
            raise FirewallError(
                f"`{' '.join(command)}` failed (exit {done.returncode}): {done.stderr.strip()}"
            )
        return done

    def _listed(self, chain: str) -> list[str] | None:
        """The chain's rules as `-S` spells them; None when the chain does not exist.

        Read from the whole table: asked for a missing chain by name, iptables-nft 1.8.9 calls it
        "incompatible" rather than missing, which cannot be told from a chain it really cannot read.
        """
        table = self._run("-S").stdout.splitlines()
        if chain not in BUILTIN_CHAINS and f"-N {chain}" not in table:
            return None
        return [line for line in table if line.startswith(f"-A {chain} ")]

    def ensure(self, open_ports: Iterable[int]) -> bool:
        """Make the chain and the jump to it what they should be; True if anything had to change."""
        wanted = chain_rules(self.chain, self.family, open_ports)
        changed = False
        current = self._listed(self.chain)
        if current is None:
            self._run("-N", self.chain)
            current, changed = [], True
        if current != wanted:
            self._run("-F", self.chain)
            for rule in wanted:
                self._run(*rule.split())
            changed = True
        jump = jump_rule(self.chain, self.bridge)
        input_rules = self._listed("INPUT") or []
        # First in INPUT, but for other Director jumps (each keeps itself there): a rule before it accepting
        # the bridge's traffic would let everything through.
        ahead = input_rules[: input_rules.index(jump)] if jump in input_rules else None
        if ahead is None or not all(map(_is_director_jump, ahead)) or input_rules.count(jump) != 1:
            self._delete_jumps(input_rules)
            self._run("-I", "INPUT", "1", *jump.split()[2:])
            changed = True
        return changed

    def _delete_jumps(self, input_rules: list[str]) -> None:
        jump = jump_rule(self.chain, self.bridge)
        for _ in range(input_rules.count(jump)):
            self._run("-D", "INPUT", *jump.split()[2:])

    def remove(self) -> bool:
        """Take the jump and the chain away; True if there was anything to take."""
        current = self._listed(self.chain)
        input_rules = self._listed("INPUT") or []
        self._delete_jumps(input_rules)
        if current is None:
            return jump_rule(self.chain, self.bridge) in input_rules
        self._run("-F", self.chain)
        self._run("-X", self.chain)
        return True

    def installed_rules(self) -> list[str] | None:
        return self._listed(self.chain)


def families() -> list[Family]:
    """IPv4 always; IPv6 too where the kernel has it (kept even while Docker's networks have no IPv6)."""
    found = [IPV4]
    if Path("/proc/net/if_inet6").exists() and shutil.which(IPV6.binary):
        found.append(IPV6)
    return found


@contextmanager
def _host_lock() -> Iterator[None]:
    with LOCK_PATH.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_host_firewall(
    open_ports: Iterable[int], chain: str = CHAIN, bridge: str = GATEWAY_BRIDGE
) -> list[str]:
    """Install or repair the rules in every family; return the binaries whose rules changed."""
    ports = sorted(set(open_ports))
    with _host_lock():
        return [family.binary for family in families() if HostFirewall(family, chain, bridge).ensure(ports)]


def remove_host_firewall(chain: str = CHAIN, bridge: str = GATEWAY_BRIDGE) -> list[str]:
    """Take the rules away in every family; return the binaries that had any."""
    with _host_lock():
        return [family.binary for family in families() if HostFirewall(family, chain, bridge).remove()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reconcilers.host_firewall",
        description="Refuse new connections from the node's Swarm containers to the node itself (INPUT rules "
        f"for {GATEWAY_BRIDGE}), except DNS and the edge's published ports.",
    )
    parser.add_argument(
        "--port", type=int, action="append", default=[], help="a published edge port sites may reach (repeat)"
    )
    parser.add_argument("--remove", action="store_true", help="remove the rules instead")
    args = parser.parse_args(argv)
    try:
        if args.remove:
            removed = remove_host_firewall()
            print(f"removed the {CHAIN} rules from {', '.join(removed)}" if removed else "no rules to remove")
        else:
            changed = ensure_host_firewall(args.port)
            print(f"installed the {CHAIN} rules in {', '.join(changed)}" if changed else "rules in place")
    except FirewallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
