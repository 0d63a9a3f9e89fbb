"""Live pages over Server-Sent Events: the Ready dots of a page of sites, a site's reconcile events, its log.

One stream per page carries every dot on it. The streams of a server process share one watch of the record
store (`SiteStore.watch`): each stream subscribes to the names it shows and hears only those, coalesced, so a
page of 50 sites costs one connection and a few dictionary lookups per change, not a request per site.
The watch reports every record when it starts, so a stream that subscribed before it misses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from django.http import HttpRequest
from django.http.response import HttpResponseBase

from api.auth import Principal
from api.content import AsyncStream
from api.errors import ApiError
from api.logsource import LogLines
from api.policy import can_read
from api.runtime import event_log, log_source, site_service, site_store
from api.streams import event_document
from api.views import in_worker_thread
from specs.models import SITE_NAME_PATTERN, Site
from store.events import ReconcileEvent
from store.records import WatchEvent
from ui.web import stream

log = logging.getLogger("ui")

MAX_NAMES_PER_STREAM = 500
KEEPALIVE_SECONDS = 15.0
EVENT_POLL_SECONDS = 0.5
_NAME = re.compile(SITE_NAME_PATTERN)
T = TypeVar("T")


def site_state(site: Site) -> dict[str, Any]:
    """What a page shows of a site's state and keeps live: Ready in words, the tasks, the generations."""
    status = site.status
    ready = status.condition("Ready") if status is not None else None
    service = status.service if status is not None else None
    if site.metadata.deletion_timestamp is not None:
        word, reason, message = "Deleting", "Deleting", "the controller is removing the site"
    elif ready is None:
        word, reason, message = "Pending", "Pending", "the controller has not reconciled this site yet"
    else:
        word = {"True": "Ready", "False": "Not ready"}.get(ready.status, "Unknown")
        reason, message = ready.reason, ready.message
    return {
        "name": site.name,
        "ready": ready.status if ready is not None else "Unknown",
        "word": word,
        "reason": reason,
        "message": message,
        "running": service.running_tasks if service is not None else None,
        "desired": service.desired_tasks if service is not None else None,
        "generation": site.metadata.generation,
        "observedGeneration": status.observed_generation if status is not None else None,
        "urls": list(status.urls) if status is not None else [],
    }


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _event_stream(body: AsyncGenerator[bytes, None]) -> AsyncStream:
    response = AsyncStream(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # Proxies must pass each event at once.
    response["X-Accel-Buffering"] = "no"
    return response


# ---- the shared watch ------------------------------------------------------------------------------------


class _Subscriber:
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.pending: dict[str, WatchEvent[Site]] = {}
        self.wake = asyncio.Event()

    def offer(self, event: WatchEvent[Site]) -> None:
        # Only the newest state of each site matters to a dot: later events replace earlier ones.
        self.pending[event.name] = event
        self.wake.set()

    def take(self) -> list[WatchEvent[Site]]:
        taken = list(self.pending.values())
        self.pending.clear()
        self.wake.clear()
        return taken


class SiteWatchHub:
    """One watch of the record store for every stream of this event loop."""

    RESTART_SECONDS = 1.0

    def __init__(self) -> None:
        self._by_name: dict[str, set[_Subscriber]] = {}
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, names: frozenset[str]) -> _Subscriber:
        subscriber = _Subscriber(names)
        for name in names:
            self._by_name.setdefault(name, set()).add(subscriber)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ui-site-watch")
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        for name in subscriber.names:
            listeners = self._by_name.get(name)
            if listeners is not None:
                listeners.discard(subscriber)
                if not listeners:
                    del self._by_name[name]

    @property
    def subscribers(self) -> int:
        return len({subscriber for listeners in self._by_name.values() for subscriber in listeners})

    async def _run(self) -> None:
        while True:
            try:
                async for event in site_store().watch(initial=True):
                    for subscriber in self._by_name.get(event.name, ()):
                        subscriber.offer(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the UI's watch of the site records failed; restarting it")
            await asyncio.sleep(self.RESTART_SECONDS)


_hubs: dict[asyncio.AbstractEventLoop, SiteWatchHub] = {}


def hub() -> SiteWatchHub:
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = SiteWatchHub()
    return found


def _requested_names(request: HttpRequest) -> frozenset[str]:
    names = frozenset(name for name in request.GET.get("names", "").split(",") if name)
    if len(names) > MAX_NAMES_PER_STREAM:
        raise ApiError(400, f"a stream follows at most {MAX_NAMES_PER_STREAM} sites")
    if any(not _NAME.fullmatch(name) or len(name) > 63 for name in names):
        raise ApiError(400, "names must be site names, separated by commas")
    return names


def _snapshot(principal: Principal, names: frozenset[str]) -> list[dict[str, Any]]:
    service = site_service(principal)
    states = []
    for name in sorted(names):
        with contextlib.suppress(ApiError):
            states.append(site_state(service.get(name)))
    return states


@stream
async def sites_stream(request: HttpRequest, principal: Principal) -> HttpResponseBase:
    """`site` events with each named site's state as it changes; `gone` when it is deleted or unseen."""
    names = _requested_names(request)
    watch = hub()
    subscriber = watch.subscribe(names)
    try:
        initial = await in_worker_thread(_snapshot)(principal, names)
    except BaseException:
        watch.unsubscribe(subscriber)
        raise

    async def body() -> AsyncGenerator[bytes, None]:
        try:
            yield b"retry: 2000\n\n"
            for state in initial:
                yield sse("site", state)
            while True:
                try:
                    await asyncio.wait_for(subscriber.wake.wait(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                for event in subscriber.take():
                    if event.site is not None and can_read(principal, event.site):
                        yield sse("site", site_state(event.site))
                    elif event.type == "DELETED" or event.site is not None:
                        yield sse("gone", {"name": event.name})
        finally:
            watch.unsubscribe(subscriber)

    return _event_stream(body())


# ---- a site's reconcile events ---------------------------------------------------------------------------


def timeline_entry(event: ReconcileEvent) -> dict[str, Any]:
    document = event_document(event)
    document["shownTime"] = _shown_time(event.last_time)
    return document


def _shown_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _site_uid(principal: Principal, name: str) -> str | None:
    return site_service(principal).get(name).metadata.uid


def site_events_page(name: str, uid: str | None, limit: int = 50) -> list[ReconcileEvent]:
    if uid is None:
        return []
    return event_log().query(name, uid=uid, limit=limit)


@stream
async def events_stream(request: HttpRequest, principal: Principal, name: str) -> HttpResponseBase:
    """`event` for every reconcile event of the site as it is recorded (again when it repeats)."""
    uid = await in_worker_thread(_site_uid)(principal, name)

    async def body() -> AsyncGenerator[bytes, None]:
        # The event log has no change feed: poll it, as the API's event watch does. A repeat collapses
        # into its event (count, lastTime), so progress is tracked by (id, count).
        seen: dict[int, int] = {}
        quiet = 0.0
        yield b"retry: 2000\n\n"
        while True:
            events = await in_worker_thread(site_events_page)(name, uid)
            for event in reversed(events):
                if seen.get(event.id) == event.count:
                    continue
                seen[event.id] = event.count
                yield sse("event", timeline_entry(event))
                quiet = 0.0
            await asyncio.sleep(EVENT_POLL_SECONDS)
            quiet += EVENT_POLL_SECONDS
            if quiet >= KEEPALIVE_SECONDS:
                quiet = 0.0
                yield b": keep-alive\n\n"

    return _event_stream(body())


# ---- a dynamic site's process log ------------------------------------------------------------------------


def _log_lines(principal: Principal, name: str) -> LogLines:
    site = site_service(principal).get(name)
    if site.spec.type != "dynamic":
        raise ApiError(400, f'site "{name}" is static: only a dynamic site runs a process with a log')
    source = log_source()
    if source is None:
        raise ApiError(503, "this server has no log source configured")
    return source.logs(name, follow=True, tail=200)


# A followed log blocks a thread between lines: those get their own pool so they never starve the pages.
_LOG_THREADS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ui-logs")


async def _in_log_thread(function: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_LOG_THREADS, function)


@stream
async def logs_stream(request: HttpRequest, principal: Principal, name: str) -> HttpResponseBase:
    """`reset`, then `line` for each line the site's process prints (the last 200 first); `waiting` while no
    process runs; `ended` when the log ends (the browser then opens the stream again)."""
    await in_worker_thread(site_service(principal).get)(name)

    async def body() -> AsyncGenerator[bytes, None]:
        yield b"retry: 3000\n\n"
        yield sse("reset", {})
        while True:
            try:
                lines = await _in_log_thread(lambda: _log_lines(principal, name))
                break
            except LookupError as error:
                yield sse("waiting", {"message": f"no process is running yet ({error}); waiting for one"})
                await asyncio.sleep(2.0)
            except ApiError as error:
                yield sse("ended", {"message": error.message})
                return
        try:
            while True:
                line = await _in_log_thread(lambda: next(lines, None))
                if line is None:
                    break
                yield sse("line", {"text": line.rstrip("\n")})
        finally:
            # Here, not on a log thread: those may all be waiting for lines (close ends their waits).
            lines.close()
        yield sse("ended", {"message": "the process log ended"})

    return _event_stream(body())
