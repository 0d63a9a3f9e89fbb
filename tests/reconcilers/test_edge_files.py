"""The edge's route files on their own: generations of shards, checked by the host's `nginx -t`, no Docker."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from reconcilers import nginx_config
from reconcilers.edge import GENERATIONS_KEPT, EdgeRoutes, live_files, live_generation, live_routes, shard_of
from reconcilers.route_plan import SiteRoute
from specs.config import Settings

DEFAULT_LIMIT = nginx_config.DEFAULT_UPLOAD_LIMIT_BYTES


def route(name: str, *domains: str, kind: str = "static", limit: int = DEFAULT_LIMIT) -> SiteRoute:
    return SiteRoute(name, (f"{name}.sites.localhost", *domains), kind, limit)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """An edge directory with the platform's files in place, as the platform reconciler leaves it."""
    settings = Settings(state_dir=tmp_path, instance="unit")
    settings.edge_dir.mkdir(parents=True)
    settings.sites_dir.mkdir(parents=True)
    environment = nginx_config.template_environment()
    files = nginx_config.render_static_files(environment, settings)
    files[nginx_config.ROUTES_CONF] = nginx_config.render_routes(environment, "", "", "")
    layout = nginx_config.EdgeLayout(settings.edge_dir)
    nginx_config.install_staged(layout, nginx_config.stage_and_validate(layout, files, 30), list(files))
    return settings


def loaded(settings: Settings, templates: Path = nginx_config.TEMPLATES_DIR) -> EdgeRoutes:
    edge = EdgeRoutes(settings, None, templates)  # type: ignore[arg-type]
    edge.adopt(edge.load())
    return edge


def install(edge: EdgeRoutes, changes: dict[str, SiteRoute | None]) -> None:
    edge.install(edge.stage(changes, time.monotonic() + 60))


def inodes(directory: Path) -> dict[str, int]:
    return {path.name: path.stat().st_ino for path in directory.iterdir()}


def test_a_change_writes_only_the_shard_of_its_site_and_links_the_others(settings):
    edge = loaded(settings)
    assert edge.live_matches() and live_generation(settings.edge_dir) is None
    sites = {f"site-{i}": route(f"site-{i}", f"www.site-{i}.example.org") for i in range(300)}
    sites["site-7"] = route("site-7", limit=8 * 1024 * 1024)
    install(edge, dict(sites))
    first = settings.edge_dir / nginx_config.ROUTES_DIR / str(edge.generation)
    before = inodes(first)

    install(edge, {"site-12": route("site-12", kind="not-served")})
    second = settings.edge_dir / nginx_config.ROUTES_DIR / str(edge.generation)
    assert second != first and live_generation(settings.edge_dir) == edge.generation
    after = inodes(second)
    rewritten = {name for name, inode in after.items() if before.get(name) != inode}
    shard = shard_of("site-12")
    assert rewritten == {f"hosts-{shard:02d}.conf", f"sites-{shard:02d}.conf", f"table-{shard:02d}.json"}
    assert live_routes(settings.edge_dir)["site-12"].kind == "not-served"
    assert edge.live_matches()
    # Read back by a restarted controller: the same routes, and nothing to put back.
    again = loaded(settings)
    assert again.live_matches() and again.generation == edge.generation
    assert {name: r for name, r in live_routes(settings.edge_dir).items()} == {
        **sites,
        "site-12": route("site-12", kind="not-served"),
    }


def test_a_candidate_nginx_refuses_leaves_the_live_routes_and_no_file_behind(settings):
    edge = loaded(settings)
    install(edge, {"good": route("good", "good.example.org")})
    live = live_files(settings.edge_dir)
    # A host name with a quote in it: never admitted by the specs, here to make a line Nginx refuses.
    broken = route("broken", 'bad".example.org')
    with pytest.raises(nginx_config.NginxRejected) as refused:
        edge.stage({"broken": broken, "fine": route("fine")}, time.monotonic() + 60)
    assert edge.culprit(refused.value, {"broken": broken, "fine": route("fine")}) == "broken"
    assert live_files(settings.edge_dir) == live
    assert [path.name for path in (settings.edge_dir / nginx_config.ROUTES_DIR).iterdir()] == [
        edge.generation
    ]
    assert list((settings.edge_dir / "staging").iterdir()) == []


def test_the_first_load_takes_over_the_routes_of_an_earlier_version(settings):
    fragments = settings.edge_dir / "fragments"
    fragments.mkdir()
    old = [route("old-one", "old.example.org"), route("old-two", kind="dynamic", limit=5 * 1024 * 1024)]
    for each in old:
        # An earlier version's fragment: its rendered parts beside the route's fields.
        fields = {**each.to_json(), "host_entries": "...", "server": ""}
        fields.pop("claimed")
        (fragments / f"{each.name}.json").write_text(json.dumps(fields))
    (settings.edge_dir / nginx_config.ROUTES_CONF).write_text(
        nginx_config.render_routes(
            nginx_config.template_environment(), '    "\\\\old.example.org" "old-one";', "", ""
        )
    )
    edge = EdgeRoutes(settings, None, nginx_config.TEMPLATES_DIR)  # type: ignore[arg-type]
    routes = edge.load()
    assert {r.name: r for r in routes} == {r.name: r for r in old}
    edge.adopt(routes)
    assert not edge.live_matches()
    edge.install(edge.stage_all(time.monotonic() + 60))
    assert not fragments.exists()
    assert live_routes(settings.edge_dir) == {r.name: r for r in old}
    assert loaded(settings).live_matches()


def test_what_was_edited_by_hand_is_seen_and_written_anew(settings):
    edge = loaded(settings)
    install(edge, {f"site-{i}": route(f"site-{i}") for i in range(20)})
    generation = settings.edge_dir / nginx_config.ROUTES_DIR / str(edge.generation)
    shard = next(generation.glob("hosts-*.conf"))
    shard.write_text(shard.read_text().splitlines(keepends=True)[0])
    assert not edge.live_matches()
    edge.install(edge.stage_all(time.monotonic() + 60))
    assert edge.live_matches()
    rewritten = settings.edge_dir / nginx_config.ROUTES_DIR / str(edge.generation) / shard.name
    assert rewritten.stat().st_ino != shard.stat().st_ino


def test_old_generations_and_leftovers_are_removed(settings):
    edge = loaded(settings)
    for i in range(6):
        install(edge, {f"site-{i}": route(f"site-{i}")})
        edge.collect()
    routes_dir = settings.edge_dir / nginx_config.ROUTES_DIR
    assert len(list(routes_dir.iterdir())) == GENERATIONS_KEPT + 1
    # A generation written but never installed (a crash before the rename) is gone at the next start.
    shutil.copytree(routes_dir / str(edge.generation), routes_dir / "999999-dead")
    restarted = loaded(settings)
    assert [path.name for path in routes_dir.iterdir()] == [restarted.generation]
    assert restarted.live_matches()


def test_an_unreadable_table_file_costs_its_sites_and_not_the_start(settings):
    edge = loaded(settings)
    install(edge, {f"site-{i}": route(f"site-{i}") for i in range(40)})
    generation = settings.edge_dir / nginx_config.ROUTES_DIR / str(edge.generation)
    table = sorted(generation.glob("table-*.json"))[0]
    lost = {entry["name"] for entry in json.loads(table.read_text())}
    table.write_text("{not json")
    restarted = EdgeRoutes(settings, None, nginx_config.TEMPLATES_DIR)  # type: ignore[arg-type]
    routes = restarted.load()
    assert {r.name for r in routes} == {f"site-{i}" for i in range(40)} - lost
    restarted.adopt(routes)
    assert not restarted.live_matches()
    restarted.install(restarted.stage_all(time.monotonic() + 60))
    assert set(live_routes(settings.edge_dir)) == {r.name for r in routes}


def test_a_cached_site_has_its_own_zone_read_back_with_its_route_and_removed_with_it(settings):
    edge = loaded(settings)
    cached = SiteRoute("kept", ("kept.sites.localhost",), "dynamic", DEFAULT_LIMIT, (), 600, 8 * 1024**2)
    install(edge, {"kept": cached, "plain": route("plain", kind="dynamic")})
    generation = settings.edge_dir / nginx_config.ROUTES_DIR / str(edge.generation)
    shard = shard_of("kept")
    zone = (generation / f"cache-{shard:02d}.conf").read_text()
    assert f"{settings.edge_cache_dir}/kept " in zone
    assert "keys_zone=director_cache_kept:1m max_size=8388608 inactive=600s" in zone
    assert '"cached";' in (generation / f"sites-{shard:02d}.conf").read_text()
    assert not any("plain" in path.read_text() for path in generation.glob("cache-*.conf"))
    # `nginx -t` made the zone's directory, as the edge's master does at its reload.
    assert (settings.edge_cache_dir / "kept").is_dir()
    assert loaded(settings).live_matches()
    assert live_routes(settings.edge_dir)["kept"] == cached

    install(edge, {"kept": route("kept", kind="dynamic")})
    assert not (settings.edge_cache_dir / "kept").exists()
    assert not list((settings.edge_dir / nginx_config.ROUTES_DIR / str(edge.generation)).glob("cache-*.conf"))
