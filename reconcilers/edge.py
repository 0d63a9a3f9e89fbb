"""The edge's routes on disk: a generation of shard files per table, validated, put in place, reloaded.

Under settings.edge_dir (see reconcilers.nginx_config for the rest):
    routes.conf                              the maps, the default server, one server per upload limit that
                                             sites ask for; names the live generation
    routes.d/<generation>/hosts-NN.conf      map entries host -> site, of the sites of shard NN
    routes.d/<generation>/sites-NN.conf      map entries site -> how it is served, for sites not static
    routes.d/<generation>/cache-NN.conf      proxy_cache_path lines of the dynamic sites with a cache
    routes.d/<generation>/limit-L-NN.conf    server_name lines of the sites whose upload limit is L bytes
    routes.d/<generation>/table-NN.json      the routes themselves, read back when the controller starts

A site's shard is a stable hash of its name, one of SHARDS. A change writes a new generation: the shards of
the sites it changes are written anew, every other shard file is a hard link to the live generation's (a
file is never written to once it exists, so a link shares nothing that can change). The candidate is tested
by `nginx -t` with a routes.conf naming it, in a staging directory, and goes live when that routes.conf is
renamed over the live one: one atomic step, after which a reload or a restart of the edge loads it whole,
and until which they load the last good one. So a change costs the shards it touches and a link for each
other shard file, not the whole table; and the routes read back at start are always those the edge serves.

What Nginx spends its time on is kept small too: a static site (the most common) needs no entry in the
second map, and sites with their own upload limit share one server per limit (client_max_body_size takes no
variable, so it cannot be looked up from the map) instead of a server block, with its locations, each.

Earlier versions kept each site's route in fragments/<name>.json and all the entries in routes.conf itself:
the first load reads those, and the first install removes fragments/.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import docker

from reconcilers import nginx_config
from reconcilers.route_plan import SiteRoute
from specs.config import Settings
from store.durable import fsync_directory, write_many_atomic

log = logging.getLogger(__name__)

SHARDS = 32
# Generations kept besides the live one: an edge still busy loading an earlier one finds it whole.
GENERATIONS_KEPT = 2
_GENERATION_LINE = re.compile(r"^# generation: (\S+)$", re.MULTILINE)
_GENERATION_NAME = re.compile(r"^([0-9]{6,})-[0-9a-f]+$")
_SHARD_OF_FILE = re.compile(r"-([0-9]+)\.(conf|json)$")
_SHARD_FILE = re.compile(
    rf"{re.escape(nginx_config.ROUTES_DIR)}/[^/]+/(hosts|sites|cache|limit-[0-9]+)-([0-9]+)\.conf"
)


def shard_of(name: str) -> int:
    return zlib.crc32(name.encode()) % SHARDS


def _map_key(value: str) -> str:
    # "\\" in the file: Nginx reads it as one backslash, which map drops (see routes.conf.j2).
    return '"\\\\' + value + '"'


@dataclass(frozen=True, slots=True)
class Fragment:
    """One site's route as the edge's files say it."""

    route: SiteRoute
    hosts: str
    # Empty for a static site: the map's default.
    site: str
    # Its server_name line in the server of its upload limit; empty with the default limit.
    names: str
    # The route as its shard's table file lists it: made once, not at every generation the shard is in.
    table_entry: str
    # The proxy_cache_path line of its cache zone; empty without spec.cache.
    cache: str = ""

    @property
    def own_limit(self) -> int | None:
        return self.route.upload_limit if self.names else None

    def text(self, kind: str) -> str:
        if kind == "hosts":
            return self.hosts
        if kind == "sites":
            return self.site
        if kind == "cache":
            return self.cache
        return self.names if kind == f"limit-{self.own_limit}" else ""


@dataclass(frozen=True)
class Candidate:
    """A generation written and validated, not yet live."""

    # None: no site is routed and none ever was, so routes.conf needs no generation.
    generation: str | None
    staged: Path
    fragments: Mapping[str, Fragment | None]


def _shard_files(shard: int, fragments: list[Fragment]) -> dict[str, str]:
    """File name -> content, of one shard's files (empty ones left out); `fragments` sorted by name."""
    limits = sorted({limit for fragment in fragments if (limit := fragment.own_limit) is not None})
    files: dict[str, str] = {}
    for kind in ("hosts", "sites", "cache", *(f"limit-{limit}" for limit in limits)):
        text = "".join(fragment.text(kind) for fragment in fragments)
        if text:
            files[f"{kind}-{shard:02d}.conf"] = text
    if fragments:
        # What json.dumps(list of routes, separators=(",", ":")) writes, from each route's own entry.
        files[f"table-{shard:02d}.json"] = f"[{','.join(fragment.table_entry for fragment in fragments)}]"
    return files


def live_generation(edge_dir: Path) -> str | None:
    """The generation the live routes.conf names (None: none, as before any site was routed)."""
    try:
        named = _GENERATION_LINE.search((edge_dir / nginx_config.ROUTES_CONF).read_text())
    except FileNotFoundError:
        return None
    return named.group(1) if named else None


def live_files(edge_dir: Path) -> dict[str, str]:
    """What a reload of the edge would load of the routes: routes.conf and its generation's files, by path
    relative to `edge_dir`."""
    files = {nginx_config.ROUTES_CONF: (edge_dir / nginx_config.ROUTES_CONF).read_text()}
    generation = live_generation(edge_dir)
    if generation is not None:
        directory = edge_dir / nginx_config.ROUTES_DIR / generation
        for path in sorted(directory.iterdir()):
            files[str(path.relative_to(edge_dir))] = path.read_text()
    return files


def live_routes(edge_dir: Path) -> dict[str, SiteRoute]:
    """The routes of the live generation, by site."""
    generation = live_generation(edge_dir)
    if generation is None:
        return {}
    routes: dict[str, SiteRoute] = {}
    for path in sorted((edge_dir / nginx_config.ROUTES_DIR / generation).glob("table-*.json")):
        try:
            found = [SiteRoute.from_json(fields) for fields in json.loads(path.read_text())]
        except (OSError, ValueError, KeyError, TypeError) as error:
            # Its sites are routed again at their next reconcile; the edge's files are rewritten without them.
            log.warning("routes in %s are unreadable and left out: %s", path, error)
            continue
        routes.update((route.name, route) for route in found)
    return routes


class EdgeRoutes:
    """The routes' files in the edge directory and the edge's reloads. Blocking; one caller at a time."""

    def __init__(self, settings: Settings, client: docker.DockerClient, templates_dir: Path) -> None:
        self._settings = settings
        self._client = client
        self._templates = nginx_config.template_environment(templates_dir)
        self._server_template = self._templates.get_template("site_server.conf.j2")
        self._layout = nginx_config.EdgeLayout(settings.edge_dir)
        self._fragments: dict[str, Fragment] = {}
        self._members: dict[int, set[str]] = {}
        # Upload limit -> how many sites have it as their own.
        self._limits: Counter[int] = Counter()
        self.generation: str | None = None
        self._serial = 0
        self._installed: list[str] = []

    @property
    def revision(self) -> str:
        """What the edge answers once it loaded the live routes (see routes.conf.j2)."""
        return self.generation or nginx_config.routes_revision("", "", "")

    # ---- reading back what is live ----------------------------------------------------------------------

    def load(self) -> list[SiteRoute]:
        """The routes of the live generation (or of an earlier version's fragments); removes leftovers."""
        layout = self._layout
        with nginx_config.edge_dir_lock(self._settings.edge_dir):
            generation = live_generation(layout.edge_dir)
            routes: list[SiteRoute] = []
            if generation is not None and (layout.routes_dir / generation).is_dir():
                routes = list(live_routes(layout.edge_dir).values())
            else:
                generation = None
                if layout.fragments_dir.is_dir():
                    for path in sorted(layout.fragments_dir.glob("*.json")):
                        try:
                            routes.append(SiteRoute.from_json(json.loads(path.read_text())))
                        except (OSError, ValueError, KeyError, TypeError) as error:
                            log.warning("the route in %s is unreadable and left out: %s", path, error)
            self.generation = generation
            self._installed = [generation] if generation else []
            if layout.routes_dir.is_dir():
                for entry in layout.routes_dir.iterdir():
                    found = _GENERATION_NAME.match(entry.name)
                    if found:
                        self._serial = max(self._serial, int(found.group(1)))
                    # Generations never installed (a crash came first), and those of earlier runs.
                    if entry.name != generation:
                        shutil.rmtree(entry, ignore_errors=True)
            if generation is not None and layout.fragments_dir.is_dir():
                shutil.rmtree(layout.fragments_dir, ignore_errors=True)
        return routes

    def adopt(self, routes: Iterable[SiteRoute]) -> None:
        """Take `routes` as what the live files hold (live_matches says whether they do)."""
        self._fragments = {route.name: self._fragment(route) for route in routes}
        self._members = {}
        self._limits = Counter()
        for name, fragment in self._fragments.items():
            self._members.setdefault(shard_of(name), set()).add(name)
            if fragment.own_limit is not None:
                self._limits[fragment.own_limit] += 1

    def live_matches(self) -> bool:
        """Whether the live routes.conf and generation are exactly what the adopted routes make."""
        return self.live_problem() is None

    def live_problem(self) -> str | None:
        """What differs between the live routes.conf and generation and what the adopted routes make, in
        words for an event; None when they are exactly that."""
        layout = self._layout
        live = layout.edge_dir / nginx_config.ROUTES_CONF
        if not live.exists():
            return f"{live} was removed"
        if self.generation is None and self._fragments:
            return f"{live} names no generation of routes"
        try:
            if live.read_text() != self._routes_conf(self.generation, self._limits):
                return f"{live} was edited by hand"
            if self.generation is None:
                return None
            directory = layout.routes_dir / self.generation
            if not directory.is_dir():
                return f"{directory} was removed"
            wanted: dict[str, str] = {}
            for shard, names in self._members.items():
                wanted.update(_shard_files(shard, [self._fragments[name] for name in sorted(names)]))
            present = {path.name for path in directory.iterdir()}
            foreign = sorted(present - set(wanted))
            if foreign:
                return f"{directory} has files the routes do not make: {', '.join(foreign)}"
            if set(wanted) - present:
                return f"files of {directory} were removed: {', '.join(sorted(set(wanted) - present))}"
            edited = sorted(name for name, text in wanted.items() if (directory / name).read_text() != text)
            if edited:
                return f"files of {directory} were edited by hand: {', '.join(edited)}"
            return None
        except OSError as error:
            return f"the routes in {layout.edge_dir} cannot be read: {error}"

    # ---- a new generation ---------------------------------------------------------------------------------

    def stage(self, changes: Mapping[str, SiteRoute | None], deadline: float) -> Candidate:
        """Write the live generation with `changes` as a new one and validate it; NginxRejected if refused."""
        fragments = {name: self._fragment(route) if route else None for name, route in changes.items()}
        return self._stage(fragments, {shard_of(name) for name in changes}, deadline)

    def stage_all(self, deadline: float) -> Candidate:
        """The adopted routes as a new generation, every file written anew (to put back what was edited)."""
        return self._stage({}, set(range(SHARDS)), deadline)

    def _stage(
        self, fragments: Mapping[str, Fragment | None], shards: set[int], deadline: float
    ) -> Candidate:
        timeout = max(0.1, deadline - time.monotonic())
        members = self._members_with(fragments)
        limits = self._limits_with(fragments)
        if self.generation is None and not members:
            staged = self._validate(self._routes_conf(None, limits), timeout)
            return Candidate(None, staged, fragments)
        # Nginx makes each zone's directory, not the one they are in; here it is the same for `nginx -t`.
        self._settings.edge_cache_dir.mkdir(parents=True, exist_ok=True)
        self._serial += 1
        generation = f"{self._serial:06d}-{secrets.token_hex(2)}"
        directory = self._layout.routes_dir / generation
        directory.mkdir(parents=True)
        try:
            self._write_generation(directory, fragments, members, shards)
            staged = self._validate(self._routes_conf(generation, limits), timeout)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return Candidate(generation, staged, fragments)

    def _members_with(self, fragments: Mapping[str, Fragment | None]) -> dict[int, list[str]]:
        """Shard -> the sorted names in it, once `fragments` are applied (sorted only where they touch)."""
        touched: dict[int, set[str]] = {}
        for name, fragment in fragments.items():
            shard = shard_of(name)
            names = touched.setdefault(shard, set(self._members.get(shard, ())))
            if fragment is None:
                names.discard(name)
            else:
                names.add(name)
        members = {shard: sorted(names) for shard, names in self._members.items() if shard not in touched}
        members.update((shard, sorted(names)) for shard, names in touched.items() if names)
        return members

    def _limits_with(self, fragments: Mapping[str, Fragment | None]) -> Counter[int]:
        limits = Counter(self._limits)
        for name, fragment in fragments.items():
            for before_or_after, sign in ((self._fragments.get(name), -1), (fragment, 1)):
                if before_or_after is not None and before_or_after.own_limit is not None:
                    limits[before_or_after.own_limit] += sign
        return +limits

    def _write_generation(
        self,
        directory: Path,
        fragments: Mapping[str, Fragment | None],
        members: Mapping[int, list[str]],
        shards: set[int],
    ) -> None:
        previous = self._previous_files(shards)
        written: list[tuple[Path, bytes]] = []
        for shard, names in members.items():
            if shard in previous:
                for name in previous[shard]:
                    os.link(self._layout.routes_dir / str(self.generation) / name, directory / name)
                continue
            shard_fragments = [fragments.get(name) or self._fragments[name] for name in names]
            written += [
                (directory / name, text.encode())
                for name, text in _shard_files(shard, shard_fragments).items()
            ]
        # Synced together (the journal commits them at once), then the directory holding them and the links.
        write_many_atomic(written, sync_directories=False)
        fsync_directory(directory)

    def _previous_files(self, rewritten: set[int]) -> dict[int, list[str]]:
        """Shard -> the live generation's files of it, for the shards not `rewritten`."""
        files: dict[int, list[str]] = {}
        if self.generation is None:
            return files
        try:
            names = os.listdir(self._layout.routes_dir / self.generation)
        except FileNotFoundError:  # removed by hand: every shard is written anew
            return files
        for name in names:
            found = _SHARD_OF_FILE.search(name)
            if found is not None and int(found.group(1)) not in rewritten:
                files.setdefault(int(found.group(1)), []).append(name)
        return files

    def _validate(self, routes_conf: str, timeout: float) -> Path:
        return nginx_config.stage_and_validate(self._layout, {nginx_config.ROUTES_CONF: routes_conf}, timeout)

    def culprit(
        self, refused: nginx_config.NginxRejected, changes: Mapping[str, SiteRoute | None]
    ) -> str | None:
        """The site of `changes` whose lines Nginx refused in the candidate staged with them, when Nginx said
        where and the lines are one of theirs."""
        where = _SHARD_FILE.fullmatch(refused.file or "")
        if where is None or refused.line is None:
            return None
        kind, shard = where.group(1), int(where.group(2))
        fragments = {name: self._fragment(route) if route else None for name, route in changes.items()}
        line = 0
        for name in self._members_with(fragments).get(shard, []):
            fragment = fragments.get(name) or self._fragments[name]
            line += fragment.text(kind).count("\n")
            if refused.line <= line:
                return name if name in changes else None
        return None

    # ---- going live -----------------------------------------------------------------------------------

    def install(self, candidate: Candidate) -> None:
        """Make `candidate` the live routes (one rename); the edge loads them at its next reload."""
        with nginx_config.edge_dir_lock(self._settings.edge_dir):
            nginx_config.install_staged(self._layout, candidate.staged, [nginx_config.ROUTES_CONF])
            self._limits = self._limits_with(candidate.fragments)
            for name, fragment in candidate.fragments.items():
                previous = self._fragments.get(name)
                if previous is not None and previous.cache and not (fragment and fragment.cache):
                    # Its pages are nobody's now (the zone is gone at the next reload): the disk is freed.
                    shutil.rmtree(nginx_config.site_cache_dir(self._settings, name), ignore_errors=True)
                shard = shard_of(name)
                if fragment is None:
                    self._fragments.pop(name, None)
                    self._members.get(shard, set()).discard(name)
                else:
                    self._fragments[name] = fragment
                    self._members.setdefault(shard, set()).add(name)
            if candidate.generation is None:
                return
            self.generation = candidate.generation
            self._installed.append(candidate.generation)
            if self._layout.fragments_dir.is_dir():
                shutil.rmtree(self._layout.fragments_dir, ignore_errors=True)

    def collect(self) -> None:
        """Remove the generations installed before the last GENERATIONS_KEPT + 1 (after the reload: it is
        not waiting on this)."""
        with nginx_config.edge_dir_lock(self._settings.edge_dir):
            outdated, self._installed = (
                self._installed[: -GENERATIONS_KEPT - 1],
                self._installed[-GENERATIONS_KEPT - 1 :],
            )
            for generation in outdated:
                shutil.rmtree(self._layout.routes_dir / generation, ignore_errors=True)

    def discard(self, candidate: Candidate) -> None:
        nginx_config.discard_staged(candidate.staged)
        if candidate.generation is not None:
            shutil.rmtree(self._layout.routes_dir / candidate.generation, ignore_errors=True)

    def reload(self) -> nginx_config.EdgeReload:
        return nginx_config.reload_edge(self._client, self._settings)

    # ---- rendering ------------------------------------------------------------------------------------

    def _routes_conf(self, generation: str | None, limits: Counter[int]) -> str:
        servers = "".join(
            self._server_template.render(
                upload_limit=limit,
                names=f"{nginx_config.ROUTES_DIR}/{generation}/limit-{limit}-*.conf",
            )
            for limit in sorted(limits)
        )
        return nginx_config.render_routes(self._templates, servers=servers, generation=generation)

    def _fragment(self, route: SiteRoute) -> Fragment:
        own_limit = route.upload_limit != nginx_config.DEFAULT_UPLOAD_LIMIT_BYTES
        cached = route.kind == "dynamic" and route.stale_seconds > 0
        # "cached" is a dynamic site whose requests go through its own cache zone (see nginx.conf.j2).
        served_as = "cached" if cached else route.kind
        return Fragment(
            route=route,
            hosts="".join(f'    {_map_key(host)} "{route.name}";\n' for host in route.hosts),
            site="" if route.kind == "static" else f'    {_map_key(route.name)} "{served_as}";\n',
            names=f"    server_name {' '.join(route.hosts)};\n" if own_limit else "",
            cache=nginx_config.cache_path_line(self._settings, route) if cached else "",
            table_entry=json.dumps(route.to_json(), separators=(",", ":")),
        )
