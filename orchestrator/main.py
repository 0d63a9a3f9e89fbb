"""`director`: the composition root. It builds the real reconcilers and hands them to the controller.

This is the one place that knows both the runtime (controller/) and Docker and Nginx (reconcilers/).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import docker
import docker.errors

from controller.backoff import Backoff
from controller.kinds import Kind
from controller.process import THREADS, configure_logging, run
from controller.runtime import Controller, ControllerOptions
from orchestrator.gitops import api_base_url, controller_credential
from reconcilers.director_api import DirectorApi
from reconcilers.docker_calls import make_client
from reconcilers.docker_events import DockerEvents
from reconcilers.files import SiteFiles
from reconcilers.git import Git
from reconcilers.gitsource import GitSync
from reconcilers.images import ImageResolver
from reconcilers.platform import EdgePlatform, platform_record
from reconcilers.routes import SiteRoutes
from reconcilers.service import SiteServices
from reconcilers.swarm_cache import SwarmCache
from specs.config import Settings, api_ca_path
from store.events import EventLog
from store.records import GitSourceStore, NotFound, PlatformStore, SiteStore

log = logging.getLogger("director")

# The batches of routes the edge reloads grow with the workers. Measured with 10,000 static sites starting
# at once, in one sitting: all Ready in 222 s with 16 workers (CPU 103 s), 77 s with 128 (CPU 73 s), where
# the CPU is the limit. A burst of 100 dynamic sites takes as long with 16 as with 128 (38 s against 33-36 s
# on a loaded machine; bench.reconcile_loop --parts burst --workers N): it waits on Swarm starting containers.
# It looked slower with 128 while every task start first waited for Swarm's pull of the image's tag to fail
# (a registry lookup of 5-10 s here, slower when many start at once); Director's local images are now named
# by their ID, which Swarm never pulls (local_images.pinned_local_image).
WORKERS = 128


def build_controller(
    settings: Settings, options: ControllerOptions, client: docker.DockerClient
) -> Controller:
    # One picture of the Swarm for every reconciler, kept current by the events trigger and the resync.
    cache = SwarmCache(settings, client)
    images = ImageResolver(client, settings)
    sites = SiteStore(settings.state_dir)
    platforms = PlatformStore(settings.state_dir)
    ensure_platform_record(platforms, settings)
    files = SiteFiles(settings)
    services = SiteServices(settings, cache, images)
    # Which site holds each custom domain is the store's to say: the first to claim it.
    routes = SiteRoutes(settings, client, host_holders=sites.host_holders)
    edge = EdgePlatform(settings, client, cache, images, routes_repair=routes.repair)
    platform = Kind(records=platforms, reconcilers=[edge], first=True)
    site = Kind(
        records=sites,
        # Files first (the service mounts them), then the service, then the routes that point to it.
        reconcilers=[files, services, routes],
        describe=lambda record: {"urls": settings.site_urls(record.name, list(record.spec.domains))},
    )
    # Sources apply their documents through the API, as the users they act for.
    workdir = settings.state_dir / "gitsources"
    sync = GitSync(
        api=DirectorApi(api_base_url(), controller_credential(), ca_file=api_ca_path(settings.state_dir)),
        git=Git(workdir),
        sites=sites,
        sources=(sources := GitSourceStore(settings.state_dir)),
        workdir=workdir,
    )
    gitsource = Kind(records=sources, reconcilers=[sync])
    events = EventLog(settings.events_db)
    # Once the engine answers again after an outage, what failed meanwhile is retried at once, not after its
    # backoff (minutes, after a long outage).
    docker_events = DockerEvents(
        settings, client, cache, events=events, on_return=lambda why: controller.retry_failing(why)
    )
    controller = Controller(
        kinds=[platform, site, gitsource],
        events=events,
        state_dir=settings.state_dir,
        # A Docker event marks what it changed stale in the cache before it wakes the site or the platform.
        # The routes wake the sites waiting for a domain the moment its holder lets go of it.
        triggers=[docker_events, routes],
        options=options,
    )
    return controller


def ensure_platform_record(platforms: PlatformStore, settings: Settings) -> None:
    """The platform's one record, its spec as the settings say: the composition root is its only writer."""
    wanted = platform_record(settings)
    try:
        current = platforms.get(wanted.name)
    except NotFound:
        platforms.create(wanted)
        return
    if current.spec != wanted.spec:
        current.spec = wanted.spec
        platforms.update(current)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="director", description="Director: websites on Docker Swarm.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    controller = commands.add_parser(
        "controller",
        help="reconcile every site's Swarm service, edge routes and files with its record, forever",
        description=(
            "Run the controller. Settings come from the environment (DIRECTOR_STATE_DIR, DIRECTOR_INSTANCE, "
            "DIRECTOR_HTTP_PORT, DIRECTOR_RESYNC_SECONDS...). One controller per state dir writes at a "
            "time; another one waits for the lock and says who holds it in STATE_DIR/controller.yaml."
        ),
    )
    # A reconcile waiting on the edge (its batch of routes validated, reloaded and served) holds its worker:
    # the workers bound how many sites one reload can carry. A worker is a coroutine, cheap while it waits.
    controller.add_argument(
        "--workers", type=_positive(int), default=WORKERS, help=f"parallel reconciles ({WORKERS})"
    )
    controller.add_argument(
        "--step-timeout", type=_positive(float), default=60.0, help="deadline of each reconciler call, s (60)"
    )
    controller.add_argument(
        "--resync-seconds",
        type=_positive(float),
        default=None,
        help="period of the full resync, s (DIRECTOR_RESYNC_SECONDS, 30)",
    )
    controller.add_argument(
        "--shutdown-grace",
        type=_positive(float),
        default=20.0,
        help="how long in-flight reconciles may finish after SIGTERM, s (20)",
    )
    controller.add_argument(
        "--max-backoff", type=_positive(float), default=300.0, help="longest wait before a retry, s (300)"
    )
    controller.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    demo = commands.add_parser(
        "run",
        help="run the controller and the API, apply the example sites and print their URLs (make run)",
        description=(
            "Start the controller and the API (logs under STATE_DIR/log), create a demo admin whose token "
            "is written to dirctl's configuration, apply the examples with `dirctl apply --wait`, print the "
            "URLs and wait. Ctrl-C stops Director's processes; the sites keep serving in Swarm."
        ),
    )
    demo.add_argument(
        "--examples", type=Path, default=Path("examples"), help="directory of Site files to apply (examples/)"
    )
    commands.add_parser(
        "shell-server",
        help="the SSH shell: ssh -p 2222 alice/hello@HOST lands in a shell of site hello",
        description=(
            "Serve SSH on DIRECTOR_SSH_BIND:DIRECTOR_SSH_PORT (0.0.0.0:2222), asking the API "
            "(DIRECTOR_API_URL) who logs in and for their sessions. Its credential, confined to "
            "/shell-server/ "
            "URLs, is DIRECTOR_SHELL_TOKEN if set, else one issued now into STATE_DIR/shell-server/token "
            "(mode 0600). Host keys are made on first start in STATE_DIR/ssh/."
        ),
    )
    return parser


def shell_server() -> int:
    """Issue the shell server's credential (in a child process: this one never opens the database), then
    serve SSH with it."""
    import os
    import subprocess

    from shell import server
    from shell.config import token_file

    if not os.environ.get("DIRECTOR_SHELL_TOKEN"):
        path = Path(os.environ.get("DIRECTOR_SHELL_TOKEN_FILE") or token_file(Settings.from_env().state_dir))
        issued = subprocess.run(
            [sys.executable, "-m", "orchestrator.api_server", "shell-credential", "--output", str(path)],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        if issued.returncode != 0:
            log.error("issuing the shell server's credential failed (exit %d)", issued.returncode)
            return 1
        os.environ["DIRECTOR_SHELL_TOKEN_FILE"] = str(path)
    return server.main()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        # Imported here: the demo brings the SSH server's library (asyncssh, about 14 MB resident), which a
        # controller never uses.
        from orchestrator import demo

        return demo.run(args.examples)
    if args.command == "shell-server":
        return shell_server()
    configure_logging(args.log_level)
    try:
        settings = Settings.from_env()
    except ValueError as error:
        log.error("bad setting: %s", error)
        return 2
    options = ControllerOptions(
        workers=args.workers,
        step_timeout=args.step_timeout,
        resync_seconds=args.resync_seconds or float(settings.resync_seconds),
        shutdown_grace=args.shutdown_grace,
        backoff=Backoff(cap=args.max_backoff),
    )
    try:
        client = make_client()
        client.ping()
    except docker.errors.DockerException as error:
        log.error("cannot reach the Docker engine (%s); is dockerd running?", error)
        return 1
    log.info(
        "state dir %s, instance %s, edge port %d", settings.state_dir, settings.instance, settings.http_port
    )
    try:
        return run(lambda: build_controller(settings, options, client), threads=THREADS)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
