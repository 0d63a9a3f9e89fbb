"""How the edge finds a static site's files: no symbolic link followed from the site's own directory down,
and a directory asked for without its slash redirected to it by a relative Location."""

from __future__ import annotations

import http.client
import os

import pytest
from reconciler_helpers import http_get, make_site, wait_for_http

pytestmark = [pytest.mark.swarm, pytest.mark.slow]


async def test_public_replaced_by_a_link_out_of_the_site_is_not_followed(stack, write_site_file):
    site = make_site("linked-public")
    await stack.converge(site)
    host = f"linked-public.{stack.settings.sites_domain}"
    wait_for_http(stack.settings, host, 200, "This site is new")
    # What a site's own uid may do: its directory is its own, public/ included.
    public = stack.settings.sites_dir / "linked-public" / "public"
    public.rename(public.with_name("public.old"))
    os.symlink("/etc", public)
    status, body = http_get(stack.settings, host, "/passwd")
    assert status in (403, 404) and "root:" not in body


async def test_a_directory_without_its_slash_is_redirected_relatively(stack, write_site_file):
    site = make_site("with-sub")
    await stack.converge(site)
    sub = stack.settings.sites_dir / "with-sub" / "public" / "sub"
    sub.mkdir()
    os.chown(sub, stack.files.uid_of("with-sub") or 0, 33)
    sub.chmod(0o2770)
    write_site_file("with-sub", "public/sub/index.html", "the sub page")
    host = f"with-sub.{stack.settings.sites_domain}"
    wait_for_http(stack.settings, host, 200, "This site is new")
    connection = http.client.HTTPConnection("127.0.0.1", stack.settings.http_port, timeout=5)
    try:
        connection.request("GET", "/sub", headers={"Host": host})
        response = connection.getresponse()
        assert (response.status, response.getheader("Location")) == (301, "/sub/")
    finally:
        connection.close()
    assert http_get(stack.settings, host, "/sub/") == (200, "the sub page")
