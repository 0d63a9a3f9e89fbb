"""A custom domain is held by the first site to claim it, whatever the order of writes and restarts."""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from store_helpers import make_site

from store.durable import exclusive_lock
from store.records import HostTaken, NotFound, SiteStore

SITES = ["s1", "s2", "s3"]
HOSTS = ["a.example.org", "b.example.org", "c.example.org", "d.example.org"]


class ClaimsMachine(RuleBasedStateMachine):
    """The store against a model: host -> the site holding it, which changes only when that site lets go."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.state_dir = Path(self.directory.name)
        self.store = SiteStore(self.state_dir)
        self.holders: dict[str, str] = {}
        self.named: dict[str, list[str]] = {}

    def teardown(self) -> None:
        self.directory.cleanup()

    def _free_for(self, name: str, hosts: list[str]) -> bool:
        return all(self.holders.get(host, name) == name for host in hosts)

    @rule(name=st.sampled_from(SITES), hosts=st.lists(st.sampled_from(HOSTS), unique=True, max_size=3))
    def write(self, name: str, hosts: list[str]) -> None:
        allowed = self._free_for(name, hosts)
        try:
            try:
                site = self.store.get(name)
            except NotFound:
                self.store.create(make_site(name, domains=hosts))
            else:
                site.spec.domains = hosts
                self.store.update(site)
        except HostTaken as taken:
            assert not allowed
            assert self.holders[taken.host] == taken.holder != name
            assert hosts[taken.index] == taken.host
            return
        assert allowed
        for host in self.named.get(name, []):
            self.holders.pop(host, None)
        self.holders.update(dict.fromkeys(hosts, name))
        self.named[name] = hosts

    @rule(name=st.sampled_from(SITES))
    def delete(self, name: str) -> None:
        try:
            self.store.delete(name)
        except NotFound:
            assert name not in self.named
            return
        for host in self.named.pop(name):
            del self.holders[host]

    @rule()
    def restart(self) -> None:
        self.store = SiteStore(self.state_dir)

    @rule(name=st.sampled_from(SITES), host=st.sampled_from(HOSTS))
    def crash_after_claiming(self, name: str, host: str) -> None:
        """A writer killed between writing a claim and the record naming the host leaves a claim too many."""
        if host in self.holders:
            return
        (self.state_dir / "claims" / "hosts" / host).write_text(
            json.dumps({"site": name, "uid": str(uuid.uuid4()), "since": "2026-01-01T00:00:00Z"})
        )

    @invariant()
    def every_host_has_one_holder_and_it_is_the_first(self) -> None:
        sites, errors = self.store.list()
        assert errors == []
        naming: dict[str, list[str]] = {}
        for site in sites:
            for host in site.spec.domains:
                naming.setdefault(host, []).append(site.name)
        assert {host: names[0] for host, names in naming.items()} == self.holders
        assert all(len(names) == 1 for names in naming.values())
        for site in sites:
            assert self.store.host_holders(site.name) == dict.fromkeys(site.spec.domains, site.name)


TestClaims = ClaimsMachine.TestCase
TestClaims.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_records_written_before_claims_existed_are_claimed_oldest_first(tmp_path: Path) -> None:
    store = SiteStore(tmp_path)
    # As an earlier version left them: both name the domain, no claim exists. "a-newer" sorts first by name,
    # so only its creation time can make it lose.
    for name, created in (("a-newer", "2026-02-01T00:00:00Z"), ("older", "2026-01-01T00:00:00Z")):
        store.create(make_site(name))
        record = store.spec_path(name)
        document = yaml.safe_load(record.read_text())
        document["metadata"]["creationTimestamp"] = created
        document["spec"]["domains"] = ["both.example.org"]
        record.write_text(yaml.safe_dump(document))
    for path in (tmp_path / "claims" / "hosts").iterdir():
        path.unlink()
    reopened = SiteStore(tmp_path)
    assert reopened.host_holders("a-newer") == {"both.example.org": "older"}
    assert reopened.host_holders("older") == {"both.example.org": "older"}


def test_a_site_being_deleted_lets_go_of_its_domains_at_once(tmp_path: Path) -> None:
    store = SiteStore(tmp_path)
    store.create(make_site("leaving", domains=["free-soon.example.org"]))
    store.add_finalizer("leaving", "director.io/cleanup")
    store.create(make_site("arriving"))
    arriving = store.get("arriving")
    arriving.spec.domains = ["free-soon.example.org"]
    with pytest.raises(HostTaken):
        store.update(arriving)
    store.delete("leaving")
    assert store.get("leaving").metadata.deletion_timestamp is not None
    store.update(store.get("arriving").model_copy(update={"spec": arriving.spec}))
    assert store.host_holders("arriving") == {"free-soon.example.org": "arriving"}
    assert store.host_holders("leaving") == {}


def test_opening_the_store_leaves_the_temp_file_of_a_claim_being_written_alone(tmp_path: Path) -> None:
    """A process opening the store (a controller restarting) while another writes a claim: the writer holds
    the write lock, its temp file not yet renamed. Found for real with the controller SIGKILLed and restarted
    during applies: the opener removed the temp file and the writer's rename failed."""
    SiteStore(tmp_path)
    in_flight = tmp_path / "claims" / "hosts" / ".a.example.org.4242.0badf00d.tmp"
    opened: list[SiteStore] = []
    with exclusive_lock(tmp_path / ".lock"):
        in_flight.write_bytes(b'{"site": "s1"}')
        opener = threading.Thread(target=lambda: opened.append(SiteStore(tmp_path)))
        opener.start()
        wchan = Path(f"/proc/self/task/{opener.native_id}/wchan")
        deadline = time.monotonic() + 30
        # Until the opener waits for the lock: everything it does before that has been done.
        while "lock" not in wchan.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "lock" in wchan.read_text(), "the opener never waited for the write lock"
        assert in_flight.exists(), "the temp file of a write in progress was removed"
        in_flight.unlink()
    opener.join()
    assert opened
