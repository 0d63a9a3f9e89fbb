"""The ASGI entry closes whole responses on the event loop (ui/asgi.py): that holds only while closing one
runs nothing that could block, which these tests keep true."""

from __future__ import annotations


def test_closing_a_response_runs_only_djangos_own_quick_receivers(api):
    from django.core import signals

    import ui.asgi  # noqa: F401  (disconnects the database housekeeping)

    receivers = {receiver().__qualname__ for _key, receiver, _sender in signals.request_finished.receivers}
    # A receiver added here must not block (no database, no files): it runs on the event loop.
    assert receivers == {"close_caches", "reset_urlconf"}


def test_a_whole_response_is_framed_by_its_length_and_names_no_server(api):
    # Content-Length rather than chunked framing: less for both sides to write and read.
    with api.client() as client:
        response = client.get("/apis/director.io/v1/sites")
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert "Transfer-Encoding" not in response.headers
    assert "Server" not in response.headers


def test_a_not_modified_answer_declares_no_length_of_its_own(api):
    # A 304 stands for the body the client has: a length of 0 here would tell a cache that body is empty.
    with api.client(None) as client:
        first = client.get("/static/ui/style.css")
        assert first.status_code == 200, first.text[:200]
        again = client.get("/static/ui/style.css", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert "Content-Length" not in again.headers
