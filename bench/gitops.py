"""GitOps benchmarks, with the real git binary and a real API server on loopback:

- a repository of 1,000 sites: the first sync until every record is applied; then an unchanged poll (one
  remote ref lookup, no checkout; target under 50 ms), median of 20;
- commit -> applied record through the webhook (target p50 <= 1 s), median of 15, with the 1,000 sites;
- with --served (needs the Swarm): commit -> a new static site served through the edge, through the
  webhook, median of 8.

    .venv/bin/python -m bench.gitops [--sites 1000] [--polls 20] [--pushes 15] [--served]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "tests"))

from git_servers import Repo, free_port, site_yaml  # noqa: E402

SOURCES = "/apis/director.io/v1/gitsources"
APPLY = {"Content-Type": "application/apply-patch+yaml"}
HOOK_KEY = b"bench-key"


@contextlib.contextmanager
def api_server(state_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("DIRECTOR_")}
        | {
            "DIRECTOR_STATE_DIR": str(state_dir),
            "DIRECTOR_API_PORT": str(port),
            # Plain HTTP on loopback: this benchmark measures GitOps, not TLS.
            "DIRECTOR_API_TLS": "off",
        }
        | (extra_env or {})
    )
    log = (state_dir / "api.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.api_server"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/apis", timeout=1).status_code == 401:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the API did not start: {(state_dir / 'api.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def tokens(state_dir: Path) -> tuple[str, str]:
    """An admin's token and the controller's, issued in the API's database as the composition root does."""
    os.environ["DIRECTOR_STATE_DIR"] = str(state_dir)
    from orchestrator.gitops import issue_controller_token

    controller = issue_controller_token()
    from django.contrib.auth.models import User

    from api.auth import ensure_admin_group, issue_token

    admin, _ = User.objects.get_or_create(username="admin")
    admin.groups.add(ensure_admin_group())
    return issue_token(admin, "bench")[1], controller


def admin_token(state_dir: Path) -> str:
    """An admin's token made by `director run`'s own step, in a process of its own: this process's Django
    may already be set up for another state directory."""
    config = state_dir / "dirctl.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTOR_")} | {
        "DIRECTOR_STATE_DIR": str(state_dir),
        "DIRECTOR_API_TLS": "off",
    }
    subprocess.run(
        [sys.executable, "-m", "orchestrator.api_server", "demo-admin", "--config", str(config)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    import yaml

    return str(yaml.safe_load(config.read_text())["token"])


def apply_source(api_url: str, token: str, name: str, **spec: object) -> None:
    document = {"apiVersion": "director.io/v1", "kind": "GitSource", "metadata": {"name": name}, "spec": spec}
    answer = httpx.patch(
        f"{api_url}{SOURCES}/{name}",
        params={"fieldManager": "cli"},
        content=json.dumps(document),
        headers=APPLY | {"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    answer.raise_for_status()


def hook(url: str, name: str) -> int:
    body = b'{"ref": "refs/heads/main"}'
    signature = "sha256=" + hmac.new(HOOK_KEY, body, hashlib.sha256).hexdigest()
    return httpx.post(
        f"{url}/hooks/gitsources/{name}", content=body, headers={"X-Hub-Signature-256": signature}, timeout=10
    ).status_code


class StaticCredential:
    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self, *, renew: bool = False) -> str:
        return self._token


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(ordered) * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms, n={len(ordered)}"


async def sync_benchmarks(sites: int, polls: int, pushes: int) -> None:
    from controller.kinds import Kind
    from controller.runtime import Controller, ControllerOptions
    from controller.types import ReconcileContext
    from reconcilers.director_api import DirectorApi
    from reconcilers.git import Git
    from reconcilers.gitsource import GitSync
    from specs.gitsource import GitSourceStatus
    from store.events import EventLog
    from store.records import GitSourceStore, SiteStore

    work = Path(tempfile.mkdtemp(prefix="director-bench-gitops-"))
    state = work / "state"
    state.mkdir()
    try:
        with api_server(state) as url:
            admin, controller_token = await asyncio.to_thread(tokens, state)
            httpx.post(
                f"{url}/apis/director.io/v1/secrets",
                json={"metadata": {"name": "hook"}, "stringData": {"hmac": HOOK_KEY.decode()}},
                headers={"Authorization": f"Bearer {admin}"},
            ).raise_for_status()
            repo = Repo(work, "club")
            for index in range(sites):
                repo.write(f"sites/s{index:04}.yaml", site_yaml(f"bench-{index:04}"))
            repo.commit(f"{sites} sites")
            apply_source(
                url,
                admin,
                "club",
                url=repo.file_url,
                path="sites/",
                prune=True,
                interval="24h",
                webhook={"secretRef": {"name": "hook"}},
            )
            site_store, sources = SiteStore(state), GitSourceStore(state)
            client = DirectorApi(url, StaticCredential(controller_token))
            sync = GitSync(
                api=client, git=Git(work / "git"), sites=site_store, sources=sources, workdir=work / "git"
            )

            async def reconcile(trigger: str) -> float:
                ctx = ReconcileContext(reconcile_id="bench", trigger=trigger, deadline=time.monotonic() + 600)
                started = time.monotonic()
                outcome = await sync.reconcile(sources.get("club"), ctx)
                took = time.monotonic() - started
                if outcome.status is not None:
                    sources.update_status("club", GitSourceStatus(sync=outcome.status))
                if not outcome.ready:
                    raise RuntimeError(f"not ready: {outcome.message}")
                return took

            first = await reconcile("start")
            applied = sum(1 for s in site_store.list()[0] if s.name.startswith("bench-"))
            print(f"first sync of {sites} sites: {first:.2f} s until {applied} records applied")
            poll_times = [await reconcile("poll: routine recheck") for _ in range(polls)]
            print(f"unchanged poll (one ls-remote, no checkout, drift check of {sites} records):")
            print(f"  {summary(poll_times)}")
            git = Git(work / "git2")
            from specs.gitsource import GitRef

            lookups = []
            for _ in range(polls):
                started = time.monotonic()
                await git.remote_revision(
                    repo.file_url, GitRef(branch="main"), None, deadline=time.monotonic() + 30
                )
                lookups.append(time.monotonic() - started)
            print(f"  of which the remote ref lookup alone: {summary(lookups)}")
            await client.close()

            # The webhook path: an in-process controller, woken by the record's reconcile request.
            events = EventLog(state / "bench-events.db")
            runtime = Controller(
                kinds=[Kind(records=sources, reconcilers=[sync])],
                events=events,
                state_dir=state,
                options=ControllerOptions(workers=4, resync_seconds=3600),
            )
            running = asyncio.create_task(runtime.run())
            try:
                await asyncio.sleep(1.0)
                latencies = []
                for push in range(pushes):
                    purpose = ("user", "activity", "other")[push % 3]
                    repo.write("sites/s0000.yaml", site_yaml("bench-0000", purpose=purpose))
                    repo.commit(f"push {push}")
                    started = time.monotonic()
                    code = await asyncio.to_thread(hook, url, "club")
                    if code != 202:
                        raise RuntimeError(f"the webhook answered {code}")
                    while site_store.get("bench-0000").spec.purpose != purpose:
                        if time.monotonic() - started > 30:
                            raise RuntimeError("a push was not applied within 30 s")
                        await asyncio.sleep(0.005)
                    latencies.append(time.monotonic() - started)
                    await asyncio.sleep(1.2)  # past the webhook's folding window and its follow-up look
                print(f"commit -> applied record through the webhook ({sites} sites in the repository):")
                print(f"  {summary(latencies)}")
            finally:
                runtime.stop()
                await asyncio.wait_for(running, 60)
                events.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def served_benchmark(pushes: int) -> None:
    """Commit -> a new static site served through the edge: real controller process, API, Swarm."""
    import docker
    from swarm_helpers import get

    from bench.e2e_helpers import ControllerProcess, throwaway_instance
    from reconcilers.local_images import ensure_base_image

    client = docker.from_env()
    image = ensure_base_image(client)

    def status_of(host: str) -> int:
        try:
            return get(settings, host, timeout=2)[0]
        except OSError:  # the edge is not listening yet
            return 0

    with throwaway_instance(client, image, prefix="benchgit") as settings:
        port = free_port()
        with api_server(settings.state_dir, {"DIRECTOR_INSTANCE": settings.instance}) as url:
            admin = admin_token(settings.state_dir)
            httpx.post(
                f"{url}/apis/director.io/v1/secrets",
                json={"metadata": {"name": "hook"}, "stringData": {"hmac": HOOK_KEY.decode()}},
                headers={"Authorization": f"Bearer {admin}"},
            ).raise_for_status()
            controller = ControllerProcess(settings)
            controller.env = {"DIRECTOR_API_URL": url}
            controller.start()
            try:
                deadline = time.monotonic() + 120
                while status_of("nobody.example.org") != 404:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the edge did not answer: {controller.tail()}")
                    time.sleep(0.2)
                repo = Repo(settings.state_dir, "served")
                repo.write("first.yaml", site_yaml("served-first"))
                repo.commit("first")
                apply_source(
                    url,
                    admin,
                    "served",
                    url=repo.file_url,
                    interval="24h",
                    webhook={"secretRef": {"name": "hook"}},
                )
                host = f"served-first.{settings.sites_domain}"
                while status_of(host) != 200:
                    if time.monotonic() > deadline + 60:
                        raise RuntimeError(f"the first site was not served: {controller.tail()}")
                    time.sleep(0.1)
                latencies = []
                for push in range(pushes):
                    name = f"served-{push}"
                    repo.write(f"{name}.yaml", site_yaml(name))
                    repo.commit(name)
                    started = time.monotonic()
                    hook(url, "served")
                    while status_of(f"{name}.{settings.sites_domain}") != 200:
                        if time.monotonic() - started > 60:
                            raise RuntimeError(f"{name} was not served within 60 s: {controller.tail()}")
                        time.sleep(0.01)
                    latencies.append(time.monotonic() - started)
                    time.sleep(1.2)
                print("commit -> new static site served through the edge, through the webhook:")
                print(f"  {summary(latencies)}")
            finally:
                controller.stop()
        del port


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gitops")
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--pushes", type=int, default=15)
    parser.add_argument(
        "--served", action="store_true", help="also measure commit -> served (needs the Swarm)"
    )
    args = parser.parse_args()
    asyncio.run(sync_benchmarks(args.sites, args.polls, args.pushes))
    if args.served:
        served_benchmark(8)


if __name__ == "__main__":
    main()
