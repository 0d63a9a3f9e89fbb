"""Controller processes: the leader lock between two of them, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from controller.leader import LeaderLock, Participant, read_report
from specs.models import ObjectMeta, Site
from store.records import SiteStore

HARNESS = Path(__file__).resolve().parent / "recording_controller.py"


def start(state_dir: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(HARNESS), str(state_dir), *args],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        cwd=Path(__file__).resolve().parents[2],
    )


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def journal(state_dir: Path, process: subprocess.Popen[bytes]) -> list[str]:
    path = state_dir / f"journal-{process.pid}.txt"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_second_controller_waits_reports_the_holder_and_takes_over_when_it_stops(tmp_path, processes):
    state_dir = tmp_path / "state"
    store = SiteStore(state_dir)
    store.create(Site(metadata=ObjectMeta(name="alpha")))
    first = start(state_dir, log=tmp_path / "first.log")
    processes.append(first)
    wait_until(
        lambda: "files reconcile alpha" in journal(state_dir, first), 20, "the first controller's reconcile"
    )
    holder = read_report(state_dir).holder
    assert holder is not None and holder.pid == first.pid

    second = start(state_dir, log=tmp_path / "second.log")
    processes.append(second)
    wait_until(
        lambda: any(p.pid == second.pid for p in read_report(state_dir).waiting), 20, "the waiter's report"
    )
    wait_until(lambda: "waiting for it" in (tmp_path / "second.log").read_text(), 10, "the waiter's log line")
    said = (tmp_path / "second.log").read_text()
    assert f"another controller holds the lock (pid {first.pid} on " in said
    report = read_report(state_dir)
    assert report.holder is not None and report.holder.pid == first.pid
    # Never two writers: the waiter has reconciled nothing.
    store.create(Site(metadata=ObjectMeta(name="bravo")))
    wait_until(
        lambda: "files reconcile bravo" in journal(state_dir, first), 10, "the holder's reconcile of bravo"
    )
    assert journal(state_dir, second) == []

    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0
    wait_until(lambda: (read_report(state_dir).holder or holder).pid == second.pid, 20, "the takeover")
    wait_until(lambda: "files reconcile bravo" in journal(state_dir, second), 20, "the new holder's resync")
    assert read_report(state_dir).waiting == []
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=10) == 0
    assert read_report(state_dir).holder is None


def test_sigterm_lets_the_reconcile_in_flight_finish_then_exits_zero_promptly(tmp_path, processes):
    state_dir = tmp_path / "state"
    SiteStore(state_dir).create(Site(metadata=ObjectMeta(name="charlie")))
    controller = start(state_dir, "--hang", "1.0", log=tmp_path / "controller.log")
    processes.append(controller)
    wait_until(
        lambda: "service reconcile charlie" in journal(state_dir, controller), 20, "a reconcile in flight"
    )
    asked = time.monotonic()
    controller.send_signal(signal.SIGTERM)
    assert controller.wait(timeout=10) == 0
    assert time.monotonic() - asked < 3
    assert "service finished charlie" in journal(state_dir, controller)
    log = (tmp_path / "controller.log").read_text()
    assert "SIGTERM received: stopping" in log and "controller lock released" in log


def test_sigterm_cuts_a_reconcile_longer_than_the_grace_short_and_still_exits_zero(tmp_path, processes):
    state_dir = tmp_path / "state"
    SiteStore(state_dir).create(Site(metadata=ObjectMeta(name="delta")))
    controller = start(state_dir, "--hang", "60", "--shutdown-grace", "0.5", log=tmp_path / "controller.log")
    processes.append(controller)
    wait_until(
        lambda: "service reconcile delta" in journal(state_dir, controller), 20, "a reconcile in flight"
    )
    asked = time.monotonic()
    os.kill(controller.pid, signal.SIGTERM)
    assert controller.wait(timeout=10) == 0
    assert time.monotonic() - asked < 3
    assert "cut short by the shutdown" in (tmp_path / "controller.log").read_text()
    assert read_report(state_dir).holder is None


def test_sigterm_exits_promptly_even_with_a_blocking_call_stuck_in_a_thread(tmp_path, processes):
    state_dir = tmp_path / "state"
    SiteStore(state_dir).create(Site(metadata=ObjectMeta(name="echo")))
    log = tmp_path / "controller.log"
    controller = start(state_dir, "--block", "120", "--shutdown-grace", "0.5", "--exit-grace", "1", log=log)
    processes.append(controller)
    wait_until(
        lambda: "service reconcile echo" in journal(state_dir, controller), 20, "a reconcile in flight"
    )
    asked = time.monotonic()
    controller.send_signal(signal.SIGTERM)
    assert controller.wait(timeout=20) == 0
    assert time.monotonic() - asked < 5
    assert "1 blocking calls still running after 1s; exiting without them" in log.read_text()
    assert read_report(state_dir).holder is None


def test_the_report_forgets_a_waiter_that_died_without_saying_so(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # What a waiter killed by SIGKILL leaves behind.
    ghost = Participant(pid=dead.pid, host=socket.gethostname(), since=datetime.now(UTC))
    (state_dir / "controller.yaml").write_text(
        yaml.safe_dump({"holder": None, "waiting": [ghost.to_document()]})
    )
    assert read_report(state_dir).waiting == [ghost]
    lock = LeaderLock(state_dir)
    assert lock.try_acquire()
    report = read_report(state_dir)
    assert report.holder == lock.me and report.waiting == []
    lock.release()
    assert read_report(state_dir).holder is None


def test_director_controller_refuses_a_bad_option_naming_it():
    director = Path(sys.executable).with_name("director")
    result = subprocess.run(
        [str(director), "controller", "--step-timeout", "0"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "--step-timeout: must be more than 0, got 0" in result.stderr


def test_director_controller_does_not_load_libraries_before_it_needs_them():
    # asyncssh, which only `director run` and the shell server need, is about 14 MB of a controller's RSS;
    # httpx, for GitSources alone, about 5 MB.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, orchestrator.main; print(sorted({'asyncssh', 'httpx'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


MALLOC_UNSET = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
ARENAS_USED = """
import ctypes, sys, threading
from controller.process import configure_malloc
if sys.argv[1] == "limited":
    assert configure_malloc(2) == {"MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"}
together = threading.Barrier(9)
held = []
def allocate():
    held.append([bytearray(2000) for _ in range(200)])
    together.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
together.wait()
ctypes.CDLL(None).malloc_stats()
"""


def run_snippet(code: str, mode: str) -> subprocess.CompletedProcess[str]:
    """`code` run by a fresh interpreter from the repository, with `mode` as its argument and glibc's malloc
    left to its defaults."""
    return subprocess.run(
        [sys.executable, "-c", code, mode],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        env=MALLOC_UNSET,
        check=True,
    )


def arenas_used(mode: str) -> int:
    # glibc's malloc_stats() writes one "Arena N:" paragraph per arena to stderr.
    return sum(line.startswith("Arena ") for line in run_snippet(ARENAS_USED, mode).stderr.splitlines())


def test_the_controllers_threads_share_two_malloc_arenas():
    assert arenas_used("limited") == 2
    # What they would use otherwise: one arena each, as long as glibc's limit allows.
    assert arenas_used("unlimited") > 2


RESIDENT_AFTER_FREEING = """
import sys
from controller.process import configure_malloc
if sys.argv[1] == "configured":
    configure_malloc()
def resident_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
large = b"x" * (8 << 20)
del large  # glibc would now serve blocks up to its size from the heap
before = resident_kib()
blocks = [b"x" * (256 << 10) for _ in range(100)]
pinned = bytearray(1024)  # above them in the heap, if they are there: the heap cannot shrink past it
del blocks
print(resident_kib() - before)
"""


def resident_kib_kept_after_freeing(mode: str) -> int:
    return int(run_snippet(RESIDENT_AFTER_FREEING, mode).stdout)


def test_large_blocks_freed_by_the_controller_go_back_to_the_system():
    # 25 MB of 256 kB blocks, freed: glibc left to itself keeps megabytes of them (9 MB here).
    assert resident_kib_kept_after_freeing("configured") < 2_000
    assert resident_kib_kept_after_freeing("default") > 5_000
