"""The endpoints that may stream: the sites and gitsources collections (`?watch=true`), events, and logs.

They are async views so a long watch holds no worker thread; the blocking parts (the database, the
record store) run on worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import json
import re
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from api import content, gitsources, listing, views
from api.auth import Principal, authenticate_request
from api.errors import ApiError, Cause, method_not_allowed
from api.listcache import Change, ListingCache, Subscriber, Subscription
from api.logsource import LogLines
from api.policy import can_read
from api.runtime import event_log, listing_cache, log_source, site_service, site_store
from api.selectors import name_selector, parse_label_selector
from api.sites import document_of
from specs.gitsource import GitSource
from specs.models import API_VERSION, UID_PATTERN, Site
from store.events import ReconcileEvent
from store.records import RecordError, WatchEvent

WATCH_CONTENT_TYPE = "application/json;stream=watch"
_EVENT_POLL_SECONDS = 0.5
_MAX_EVENT_PAGE = 1000
_MAX_EVENT_ID = 2**63 - 1
_MAX_TAIL_LINES = 2**31 - 1
_UID = re.compile(UID_PATTERN)

# A followed log blocks a thread between lines: those get their own pool so they never starve requests.
_LOG_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="api-logs")
T = TypeVar("T")
AsyncView = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def async_endpoint(*methods: str) -> Callable[[AsyncView], AsyncView]:
    def decorate(view: AsyncView) -> AsyncView:
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            principal = await views.in_worker_thread(authenticate_request)(request)
            if request.method not in methods:
                return method_not_allowed(request, list(methods))
            return await view(request, principal, *args, **kwargs)

        wrapper.__name__ = view.__name__
        return csrf_exempt(wrapper)

    return decorate


def _timeout(request: HttpRequest) -> float | None:
    raw = request.GET.get("timeoutSeconds")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(
            400, "timeoutSeconds must be a number", causes=[Cause("timeoutSeconds", "a number")]
        ) from None
    return max(0.0, value)


def _line(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, separators=(",", ":")) + "\n").encode()


# ---- sites ------------------------------------------------------------------------------------------


@async_endpoint("GET", "POST")
async def sites_collection(request: HttpRequest, principal: Principal) -> HttpResponseBase:
    if request.method == "POST":
        return await views.in_worker_thread(views.create_site)(request, principal)
    if not views.query_flag(request, "watch"):
        return await views.in_worker_thread(views.list_sites)(request, principal)
    return _watch_sites(request, principal)


def _watch_sites(request: HttpRequest, principal: Principal) -> content.AsyncStream:
    selector = request.GET.get("labelSelector")
    label_filter = parse_label_selector(selector) if selector else None
    only_name = name_selector(request.GET.get("fieldSelector"))
    since_version = _since_version(request)
    deadline = _deadline(_timeout(request))

    def visible(site: Site) -> bool:
        return can_read(principal, site) and (label_filter is None or label_filter(site.metadata.labels))

    as_table = listing.wants_table(request.headers.get("Accept", ""))
    include = listing.include_object(request.GET.get("includeObject"))

    def render(site: Site) -> dict[str, Any]:
        if as_table:
            return listing.site_table([site], definitions=False, include=include)
        return document_of(site)

    async def stream() -> AsyncGenerator[bytes, None]:
        # The last state this client was shown of each site: a deletion is reported with it, as in Kubernetes.
        shown: dict[str, Site] = {}
        events = _site_changes()
        try:
            while True:
                try:
                    event = await asyncio.wait_for(anext(events), _remaining(deadline))
                except (TimeoutError, StopAsyncIteration):
                    return
                if only_name is not None and event.name != only_name:
                    continue
                if event.type == "DELETED":
                    last = shown.pop(event.name, None)
                    if last is not None:
                        yield _line({"type": "DELETED", "object": render(last)})
                    continue
                if event.type == "ERROR" or event.site is None:
                    if principal.is_admin and event.error is not None:
                        error = ApiError(500, str(event.error.message)).to_json()
                        yield _line({"type": "ERROR", "object": error})
                    continue
                if not visible(event.site):
                    last = shown.pop(event.name, None)
                    if last is not None:
                        # It left this client's view: to the client it is gone. A caller who lost access
                        # sees it as they were last shown it, never its new owners, env or annotations.
                        gone = event.site if can_read(principal, event.site) else last
                        yield _line({"type": "DELETED", "object": render(gone)})
                    continue
                kind = "MODIFIED" if event.name in shown or event.type == "MODIFIED" else "ADDED"
                shown[event.name] = event.site
                if int(event.site.metadata.resource_version or 0) <= since_version:
                    continue
                yield _line({"type": kind, "object": render(event.site)})
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()

    return content.AsyncStream(stream(), content_type=WATCH_CONTENT_TYPE)


async def _site_changes() -> AsyncGenerator[WatchEvent[Site] | Change, None]:
    """Every site as it is now, then every change, for one watch stream (which filters them for its caller).

    They come from this process's listing cache, which every watch stream shares, or, while the cache is not
    following the store yet, from a watch of the store of the stream's own.
    """
    loop = asyncio.get_running_loop()
    subscriber = Subscriber(loop)
    cache = listing_cache()
    # On a worker thread: the cache may be loading every record, which the event loop must not wait for.
    subscribing = loop.run_in_executor(None, cache.subscribe, subscriber.deliver)
    try:
        subscription = await asyncio.shield(subscribing)
    except asyncio.CancelledError:
        subscribing.add_done_callback(functools.partial(_unsubscribe_when_done, cache))
        raise
    if subscription is None:
        events = site_store().watch(initial=True)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        return
    key, snapshot = subscription
    try:
        # In name order, as a watch of the store reports what it finds at first.
        errors: list[Site | RecordError] = sorted(snapshot.errors, key=lambda error: error.name)
        sites: list[Site | RecordError] = list(snapshot.sites)
        for item in heapq.merge(sites, errors, key=lambda item: item.name):
            if isinstance(item, Site):
                yield Change("ADDED", item.name, item)
            else:
                yield Change("ERROR", item.name, None, item)
        while (change := await subscriber.next()) is not None:
            yield change
    finally:
        cache.unsubscribe(key)


def _unsubscribe_when_done(cache: ListingCache, subscribing: asyncio.Future[Subscription | None]) -> None:
    """A stream ended while it subscribed: end the subscription it will never read."""
    if not subscribing.cancelled() and subscribing.exception() is None:
        subscription = subscribing.result()
        if subscription is not None:
            cache.unsubscribe(subscription[0])


def _since_version(request: HttpRequest) -> int:
    """The resourceVersion a watch goes on from (its listing's): older states are not sent again."""
    since = request.GET.get("resourceVersion")
    try:
        return int(since) if since else 0
    except ValueError:
        raise ApiError(400, "resourceVersion must be a number") from None


# ---- gitsources -------------------------------------------------------------------------------------


@async_endpoint("GET", "POST")
async def gitsources_collection(request: HttpRequest, principal: Principal) -> HttpResponseBase:
    if request.method == "POST" or not views.query_flag(request, "watch"):
        options = views.write_options(request)
        return await views.in_worker_thread(gitsources.collection)(request, principal, options)
    return _watch_gitsources(request, principal)


def _watch_gitsources(request: HttpRequest, principal: Principal) -> content.AsyncStream:
    """`kubectl get gitsources -w`: a watch of the sources' records (few, so no shared cache as for sites),
    each change shown to a caller who may read the source, a source they no longer may as deleted."""
    only_name = name_selector(request.GET.get("fieldSelector"))
    since_version = _since_version(request)
    deadline = _deadline(_timeout(request))
    as_table = listing.wants_table(request.headers.get("Accept", ""))
    include = listing.include_object(request.GET.get("includeObject"))

    def render(source: GitSource) -> dict[str, Any]:
        if not as_table:
            return gitsources.document_of(source)
        table = listing.gitsource_table([source], include)
        del table["columnDefinitions"]  # the client has them from the listing
        return table

    async def stream() -> AsyncGenerator[bytes, None]:
        shown: dict[str, GitSource] = {}
        events = gitsources.gitsource_store().watch(initial=True)
        try:
            while True:
                try:
                    event = await asyncio.wait_for(anext(events), _remaining(deadline))
                except (TimeoutError, StopAsyncIteration):
                    return
                if only_name is not None and event.name != only_name:
                    continue
                source = event.site
                if event.type == "DELETED" or source is None or not gitsources.can_read(principal, source):
                    last = shown.pop(event.name, None)
                    if last is not None:
                        yield _line({"type": "DELETED", "object": render(last)})
                    continue
                kind = "MODIFIED" if event.name in shown else "ADDED"
                shown[event.name] = source
                if int(source.metadata.resource_version or 0) > since_version:
                    yield _line({"type": kind, "object": render(source)})
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]

    return content.AsyncStream(stream(), content_type=WATCH_CONTENT_TYPE)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# ---- events -----------------------------------------------------------------------------------------


def event_document(event: ReconcileEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": event.time.isoformat().replace("+00:00", "Z"),
        "lastTime": event.last_time.isoformat().replace("+00:00", "Z"),
        "count": event.count,
        "site": event.site,
        "uid": event.uid,
        "generation": event.generation,
        "reconcileId": event.reconcile_id,
        "trigger": event.trigger,
        "step": event.step,
        "result": event.result,
        "durationSeconds": event.duration_seconds,
        "message": event.message,
    }


def _page_arguments(request: HttpRequest) -> tuple[int, int | None]:
    try:
        limit = int(request.GET.get("limit") or 50)
        before = int(request.GET["continue"]) if request.GET.get("continue") else None
    except ValueError:
        raise ApiError(400, "limit and continue must be whole numbers") from None
    if not 1 <= limit <= _MAX_EVENT_PAGE:
        raise ApiError(
            400, f"limit must be between 1 and {_MAX_EVENT_PAGE}", causes=[Cause("limit", "1-1000")]
        )
    # An event id is a database integer: a larger number would not even reach the query.
    if before is not None and not 0 <= before <= _MAX_EVENT_ID:
        raise ApiError(
            400,
            "continue must be the token of a previous page (metadata.continue), a whole number",
            causes=[Cause("continue", f"0-{_MAX_EVENT_ID}")],
        )
    return limit, before


@dataclass(frozen=True)
class _OneSite:
    """The events of one site: its name and uid. Events are kept by name, but a site deleted and created
    again under its name is another site, whose owner must not read the first one's history."""

    name: str
    uid: str | None


def _site_scope(request: HttpRequest, principal: Principal, name: str) -> _OneSite:
    """The site's own events; an administrator may name an earlier site of that name by `uid=`."""
    wanted = request.GET.get("uid")
    if wanted is not None and not _UID.match(wanted):
        raise ApiError(
            400, f"uid {wanted!r} is not a site uid", causes=[Cause("uid", "a site's metadata.uid")]
        )
    if wanted is not None and principal.is_admin:
        # The name may be free by now: an earlier site's history outlives it.
        return _OneSite(name, wanted)
    site = site_service(principal).get(name)
    if wanted is not None and wanted != site.metadata.uid:
        raise ApiError(
            403,
            f'only administrators may read the events of an earlier site named "{name}"; '
            "leave out uid= for this site's own",
            causes=[Cause("uid", "must be the site's own metadata.uid")],
            name=name,
        )
    return _OneSite(name, site.metadata.uid)


def _visible_sites(principal: Principal) -> list[_OneSite] | None:
    """None: every event (an administrator, who also sees those of no site or of deleted sites)."""
    if principal.is_admin:
        return None
    return [_OneSite(site.name, site.metadata.uid) for site in site_service(principal).list()]


def _site_events(site: _OneSite, limit: int, before: int | None) -> list[ReconcileEvent]:
    if site.uid is None:
        return []  # a record never written by Director has no uid yet, nor events of its own
    return event_log().query(site.name, uid=site.uid, limit=limit, before_id=before)


def query_events(
    principal: Principal, site: _OneSite | None, limit: int, before: int | None
) -> list[ReconcileEvent]:
    if site is not None:
        return _site_events(site, limit, before)
    allowed = _visible_sites(principal)
    if allowed is None:
        return event_log().query(None, limit=limit, before_id=before)
    merged: list[ReconcileEvent] = []
    for visible in allowed:
        merged.extend(_site_events(visible, limit, before))
    merged.sort(key=lambda event: (event.last_time, event.id), reverse=True)
    return merged[:limit]


def _event_list(events: list[ReconcileEvent], limit: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if len(events) == limit:
        metadata["continue"] = str(events[-1].id)
    return {
        "apiVersion": API_VERSION,
        "kind": "EventList",
        "metadata": metadata,
        "items": [event_document(event) for event in events],
    }


async def _events_response(request: HttpRequest, principal: Principal, name: str | None) -> HttpResponseBase:
    site = None
    if name is not None:
        site = await views.in_worker_thread(_site_scope)(request, principal, name)
    limit, before = _page_arguments(request)
    if not views.query_flag(request, "watch"):
        events = await views.in_worker_thread(query_events)(principal, site, limit, before)
        return content.render(request, _event_list(events, limit))
    deadline = _deadline(_timeout(request))

    async def stream() -> AsyncGenerator[bytes, None]:
        # The event log has no change feed: poll it. Repeats of an event are collapsed into it (count,
        # lastTime), so progress is tracked by (id, count), not by id alone.
        seen: dict[int, int] = {}
        while True:
            events = await views.in_worker_thread(query_events)(principal, site, limit, None)
            for event in reversed(events):
                if seen.get(event.id) == event.count:
                    continue
                kind = "ADDED" if event.id not in seen else "MODIFIED"
                seen[event.id] = event.count
                yield _line({"type": kind, "object": event_document(event)})
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                return
            await asyncio.sleep(
                _EVENT_POLL_SECONDS if remaining is None else min(_EVENT_POLL_SECONDS, remaining)
            )

    return content.AsyncStream(stream(), content_type=WATCH_CONTENT_TYPE)


@async_endpoint("GET")
async def site_events(request: HttpRequest, principal: Principal, name: str) -> HttpResponseBase:
    return await _events_response(request, principal, name)


@async_endpoint("GET")
async def all_events(request: HttpRequest, principal: Principal) -> HttpResponseBase:
    return await _events_response(request, principal, None)


# ---- logs -------------------------------------------------------------------------------------------


@async_endpoint("GET")
async def site_logs(request: HttpRequest, principal: Principal, name: str) -> HttpResponseBase:
    site = await views.in_worker_thread(site_service(principal).get)(name)
    if site.spec.type != "dynamic":
        raise ApiError(
            400, f'site "{name}" is static: only a dynamic site runs a service with logs', name=name
        )
    source = log_source()
    if source is None:
        raise ApiError(503, "this server has no log source configured", name=name)
    follow = views.query_flag(request, "follow")
    raw_tail = request.GET.get("tailLines")
    try:
        tail = int(raw_tail) if raw_tail else None
    except ValueError:
        tail = -1
    # Docker reads the number as an int32, and a negative one is no count of lines.
    if tail is not None and not 0 <= tail <= _MAX_TAIL_LINES:
        raise ApiError(
            400,
            f"tailLines must be a whole number from 0 to {_MAX_TAIL_LINES}, got {raw_tail!r}"[:200],
            causes=[Cause("tailLines", f"0-{_MAX_TAIL_LINES}")],
        )
    try:
        lines = await _in_log_thread(lambda: source.logs(name, follow=follow, tail=tail))
        first = await _in_log_thread(lambda: _next_line(lines))
    except LookupError as error:
        raise ApiError(404, f'site "{name}" has no service logs: {error}', name=name) from None
    except ConnectionError as error:
        raise ApiError(503, f'the logs of site "{name}" cannot be read now: {error}', name=name) from None

    async def stream() -> AsyncGenerator[bytes, None]:
        line = first
        try:
            while line is not None:
                yield line.encode()
                line = await _in_log_thread(lambda: _next_line(lines))
        finally:
            # Here, not on a log thread: those may all be waiting for lines (close ends their waits).
            lines.close()

    return content.AsyncStream(stream(), content_type="text/plain; charset=utf-8")


async def _in_log_thread(function: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_LOG_THREADS, function)


def _next_line(lines: LogLines) -> str | None:
    return next(lines, None)
