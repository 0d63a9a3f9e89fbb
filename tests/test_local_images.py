"""The local image builder: content-hash tags, no rebuild when the tag exists, builds serialised by a lock."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from reconcilers.images import ImageResolver
from reconcilers.local_images import (
    BASE_ALIASES,
    LABEL_RECIPE,
    ImageBuildError,
    ImageRecipe,
    base_recipe,
    build_lock,
    ensure_base_image,
    ensure_image,
    pinned_local_image,
    read_package_list,
)


def test_second_ensure_is_fast_and_returns_the_same_tag(docker_client, base_image):
    started = time.monotonic()
    tag = ensure_base_image(docker_client)
    elapsed = time.monotonic() - started
    assert tag == base_image
    assert elapsed < 1.0, f"ensure_base_image took {elapsed:.2f} s although {tag} exists"
    image = docker_client.images.get(tag)
    assert set(BASE_ALIASES) <= set(image.tags)
    assert image.labels[LABEL_RECIPE] == base_recipe().content_hash()


def test_base_image_serves_as_edge_and_site_image(docker_client, base_image, test_labels):
    output = docker_client.containers.run(
        base_image,
        [
            "sh",
            "-c",
            "nginx -t 2>&1 && python3 -c 'import ssl; print(ssl.OPENSSL_VERSION)' && curl --version",
        ],
        labels=test_labels,
        remove=True,
    )
    assert b"nginx.conf test is successful" in output
    assert b"OpenSSL" in output
    assert b"curl " in output
    config = docker_client.images.get(base_image).attrs["Config"]
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in config["Env"]
    assert "http.server" in " ".join(config["Cmd"])


def test_a_local_image_is_named_by_its_id_which_swarm_never_pulls(docker_client, base_image):
    image_id = docker_client.images.get(base_image).id
    assert image_id.startswith("sha256:")
    assert pinned_local_image(docker_client, base_image) == image_id
    assert pinned_local_image(docker_client, "director-local/site:latest") == image_id
    # Not Director's own: pulled as usual. Not here: left as named, for Swarm to say it has no such image.
    assert pinned_local_image(docker_client, "nginx:1.25") == "nginx:1.25"
    assert pinned_local_image(docker_client, "director-local/none:0") == "director-local/none:0"


async def test_a_dynamic_site_s_default_image_is_the_local_base_named_by_its_id(
    docker_client, base_image, make_settings
):
    resolver = ImageResolver(docker_client, make_settings(site_image=base_image))
    image_id = docker_client.images.get(base_image).id
    for alias in BASE_ALIASES:
        assert await resolver.site_image(alias, time.monotonic() + 30) == image_id
    assert await resolver.site_image("nginx:1.25", time.monotonic() + 30) == "nginx:1.25"


async def test_the_edge_s_local_image_is_named_by_its_id(docker_client, base_image, make_settings):
    resolver = ImageResolver(docker_client, make_settings(edge_image=base_image))
    assert await resolver.edge_image(time.monotonic() + 30) == docker_client.images.get(base_image).id


def test_tag_follows_the_recipe():
    recipe = base_recipe()
    assert recipe.tag == f"director-local/base:{recipe.content_hash()[:12]}"
    reordered = replace(recipe, packages=tuple(reversed(recipe.packages)))
    assert reordered.tag == recipe.tag
    assert replace(recipe, packages=(*recipe.packages, "git")).tag != recipe.tag
    assert replace(recipe, changes=(*recipe.changes, "ENV A=1")).tag != recipe.tag
    assert replace(recipe, builder_version="test/2").tag != recipe.tag
    assert replace(recipe, suite="trixie").tag != recipe.tag


def test_package_list_names_the_bad_line(tmp_path):
    packages = tmp_path / "base.packages"
    packages.write_text("# comment\npython3  # trailing comment\n\nnginx;rm -rf\n")
    with pytest.raises(ImageBuildError, match=r"base\.packages:4: 'nginx;rm -rf' is not a Debian package"):
        read_package_list(packages)
    packages.write_text("python3\ncurl\npython3\n")
    with pytest.raises(ImageBuildError, match=r"base\.packages:3: 'python3' is listed twice"):
        read_package_list(packages)
    packages.write_text("# nothing\n")
    with pytest.raises(ImageBuildError, match="lists no packages"):
        read_package_list(packages)
    packages.write_text("python3 # the runtime\nca-certificates\n")
    assert read_package_list(packages) == ("python3", "ca-certificates")


def test_build_lock_excludes_a_second_holder(tmp_path):
    lock = tmp_path / "build.lock"
    with (
        build_lock(lock, timeout=1),
        pytest.raises(ImageBuildError, match="held"),
        build_lock(lock, timeout=0.3),
    ):
        pass
    with build_lock(lock, timeout=0.3):
        pass


def test_waiter_finds_the_image_the_lock_holder_built(docker_client, base_image, run_id, tmp_path):
    """A second process waiting on the lock must use the first one's image, not build its own."""
    recipe = ImageRecipe(name=f"locktest-{run_id}", suite="bookworm", packages=("python3",), changes=())
    lock = tmp_path / "build.lock"
    results: list[str] = []
    errors: list[BaseException] = []

    def ensure_in_background() -> None:
        try:
            # An unreachable mirror: were the waiter to build, it would fail instead of finding the image.
            tag = ensure_image(docker_client, recipe, mirror="http://127.0.0.1:9/debian", lock_path=lock)
            results.append(tag)
        except BaseException as error:
            errors.append(error)

    waiter = threading.Thread(target=ensure_in_background)
    try:
        with build_lock(lock, timeout=1):
            waiter.start()
            time.sleep(0.5)
            assert waiter.is_alive(), "ensure_image did not wait for the build lock"
            repository, tag = recipe.tag.rsplit(":", 1)
            docker_client.images.get(base_image).tag(repository, tag)
        waiter.join(timeout=10)
        assert not errors, errors
        assert results == [recipe.tag]
    finally:
        waiter.join(timeout=10)
        docker_client.images.remove(recipe.tag)
