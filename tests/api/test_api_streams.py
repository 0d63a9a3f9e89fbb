"""Watch streams, reconcile events and logs."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.api.api_helpers import SITES, site_doc

EVENTS = "/apis/director.io/v1/events"


def _watch(api, who: str, seconds: float, received: list[dict], params: str = "") -> threading.Thread:
    def run() -> None:
        with (
            api.client(who) as client,
            client.stream("GET", f"{SITES}?watch=true&timeoutSeconds={seconds}{params}") as response,
        ):
            for line in response.iter_lines():
                if line:
                    received.append(json.loads(line))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_watch_delivers_added_modified_and_deleted_to_those_who_may_see(api):
    with api.client() as client:
        client.post(SITES, json=site_doc("before"))
    seen_by_alice: list[dict] = []
    seen_by_bob: list[dict] = []
    alice = _watch(api, "alice", 3, seen_by_alice)
    bob = _watch(api, "bob", 3, seen_by_bob)
    time.sleep(0.7)
    with api.client() as client:
        client.post(SITES, json=site_doc("during"))
        time.sleep(0.2)
        client.patch(
            f"{SITES}/during",
            json={"spec": {"replicas": 2}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        time.sleep(0.2)
        client.delete(f"{SITES}/during")
    alice.join()
    bob.join()
    events = [(event["type"], event["object"]["metadata"]["name"]) for event in seen_by_alice]
    assert events[0] == ("ADDED", "before")
    assert ("ADDED", "during") in events and ("DELETED", "during") in events
    modified = [
        e for e in seen_by_alice if e["type"] == "MODIFIED" and e["object"]["metadata"]["name"] == "during"
    ]
    assert modified and modified[-1]["object"]["spec"]["replicas"] == 2
    assert seen_by_bob == []


def test_a_watch_from_a_resource_version_skips_what_the_client_has(api):
    with api.client() as client:
        listed = client.post(SITES, json=site_doc("known")).json()
    received: list[dict] = []
    thread = _watch(api, "admin", 1.5, received, f"&resourceVersion={listed['metadata']['resourceVersion']}")
    time.sleep(0.5)
    with api.client() as client:
        client.post(SITES, json=site_doc("fresh"))
    thread.join()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in received] == [("ADDED", "fresh")]


def test_watches_see_the_writes_of_other_processes_each_as_its_caller_may(api, store):
    from specs.models import Condition, SiteStatus

    with api.client("alice") as client:
        assert client.post(SITES, json=site_doc("controlled")).status_code == 201
    with api.client("bob") as client:
        assert client.post(SITES, json=site_doc("bobs-own", owners=["bob"])).status_code == 201
    received: dict[str, list[dict]] = {"alice": [], "bob": [], "admin": []}
    stop = threading.Event()

    def watch(who: str) -> None:
        with (
            api.client(who) as client,
            client.stream("GET", f"{SITES}?watch=true&timeoutSeconds=60") as response,
        ):
            for line in response.iter_lines():
                if line:
                    received[who].append(json.loads(line))
                if stop.is_set():
                    return

    watchers = [threading.Thread(target=watch, args=(who,)) for who in received]
    for watcher in watchers:
        watcher.start()
    try:
        deadline = time.monotonic() + 60
        while not all(received.values()):
            assert time.monotonic() < deadline, "the watches did not begin"
            time.sleep(0.02)
        # What the controller does: a status write from another process, seen through the store's watch.
        ready = Condition(
            type="Ready", status="True", reason="Serving", last_transition_time=datetime.now(UTC)
        )
        store.update_status("controlled", SiteStatus(conditions=[ready]))

        def served(who: str) -> bool:
            return any(
                event["type"] == "MODIFIED" and event["object"].get("status", {}).get("conditions")
                for event in received[who]
            )

        while not (served("alice") and served("admin")):
            assert time.monotonic() < deadline, f"the status write was not watched: {received}"
            time.sleep(0.02)
    finally:
        stop.set()
        for name in ("controlled", "bobs-own"):
            store.delete(name)  # ends the streams: each is sent an event
        for watcher in watchers:
            watcher.join(timeout=70)
    assert {event["object"]["metadata"]["name"] for event in received["bob"]} == {"bobs-own"}


def test_events_are_paged_newest_first(api):
    from store.events import EventLog

    with api.client() as client:
        uid = client.post(SITES, json=site_doc("evented")).json()["metadata"]["uid"]
    log = EventLog(api.state_dir / "events.db")
    start = datetime.now(UTC) - timedelta(minutes=5)
    for index in range(5):
        log.record(
            site="evented",
            uid=uid,
            generation=1,
            reconcile_id=f"r{index}",
            trigger="test",
            step=f"step{index}",
            result="updated",
            duration_seconds=0.01,
            message=f"change {index}",
            time=start + timedelta(seconds=index),
        )
    log.close()
    with api.client("alice") as client:
        first = client.get(f"{SITES}/evented/events?limit=3").json()
        second = client.get(f"{SITES}/evented/events?limit=3&continue={first['metadata']['continue']}").json()
        everything = client.get("/apis/director.io/v1/events").json()
    assert [e["step"] for e in first["items"]] == ["step4", "step3", "step2"]
    assert [e["step"] for e in second["items"]] == ["step1", "step0"]
    assert "continue" not in second["metadata"]
    assert len(everything["items"]) == 5


def test_logs_of_a_dynamic_site_with_tail_and_follow(api):
    with api.client() as client:
        client.post(SITES, json=site_doc("logged", type="dynamic", image="nginx:1"))
        client.post(SITES, json=site_doc("static-one"))
        log_file = api.state_dir / "test-logs" / "logged.log"
        log_file.write_text("one\ntwo\nthree\n")
        tail = client.get(f"{SITES}/logged/logs?tailLines=2")
        assert tail.status_code == 200 and tail.text == "two\nthree\n"
        assert client.get(f"{SITES}/static-one/logs").status_code == 400

        received: list[str] = []
        with client.stream("GET", f"{SITES}/logged/logs?follow=true") as response:
            for line in response.iter_lines():
                received.append(line)
                if line == "three":
                    with log_file.open("a") as handle:
                        handle.write("four\n")
                if line == "four":
                    break
    assert received == ["one", "two", "three", "four"]


def test_a_site_created_again_under_its_name_has_none_of_the_earlier_sites_events(api):
    from store.events import EventLog

    def record(uid: str, message: str) -> None:
        with EventLog(api.state_dir / "events.db") as log:
            log.record(
                site="reborn",
                uid=uid,
                generation=1,
                reconcile_id="r1",
                trigger="test",
                step="files.remove",
                result="deleted",
                duration_seconds=0.1,
                message=message,
            )

    def messages(response) -> list[str]:
        assert response.status_code == 200, response.text
        return [event["message"] for event in response.json()["items"]]

    private = "moved /srv/sites/reborn to /srv/trash/reborn-alice-1234"
    with api.client("alice") as alice:
        first_uid = alice.post(SITES, json=site_doc("reborn")).json()["metadata"]["uid"]
        record(first_uid, private)
        assert messages(alice.get(f"{SITES}/reborn/events")) == [private]
        assert alice.delete(f"{SITES}/reborn").status_code == 200
    with api.client("bob") as bob:
        second_uid = bob.post(SITES, json=site_doc("reborn", owners=["bob"])).json()["metadata"]["uid"]
        assert second_uid != first_uid
        assert messages(bob.get(f"{SITES}/reborn/events")) == []
        assert messages(bob.get(EVENTS)) == []
        watched = bob.get(f"{SITES}/reborn/events", params={"watch": "true", "timeoutSeconds": "1"})
        assert watched.status_code == 200 and watched.text == ""
        refused = bob.get(f"{SITES}/reborn/events", params={"uid": first_uid})
        assert refused.status_code == 403 and "only administrators" in refused.json()["message"]
        record(second_uid, "created the files of bob's site")
        assert messages(bob.get(f"{SITES}/reborn/events")) == ["created the files of bob's site"]
        assert messages(bob.get(f"{SITES}/reborn/events", params={"uid": second_uid})) == [
            "created the files of bob's site"
        ]
        assert [event["uid"] for event in bob.get(EVENTS).json()["items"]] == [second_uid]
        assert bob.delete(f"{SITES}/reborn").status_code == 200
    with api.client("admin") as admin:
        # The name is free again; its earlier sites' histories are an administrator's to read, by uid.
        assert admin.get(f"{SITES}/reborn/events").status_code == 404
        assert messages(admin.get(f"{SITES}/reborn/events", params={"uid": first_uid})) == [private]
        everything = admin.get(EVENTS, params={"limit": 1000}).json()["items"]
        assert {(event["uid"], event["message"]) for event in everything if event["site"] == "reborn"} == {
            (first_uid, private),
            (second_uid, "created the files of bob's site"),
        }
        assert admin.get(f"{SITES}/reborn/events", params={"uid": "../x"}).status_code == 400


def _server_pid(api) -> int:
    port = api.url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"tests.api.live_server" in command and port.encode() in command:
                return int(entry.name)
    raise AssertionError(f"no API server process on port {port}")


def _holds_open(pid: int, path: Path) -> bool:
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(descriptor) == str(path):
                return True
    return False


def test_a_follow_stream_ends_on_the_server_once_its_client_goes_away(api):
    # A stream may run for hours: the server must notice the client left, not follow the log for no one.
    pid = _server_pid(api)
    log_file = api.state_dir / "test-logs" / "left.log"
    log_file.write_text("one\n")
    with api.client() as client:
        client.post(SITES, json=site_doc("left", type="dynamic", image="nginx:1"))
        with client.stream("GET", f"{SITES}/left/logs?follow=true") as response:
            lines = response.iter_lines()
            assert next(lines) == "one"
            assert _holds_open(pid, log_file)
    # The site prints nothing more: the server must let go of the log without waiting for a line.
    deadline = time.monotonic() + 60
    while _holds_open(pid, log_file):
        assert time.monotonic() < deadline, "the server still follows the log of a client that left"
        time.sleep(0.1)
