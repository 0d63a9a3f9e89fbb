"""The ASGI entry closes whole responses on the event loop (ui/asgi.py): that holds only while closing one
runs nothing that could block, which these tests keep true."""

from __future__ import annotations


def test_closing_a_response_runs_only_djangos_own_quick_receivers(api):
    from django.core import signals

    import ui.asgi  # noqa: F401  (disconnects the database housekeeping)

    receivers = {receiver().__qualname__ for _key, receiver, _sender in signals.request_finished.receivers}
    # A receiver added here must not block (no database, no files): it runs on the event loop.
    assert receivers == {"close_caches", "reset_urlconf"}
