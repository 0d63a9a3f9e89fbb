"""The terminal backend the API runs sessions with, registered by the composition root.

The API never talks to Docker: orchestrator/api_server.py registers the Docker backend of
reconcilers/terminals.py at start-up, as it does the log source. The types both sides use are in
specs/terminal.py.
"""

from __future__ import annotations

from specs.terminal import (
    STDERR,
    STDOUT,
    PtySize,
    Refused,
    SessionKind,
    TerminalBackend,
    TerminalRequest,
    TerminalSession,
)

__all__ = [
    "STDERR",
    "STDOUT",
    "PtySize",
    "Refused",
    "SessionKind",
    "TerminalBackend",
    "TerminalRequest",
    "TerminalSession",
    "register_terminal_backend",
    "registered_terminal_backend",
]

_registered: list[TerminalBackend] = []


def register_terminal_backend(backend: TerminalBackend | None) -> None:
    _registered.clear()
    if backend is not None:
        _registered.append(backend)


def registered_terminal_backend() -> TerminalBackend | None:
    return _registered[0] if _registered else None
