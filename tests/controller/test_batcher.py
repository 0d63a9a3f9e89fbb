"""The batcher on its own: bursts become few flushes, one at a time, and each caller hears its own answer."""

from __future__ import annotations

import asyncio

import pytest

from controller.batcher import Batcher, MissingResult

DEADLINE = 30.0


class Recorder:
    """A flush that records its batches and, when asked, holds each one until released."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[dict[str, int]] = []
        self.running = 0
        self.most_at_once = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.error: Exception | None = None

    async def flush(self, batch: dict[str, int]) -> dict[str, int]:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.batches.append(batch)
        self.started.set()
        try:
            await self.release.wait()
            if self.error is not None:
                raise self.error
            return {key: value * 10 for key, value in batch.items()}
        finally:
            self.running -= 1


async def test_a_burst_is_one_flush_and_each_caller_hears_its_own_result():
    recorder = Recorder()
    batcher = Batcher(recorder.flush, debounce_seconds=0.01)
    results = await asyncio.gather(*(batcher.submit(f"k{i}", i, DEADLINE) for i in range(100)))
    assert results == [i * 10 for i in range(100)]
    assert len(recorder.batches) == 1 and len(recorder.batches[0]) == 100


async def test_what_arrives_during_a_flush_waits_for_the_next_one_and_flushes_never_overlap():
    recorder = Recorder(hold=True)
    batcher = Batcher(recorder.flush, debounce_seconds=0.0)
    first = asyncio.create_task(batcher.submit("a", 1, DEADLINE))
    await asyncio.wait_for(recorder.started.wait(), DEADLINE)
    assert batcher.holds("a") and not batcher.holds("b")
    later = [asyncio.create_task(batcher.submit(key, 2, DEADLINE)) for key in ("b", "c", "d")]
    await asyncio.sleep(0)
    assert batcher.holds("b")
    recorder.release.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [20, 20, 20]
    assert recorder.batches == [{"a": 1}, {"b": 2, "c": 2, "d": 2}]
    assert recorder.most_at_once == 1
    assert not batcher.holds("a") and not batcher.holds("b")


async def test_a_key_submitted_again_keeps_only_its_newest_value_for_every_caller():
    recorder = Recorder()
    batcher = Batcher(recorder.flush, debounce_seconds=0.01)
    results = await asyncio.gather(batcher.submit("a", 1, DEADLINE), batcher.submit("a", 2, DEADLINE))
    assert results == [20, 20]
    assert recorder.batches == [{"a": 2}]


async def test_a_failed_flush_is_heard_by_every_caller_of_its_batch_and_the_next_batch_goes_on():
    recorder = Recorder()
    recorder.error = RuntimeError("nginx -t: refused")
    batcher = Batcher(recorder.flush, debounce_seconds=0.01)
    results = await asyncio.gather(
        batcher.submit("a", 1, DEADLINE), batcher.submit("b", 2, DEADLINE), return_exceptions=True
    )
    assert [str(result) for result in results] == ["nginx -t: refused"] * 2
    recorder.error = None
    assert await batcher.submit("a", 3, DEADLINE) == 30


async def test_a_caller_that_gives_up_never_cancels_the_flush_the_others_wait_on():
    recorder = Recorder(hold=True)
    batcher = Batcher(recorder.flush, debounce_seconds=0.0)
    impatient = asyncio.create_task(batcher.submit("a", 1, 0.05))
    cancelled = asyncio.create_task(batcher.submit("b", 2, DEADLINE))
    patient = asyncio.create_task(batcher.submit("c", 3, DEADLINE))
    await asyncio.wait_for(recorder.started.wait(), DEADLINE)
    with pytest.raises(TimeoutError):
        await impatient
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    recorder.release.set()
    assert await patient == 30
    assert recorder.batches == [{"a": 1, "b": 2, "c": 3}]


async def test_a_flush_that_forgets_a_key_fails_that_key_only():
    async def forgetful(batch: dict[str, int]) -> dict[str, int]:
        return {key: value for key, value in batch.items() if key != "lost"}

    batcher = Batcher(forgetful, debounce_seconds=0.01)
    kept, lost = await asyncio.gather(
        batcher.submit("kept", 1, DEADLINE), batcher.submit("lost", 2, DEADLINE), return_exceptions=True
    )
    assert kept == 1
    assert isinstance(lost, MissingResult) and "'lost'" in str(lost)
