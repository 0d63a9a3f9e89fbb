"""Gather what many callers submit within a moment and hand it to one flush, one flush at a time.

A caller submits a value under a key and waits for that key's result. Submissions arriving while a flush
runs wait for the next one, so a burst becomes a few big flushes, not many small ones. A key submitted again
before its flush keeps only its newest value, and every caller waiting on the key hears the result of that
value. When the flush fails, every caller of the batch hears its error. A caller that stops waiting (its
deadline passed, or it was cancelled) never cancels the flush the others wait on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")

Flush = Callable[[dict[K, V]], Awaitable[Mapping[K, R]]]


class MissingResult(Exception):
    """A flush returned no result for a key of its batch."""


class Batcher(Generic[K, V, R]):
    def __init__(self, flush: Flush[K, V, R], debounce_seconds: float) -> None:
        self._flush = flush
        self._debounce = debounce_seconds
        self._pending: dict[K, tuple[V, list[asyncio.Future[R]]]] = {}
        # When the oldest pending submission arrived: the debounce counts from there.
        self._pending_since = 0.0
        self._runner: asyncio.Task[None] | None = None
        self._flushing: frozenset[K] = frozenset()
        self.flushes = 0

    def holds(self, key: K) -> bool:
        """Whether a value of `key` waits for a flush or is being flushed."""
        return key in self._pending or key in self._flushing

    async def submit(self, key: K, value: V, timeout: float) -> R:
        """The result of `value` (or of a newer value of `key`); TimeoutError after `timeout` seconds."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        # Read, so that a batch failing after its caller gave up is not reported as an error never seen.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        loop = asyncio.get_running_loop()
        if not self._pending:
            self._pending_since = loop.time()
        _, waiting = self._pending.pop(key, (value, []))
        self._pending[key] = (value, [*waiting, future])
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        # Shielded: a caller giving up must not cancel the future the flush will resolve.
        return await asyncio.wait_for(asyncio.shield(future), max(0.0, timeout))

    async def _run(self) -> None:
        try:
            while self._pending:
                loop = asyncio.get_running_loop()
                await asyncio.sleep(max(0.0, self._pending_since + self._debounce - loop.time()))
                batch, self._pending = self._pending, {}
                await self._flush_one(batch)
        finally:
            self._runner = None
            for _, futures in self._pending.values():
                for future in futures:
                    future.cancel()
            self._pending = {}

    async def _flush_one(self, batch: dict[K, tuple[V, list[asyncio.Future[R]]]]) -> None:
        self.flushes += 1
        self._flushing = frozenset(batch)
        try:
            results = await self._flush({key: value for key, (value, _) in batch.items()})
        except Exception as error:
            for _, futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            return
        except BaseException:
            for _, futures in batch.values():
                for future in futures:
                    future.cancel()
            raise
        finally:
            self._flushing = frozenset()
        for key, (_, futures) in batch.items():
            for future in futures:
                if future.done():
                    continue
                if key in results:
                    future.set_result(results[key])
                else:
                    future.set_exception(MissingResult(f"the batch gave no result for {key!r}"))
