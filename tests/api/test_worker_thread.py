"""in_worker_thread: the blocking part of a request runs on the executor's threads, never on the event loop,
in the caller's context, and hands back its result or its exception."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


def test_work_runs_off_the_loop_in_the_callers_context_and_returns_its_result(api):
    from api.views import in_worker_thread

    def work(prefix: str, *, suffix: str) -> tuple[str, int]:
        return f"{prefix}{REQUEST_ID.get()}{suffix}", threading.get_ident()

    async def request() -> tuple[tuple[str, int], int]:
        REQUEST_ID.set("42")
        return await in_worker_thread(work)("<", suffix=">"), threading.get_ident()

    (text, worker), loop_thread = asyncio.run(request())
    assert text == "<42>"
    assert worker != loop_thread


def test_concurrent_calls_overlap_on_different_threads(api):
    from api.views import in_worker_thread

    both_running = threading.Barrier(2, timeout=60)

    def work() -> int:
        both_running.wait()  # raises BrokenBarrierError unless the other call runs at the same time
        return threading.get_ident()

    async def requests() -> list[int]:
        return list(await asyncio.gather(in_worker_thread(work)(), in_worker_thread(work)()))

    first, second = asyncio.run(requests())
    assert first != second


def test_an_exception_reaches_the_caller(api):
    from api.errors import ApiError
    from api.views import in_worker_thread

    def refuse() -> None:
        raise ApiError(409, "taken")

    async def request() -> None:
        await in_worker_thread(refuse)()

    with pytest.raises(ApiError, match="taken"):
        asyncio.run(request())
