"""API benchmarks: `dirctl get sites` with 10,000 sites, single-site apply throughput over HTTP next to the
store's own durable write rate, and API latency under 20 concurrent clients. A real uvicorn server on
loopback over a temporary state directory.

    .venv/bin/python -m bench.api [--sites 10000] [--applies 1000] [--clients 20] [--requests 100]
                                  [--server-from CHECKOUT]

Targets (issue 8): `dirctl get sites` at 10,000 sites in 0.2 s; applies over HTTP at 50% or more of the
store's durable write rate measured in the same run (SiteStore.update of a spec change, same state
directory). The "bounds" line shows what that ratio is made of: the same applies with dryRun=All (all the
work but the durable write), and the store's own rate alone and while those dry runs keep the cores busy.
`--server-from` serves the API from another checkout (say, of the previous commit) over the same
kind of state, so two versions can be compared on one machine in one sitting.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SITES = "/apis/director.io/v1/sites"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
APPLY = {"Content-Type": "application/apply-patch+yaml"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed_sites(state_dir: Path, count: int) -> None:
    from specs.models import Site
    from store.records import SiteStore

    store = SiteStore(state_dir)
    for index in range(count):
        store.create(
            Site.model_validate(
                {
                    "metadata": {
                        "name": f"site-{index:05d}",
                        "labels": {"tier": "web" if index % 2 else "db"},
                    },
                    "spec": {"owners": ["admin"], "domains": [f"s{index}.example.org"]},
                }
            )
        )


def admin_token(state_dir: Path) -> str:
    os.environ["DIRECTOR_STATE_DIR"] = str(state_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from api.auth import issue_token

    user = User.objects.create_user("admin", is_superuser=True)
    return issue_token(user, "bench")[1]


def start_server(state_dir: Path, port: int, checkout: Path = REPO) -> tuple[subprocess.Popen[bytes], str]:
    """The API server and its URL: HTTPS with the CA it makes in the state directory (which dirctl and the
    clients here then trust, through DIRECTOR_CA), or plain HTTP for a checkout from before TLS."""
    env = os.environ | {
        "DIRECTOR_STATE_DIR": str(state_dir),
        "DIRECTOR_API_PORT": str(port),
        "PYTHONPATH": str(checkout),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.api_server", "serve"],
        cwd=checkout,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    ca = state_dir / "tls" / "ca.crt"
    while time.monotonic() < deadline:
        for url in (f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port}"):
            if url.startswith("https:") and not ca.exists():
                continue
            try:
                httpx.get(f"{url}/apis", timeout=1, verify=_trusted(url, ca))
            except httpx.TransportError:
                continue
            if url.startswith("https:"):
                os.environ["DIRECTOR_CA"] = str(ca)
            return process, url
        time.sleep(0.05)
    process.kill()
    raise SystemExit("the API server did not start")


def timed_runs(command: list[str], env: dict[str, str], runs: int) -> list[float]:
    durations = []
    for _ in range(runs):
        start = time.perf_counter()
        completed = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        durations.append(time.perf_counter() - start)
        if completed.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {completed.stderr.decode()}")
    return durations


def _trusted(url: str, ca: Path) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=str(ca)) if url.startswith("https:") else True


def _api_client(url: str, token: str) -> httpx.Client:
    ca = Path(os.environ.get("DIRECTOR_CA", "/nonexistent"))
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60, verify=_trusted(url, ca)
    )


def _median_ms(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:.1f} ms, best {min(values) * 1000:.1f} ms of {len(values)}"
    )


def bench_get_sites(url: str, token: str, runs: int) -> None:
    with _api_client(url, token) as client:
        client.get(SITES)  # the server's first list may still be loading every record
        for label, headers in (("JSON", {}), ("Table", {"Accept": TABLE_ACCEPT})):
            durations = []
            for _ in range(runs):
                start = time.perf_counter()
                response = client.get(SITES, headers=headers)
                durations.append(time.perf_counter() - start)
            print(
                f"GET {SITES} as {label} (HTTP only, {len(response.content)} bytes): {_median_ms(durations)}"
            )
    env = os.environ | {"DIRECTOR_SERVER": url, "DIRECTOR_TOKEN": token, "PYTHONPATH": str(REPO)}
    dirctl = [sys.executable, "-m", "cli.main"]
    for arguments in (["get", "sites"], ["get", "sites", "-o", "wide"], ["get", "sites", "-o", "name"]):
        durations = timed_runs([*dirctl, *arguments], env, runs)
        print(f"dirctl {' '.join(arguments)}: {_median_ms(durations)}")
    startup = timed_runs([*dirctl, "--help"], env, runs)
    print(f"  (of which starting dirctl: dirctl --help {_median_ms(startup)})")


class StoreWrites:
    """SiteStore.update of a spec change, one writer, on the server's state directory: what every durable
    write costs (temp file, fsync, rename, fsync of the directory, under the lock)."""

    def __init__(self, state_dir: Path, prefix: str) -> None:
        from specs.models import Site
        from store.records import SiteStore

        self.store = SiteStore(state_dir)
        self.names = [f"{prefix}-{index}" for index in range(50)]
        for name in self.names:
            self.store.create(
                Site.model_validate({"metadata": {"name": name}, "spec": {"owners": ["admin"]}})
            )
        self.count = 0
        self.seconds = 0.0

    def burst(self, count: int) -> None:
        start = time.perf_counter()
        for index in range(self.count, self.count + count):
            site = self.store.get(self.names[index % len(self.names)])
            site.spec.replicas = 1 + index % 3
            self.store.update(site)
        self.seconds += time.perf_counter() - start
        self.count += count

    @property
    def rate(self) -> float:
        return self.count / self.seconds


@functools.cache
def _apply_document(name: str, replicas: int) -> str:
    """Made once per name and replica count: the clients' time goes to HTTP, not to PyYAML's emitter (pure
    Python, about as slow as the request)."""
    return yaml.safe_dump(
        {
            "apiVersion": "director.io/v1",
            "kind": "Site",
            "metadata": {"name": name},
            "spec": {"owners": ["admin"], "replicas": replicas},
        }
    )


def _run_clients(work: Callable[[int], None], clients: int) -> float:
    """Seconds until `clients` threads, each running `work` with its own index, have all finished."""
    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def _applying(
    url: str, token: str, errors: list[str], *, dry_run: bool = False, until: threading.Event | None = None
) -> Callable[[int, int, int], None]:
    """work(client_index, first, count): applies of the client's own sites, a real change each; with
    `until`, going on (past `count`) until it is set."""
    query = "?fieldManager=cli" + ("&dryRun=All" if dry_run else "")

    def work(client_index: int, first: int, count: int) -> None:
        with _api_client(url, token) as client:
            index = first
            while index < first + count or (until is not None and not until.is_set()):
                name = f"apply-{client_index}-{index % 50}"
                response = client.patch(
                    f"{SITES}/{name}{query}", headers=APPLY, content=_apply_document(name, 1 + index % 3)
                )
                if response.status_code not in (200, 201):
                    errors.append(response.text)
                index += 1

    return work


def bench_applies(url: str, token: str, state_dir: Path, count: int, clients: int, rounds: int = 5) -> None:
    """Applies over HTTP in `rounds` bursts, each after a burst of the store's own writes half its size: the
    disk's speed drifts (other work on the machine), and so both rates see the same moments."""
    per_client = count // clients // rounds
    errors: list[str] = []
    for client_index in range(clients):
        for index in range(min(per_client * rounds, 50)):
            for replicas in (1, 2, 3):
                _apply_document(f"apply-{client_index}-{index}", replicas)
    applying = _applying(url, token, errors)

    def work(client_index: int, round_: int) -> None:
        applying(client_index, round_ * per_client, per_client)

    store = StoreWrites(state_dir, f"store-rate-{clients}")
    elapsed = 0.0
    for round_ in range(rounds):
        store.burst(per_client * clients // 2)
        elapsed += _run_clients(functools.partial(work, round_=round_), clients)
    done = per_client * clients * rounds
    rate = done / elapsed
    print(
        f"server-side apply over HTTP, {clients} client(s): {done} in {elapsed:.2f} s = {rate:.0f}/s = "
        f"{rate / store.rate:.0%} of the store's own {store.rate:.0f} durable writes/s in the same moments "
        f"({len(errors)} errors)"
    )


def _store_rate(state_dir: Path, prefix: str, count: int) -> float:
    """The store's own durable write rate over `count` writes, in the process this runs in."""
    store = StoreWrites(state_dir, prefix)
    store.burst(count)
    return store.rate


def bench_apply_bounds(url: str, token: str, state_dir: Path, count: int, clients: int) -> None:
    """What the ratio above is made of, side by side: applies with dryRun=All (all of an apply's work but
    the durable write), and the store's own writes (in a process of their own) alone and then while those
    dry runs keep the cores busy: on a machine of few cores, a durable write takes longer while other work
    runs."""
    errors: list[str] = []
    applying = _applying(url, token, errors, dry_run=True)
    per_client = count // clients
    dry = per_client * clients / _run_clients(lambda n: applying(n, 0, per_client), clients)
    tag = secrets.token_hex(3)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as writer:
        alone = writer.submit(_store_rate, state_dir, f"bounds-alone-{tag}", count // 2).result()
        done = threading.Event()
        busy = [
            threading.Thread(target=_applying(url, token, errors, dry_run=True, until=done), args=(n, 0, 0))
            for n in range(clients)
        ]
        for thread in busy:
            thread.start()
        try:
            loaded = writer.submit(_store_rate, state_dir, f"bounds-loaded-{tag}", count // 2).result()
        finally:
            done.set()
            for thread in busy:
                thread.join()
    print(
        f"  bounds, {clients} client(s): dry-run applies over HTTP (no durable write) {dry:.0f}/s; "
        f"the store's own writes {alone:.0f}/s alone, {loaded:.0f}/s while those dry runs go on "
        f"({loaded / alone:.0%}) ({len(errors)} errors)"
    )


def bench_latency(url: str, token: str, clients: int, requests: int, sites: int, *, with_lists: bool) -> None:
    """Each client: 4 of 5 requests read one site, 1 of 5 applies one (a real change); with_lists, 1 in 25
    is instead a labelSelector list, which scans every site."""
    latencies: dict[str, list[float]] = {"get": [], "apply": [], "list-selector": []}
    lock = threading.Lock()
    for client_index in range(clients):
        for replicas in (1, 2, 3):
            _apply_document(f"latency-{client_index}", replicas)

    def work(client_index: int) -> None:
        mine: dict[str, list[float]] = {kind: [] for kind in latencies}
        with _api_client(url, token) as client:
            for index in range(requests):
                if index % 5 == 4:
                    kind, name = "apply", f"latency-{client_index}"
                    request = client.build_request(
                        "PATCH",
                        f"{SITES}/{name}?fieldManager=cli",
                        headers=APPLY,
                        content=_apply_document(name, 1 + index % 3),
                    )
                elif with_lists and index % 25 == 3:
                    kind = "list-selector"
                    request = client.build_request("GET", SITES, params={"labelSelector": "tier=none"})
                else:
                    kind, name = "get", f"site-{(client_index * 997 + index) % max(sites, 1):05d}"
                    request = client.build_request("GET", f"{SITES}/{name}")
                start = time.perf_counter()
                response = client.send(request)
                mine[kind].append(time.perf_counter() - start)
                if response.status_code >= 300:
                    raise SystemExit(f"{kind}: {response.status_code} {response.text}")
        with lock:
            for kind, values in mine.items():
                latencies[kind].extend(values)

    elapsed = _run_clients(work, clients)
    everything = sorted(value for values in latencies.values() for value in values)
    print(
        f"{clients} concurrent clients{' (with 10k-site lists)' if with_lists else ''}, "
        f"{len(everything)} requests in {elapsed:.2f} s "
        f"({len(everything) / elapsed:.0f}/s)"
    )
    for kind, values in [("all", everything), *latencies.items()]:
        if values:
            ordered = sorted(values)
            p50 = ordered[len(ordered) // 2]
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            print(f"  {kind:14s} n={len(ordered):5d}  p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--applies", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7, help="runs of each list and dirctl command")
    parser.add_argument("--server-from", type=Path, default=REPO, help="the checkout to run the API from")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state directory")
    arguments = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="director-bench-api-"))
    try:
        start = time.perf_counter()
        seed_sites(state_dir, arguments.sites)
        print(f"seeded {arguments.sites} sites through the store in {time.perf_counter() - start:.1f} s")
        token = admin_token(state_dir)
        port = free_port()
        server, url = start_server(state_dir, port, arguments.server_from.resolve())
        print(f"API at {url}")
        try:
            bench_get_sites(url, token, arguments.runs)
            for clients in (1, 4):
                bench_applies(url, token, state_dir, arguments.applies, clients)
            bench_apply_bounds(url, token, state_dir, arguments.applies, 4)
            for with_lists in (False, True):
                bench_latency(
                    url, token, arguments.clients, arguments.requests, arguments.sites, with_lists=with_lists
                )
        finally:
            server.terminate()
            server.wait(timeout=10)
    finally:
        if not arguments.keep:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
