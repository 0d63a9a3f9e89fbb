"""Running a controller as a process: logging, signals, and a thread pool sized for blocking calls."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from controller.runtime import Controller

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Store, event-log and Docker calls all run in threads; a call given up at its deadline keeps its thread
# until it returns, so the pool is larger than asyncio's default (cores + 4). Not one per worker: the Python
# part of those calls runs one at a time anyway, and each thread's stack stays resident once used.
THREADS = 48
THREAD_PREFIX = "director-pool"
# glibc gives each new thread that allocates a malloc arena of its own, up to eight per core, and memory
# freed in one is reused by that arena alone: at 10,000 sites a controller's pool held about 40 MB more that
# way. Its threads spend their time waiting on Docker and the disk, not in malloc, so two arenas serve them.
MALLOC_ARENAS = 2
# glibc's own starting value, kept fixed: once a large block (the record index's text, megabytes) is freed,
# glibc would raise it to that size, and later large blocks then come from the heap, which keeps the space
# after they are freed (about 7 MB of a controller at 10,000 sites).
MALLOC_MMAP_THRESHOLD = 128 * 1024
# mallopt's parameter numbers, from glibc's malloc.h.
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    # watchfiles logs every batch of file changes at INFO: one line per status write.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)


async def serve(build: Callable[[], Controller]) -> None:
    """Build the controller inside the loop and run it until SIGTERM or SIGINT.

    The first signal stops it cleanly (triggers stop, in-flight reconciles finish within the grace, the
    lock is released); a second one cancels what is still running.
    """
    loop = asyncio.get_running_loop()
    controller = build()
    main = asyncio.current_task()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        name = signal.Signals(signum).name
        if signals_seen == 1:
            log.info("%s received: stopping", name)
            controller.stop()
        elif main is not None:
            log.warning("%s received again: cancelling what is still running", name)
            main.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await controller.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run(build: Callable[[], Controller], *, threads: int = THREADS, exit_grace: float = 5.0) -> int:
    """Run a controller in a fresh event loop; the exit status is 0 after a clean stop, 1 when a second
    signal cut the shutdown short.

    asyncio.run() would wait, without a bound, for every thread of the pool: one blocking call stuck in
    a hung Docker daemon (given up at its deadline, still running) would hold the exit forever. Here the
    pool gets `exit_grace` seconds, then the process exits without it, as a kill would.
    """
    configure_malloc()
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=THREAD_PREFIX)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.set_default_executor(executor)
    status = 0
    try:
        loop.run_until_complete(serve(build))
    except asyncio.CancelledError:
        status = 1
    finally:
        loop.run_until_complete(_cancel_leftovers())
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
        executor.shutdown(wait=False, cancel_futures=True)
    stuck = _threads_still_running(exit_grace)
    if stuck:
        log.warning("%d blocking calls still running after %.0fs; exiting without them", stuck, exit_grace)
        logging.shutdown()
        os._exit(status)
    return status


def configure_malloc(arenas: int = MALLOC_ARENAS, mmap_threshold: int = MALLOC_MMAP_THRESHOLD) -> set[str]:
    """Let threads started from now on share at most `arenas` malloc arenas, and serve blocks of at least
    `mmap_threshold` bytes from their own mappings; what was set. Nothing is where the C library is not glibc,
    nor what the environment already says (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return set()
    wanted = {
        "MALLOC_ARENA_MAX": (_M_ARENA_MAX, arenas),
        "MALLOC_MMAP_THRESHOLD_": (_M_MMAP_THRESHOLD, mmap_threshold),
    }
    return {
        name
        for name, (parameter, value) in wanted.items()
        if name not in os.environ and mallopt(parameter, value)
    }


async def _cancel_leftovers() -> None:
    leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


def _threads_still_running(grace: float) -> int:
    deadline = time.monotonic() + grace
    pool = [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
    for thread in pool:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sum(thread.is_alive() for thread in pool)
