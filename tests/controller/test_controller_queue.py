"""The work queue and its backoff: pure logic, no store, no Docker."""

from __future__ import annotations

import asyncio
import random

import pytest

from controller.backoff import Backoff
from controller.queue import WorkQueue
from controller.types import Request

A = Request("Site", "alpha")
B = Request("Site", "bravo")


async def next_item(queue: WorkQueue, timeout: float = 1.0):
    async with asyncio.timeout(timeout):
        return await queue.get()


async def nothing_within(queue: WorkQueue, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await queue.get()
    except TimeoutError:
        return True
    return False


# -- backoff ---------------------------------------------------------------------------------------


def test_backoff_grows_from_one_second_to_five_minutes_within_jitter_bounds():
    backoff = Backoff()
    rng = random.Random(7)
    ceilings = [backoff.ceiling(n) for n in range(1, 12)]
    assert ceilings[:5] == [1, 2, 4, 8, 16]
    assert ceilings[-1] == 300
    for failures in range(1, 40):
        ceiling = backoff.ceiling(failures)
        for _ in range(50):
            delay = backoff.delay(failures, rng)
            assert ceiling * (1 - backoff.jitter) <= delay <= ceiling
            assert delay <= 300


def test_backoff_jitter_spreads_keys_that_fail_together():
    backoff = Backoff()
    rng = random.Random(1)
    delays = {round(backoff.delay(6, rng), 3) for _ in range(20)}
    assert len(delays) > 15


def test_backoff_refuses_nonsense_settings():
    with pytest.raises(ValueError, match="base"):
        Backoff(base=0)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)
    with pytest.raises(ValueError, match="factor"):
        Backoff(factor=0.5)


def test_backoff_exponent_does_not_overflow():
    assert Backoff().ceiling(100_000) == 300


# -- the queue -------------------------------------------------------------------------------------


async def test_duplicate_adds_collapse_into_one_item_keeping_the_first_trigger():
    queue = WorkQueue()
    queue.add(A, "watch")
    queue.add(A, "resync")
    queue.add(B, "resync")
    queue.add(A, "docker event")
    assert len(queue) == 2
    first = await next_item(queue)
    second = await next_item(queue)
    assert (first.request, first.trigger) == (A, "watch")
    assert second.request == B
    assert await nothing_within(queue, 0.05)


async def test_an_urgent_add_replaces_the_trigger_of_a_waiting_key():
    queue = WorkQueue()
    queue.add(A, "resync")
    queue.add(A, "manual request", urgent=True)
    item = await next_item(queue)
    assert (item.trigger, item.urgent) == ("manual request", True)


async def test_a_key_in_process_is_not_handed_out_again_until_done_then_runs_once_more():
    queue = WorkQueue()
    queue.add(A, "watch")
    item = await next_item(queue)
    queue.add(A, "docker event")
    queue.add(A, "resync")
    assert await nothing_within(queue, 0.05)
    assert queue.is_processing(A)
    queue.done(item.request)
    again = await next_item(queue)
    assert (again.request, again.trigger) == (A, "docker event")
    queue.done(A)
    assert await nothing_within(queue, 0.05)


async def test_one_reconcile_per_key_at_a_time_with_several_workers():
    queue = WorkQueue()
    running: set[Request] = set()
    overlaps: list[Request] = []
    processed: list[Request] = []

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            if item.request in running:
                overlaps.append(item.request)
            running.add(item.request)
            await asyncio.sleep(0.01)
            running.discard(item.request)
            processed.append(item.request)
            queue.done(item.request)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for _ in range(5):
        for key in (A, B):
            queue.add(key, "burst")
        await asyncio.sleep(0.004)
    await asyncio.sleep(0.1)
    queue.shut_down()
    await asyncio.gather(*workers)
    assert overlaps == []
    assert set(processed) == {A, B}
    # Five bursts while each key takes 10 ms collapse into far fewer runs.
    assert processed.count(A) <= 4


async def test_failures_back_off_exponentially_per_key_and_success_forgets():
    queue = WorkQueue(Backoff(base=0.02, cap=1.0, jitter=0.0))
    delays = [queue.add_rate_limited(A, "retry") for _ in range(4)]
    assert delays == pytest.approx([0.02, 0.04, 0.08, 0.16])
    assert queue.failures(A) == 4
    assert queue.failures(B) == 0
    queue.forget(A)
    assert queue.add_rate_limited(A, "retry") == pytest.approx(0.02)


async def test_a_backing_off_key_waits_and_ordinary_wakeups_fold_into_the_wait():
    queue = WorkQueue(Backoff(base=0.2, jitter=0.0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    queue.add_rate_limited(A, "retry after failure")
    queue.add(A, "docker event")
    queue.add(A, "resync")
    assert await nothing_within(queue, 0.1)
    item = await next_item(queue)
    assert item.trigger == "retry after failure"
    assert loop.time() - started >= 0.19


async def test_an_urgent_add_bypasses_backoff_and_resets_it():
    queue = WorkQueue(Backoff(base=5.0, jitter=0.0))
    queue.add_rate_limited(A, "retry")
    queue.add_rate_limited(A, "retry")
    queue.add(A, "manual request", urgent=True)
    item = await next_item(queue, timeout=0.2)
    assert item.trigger == "manual request"
    assert queue.failures(A) == 0
    assert queue.scheduled_in(A) is None


async def test_retry_now_queues_every_key_backing_off_at_once_and_leaves_polls_alone():
    queue = WorkQueue(Backoff(base=60.0, jitter=0.0))
    C = Request("Site", "charlie")
    for _ in range(5):
        queue.add_rate_limited(A, "retry")
    queue.add_rate_limited(B, "retry")
    queue.add_after(C, 60.0, "poll: tasks starting")
    assert queue.retry_now("dockerd is back") == [A, B]
    taken = {(await next_item(queue, timeout=0.2)).request for _ in range(2)}
    assert taken == {A, B}
    assert queue.failures(A) == 0 and queue.failures(B) == 0
    assert queue.scheduled_in(C) is not None, "a poll is not a failure: it keeps its time"
    assert await nothing_within(queue, 0.1)


async def test_a_failure_while_an_urgent_add_waits_does_not_delay_it():
    queue = WorkQueue(Backoff(base=5.0, jitter=0.0))
    queue.add(A, "watch")
    item = await next_item(queue)
    queue.add(A, "spec changed", urgent=True)
    queue.add_rate_limited(A, "retry")
    queue.done(item.request)
    again = await next_item(queue, timeout=0.2)
    assert again.trigger == "spec changed"
    assert queue.failures(A) == 0


async def test_requeue_after_comes_back_later_without_counting_a_failure():
    queue = WorkQueue()
    loop = asyncio.get_running_loop()
    started = loop.time()
    queue.add_after(A, 0.1, "poll: tasks starting")
    assert await nothing_within(queue, 0.05)
    item = await next_item(queue)
    assert item.trigger == "poll: tasks starting"
    assert loop.time() - started >= 0.09
    assert queue.failures(A) == 0


async def test_an_event_during_a_poll_wait_runs_now_and_replaces_the_poll():
    queue = WorkQueue()
    queue.add_after(A, 5.0, "poll")
    queue.add(A, "docker event")
    item = await next_item(queue, timeout=0.2)
    assert item.trigger == "docker event"
    assert queue.scheduled_in(A) is None


async def test_of_two_timers_for_a_key_the_earlier_stands():
    queue = WorkQueue()
    queue.add_after(A, 5.0, "late")
    queue.add_after(A, 0.05, "early")
    queue.add_after(A, 3.0, "middle")
    item = await next_item(queue, timeout=0.5)
    assert item.trigger == "early"


async def test_shut_down_releases_every_waiting_worker_and_takes_nothing_more():
    queue = WorkQueue()
    waiters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    queue.add_after(A, 0.01, "poll")
    queue.shut_down()
    assert await asyncio.gather(*waiters) == [None, None, None]
    queue.add(B, "late")
    assert await next_item(queue) is None
