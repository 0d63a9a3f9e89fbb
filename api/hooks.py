"""Push notifications: `POST /hooks/gitsources/NAME` makes the controller fetch the source now.

The body is verified with the HMAC key of the secret `spec.webhook.secretRef` names (among the secrets of
the source's applyAs): GitHub's `X-Hub-Signature-256: sha256=HEX`, Gitea's `X-Gitea-Signature: HEX` (and
Gogs' `X-Gogs-Signature`), each an HMAC-SHA256 of the body; GitLab sends the key itself as
`X-Gitlab-Token`. A bad or missing signature is 401 and changes nothing; a body over 1 MiB is 413 unread.

A good one writes the reconcile-request annotation on the source's record, which the controller's watch
takes as an urgent wake. Calls are bounded per source and process (a bucket of 10, refilled at one a
second; 429 beyond), and wakes less than a second apart are folded into one: the controller, woken by a
webhook, looks once more a moment later, so a push whose call was folded is fetched all the same.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from datetime import UTC, datetime, timedelta

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from api import content
from api.errors import ApiError, method_not_allowed, write_refused
from api.gitsources import gitsource_store
from api.secrets import values_of
from specs.gitsource import GitSource
from specs.models import RECONCILE_REQUEST_ANNOTATION
from store.records import Conflict, InvalidRecord, NotFound, StoreError

MAX_BODY_BYTES = 1024 * 1024
BUCKET_SIZE = 10.0
REFILL_PER_SECOND = 1.0
# Wakes closer together than this are one wake.
FOLD_SECONDS = 1.0
WEBHOOK_MARK = "webhook"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class _Buckets:
    """A token bucket per source, in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._levels: dict[str, tuple[float, float]] = {}

    def take(self, name: str) -> float:
        """0 if a call may go ahead now, else the seconds until one may."""
        now = time.monotonic()
        with self._lock:
            level, since = self._levels.get(name, (BUCKET_SIZE, now))
            level = min(BUCKET_SIZE, level + (now - since) * REFILL_PER_SECOND)
            if level < 1.0:
                self._levels[name] = (level, now)
                return (1.0 - level) / REFILL_PER_SECOND
            if len(self._levels) > 10_000:
                self._levels.clear()
            self._levels[name] = (level - 1.0, now)
            return 0.0


_buckets = _Buckets()


def _signed(body: bytes, key: str, request: HttpRequest) -> bool | None:
    """Whether the request carries a valid signature; None when it carries none at all."""
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    github = request.headers.get("X-Hub-Signature-256")
    if github is not None:
        return hmac.compare_digest(github.strip().lower(), f"sha256={digest}")
    for header in ("X-Gitea-Signature", "X-Gogs-Signature"):
        given = request.headers.get(header)
        if given is not None:
            return hmac.compare_digest(given.strip().lower(), digest)
    gitlab = request.headers.get("X-Gitlab-Token")
    if gitlab is not None:
        return hmac.compare_digest(gitlab.encode(), key.encode())
    return None


def _requested_recently(source: GitSource, now: datetime) -> bool:
    value = source.metadata.annotations.get(RECONCILE_REQUEST_ANNOTATION, "")
    try:
        last = datetime.strptime(value.split()[0], _TIME_FORMAT).replace(tzinfo=UTC) if value else None
    except ValueError:
        return False
    return last is not None and timedelta(0) <= now - last < timedelta(seconds=FOLD_SECONDS)


def _request_fetch(name: str) -> bool:
    """Write the reconcile request on the record; False if a wake less than FOLD_SECONDS old stands."""
    store = gitsource_store()
    for _attempt in range(10):
        source = store.get(name)
        now = datetime.now(UTC)
        if _requested_recently(source, now):
            return False
        source.metadata.annotations[RECONCILE_REQUEST_ANNOTATION] = (
            f"{now.strftime(_TIME_FORMAT)} {WEBHOOK_MARK}"
        )
        try:
            store.update(source)
            return True
        except Conflict:
            continue
    raise ApiError(409, f'gitsource "{name}" kept changing; the next push or poll fetches it')


def _body(request: HttpRequest) -> bytes:
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"a webhook body may be at most {MAX_BODY_BYTES // 1024} KiB")
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"a webhook body may be at most {MAX_BODY_BYTES // 1024} KiB")
    return body


def _handle(request: HttpRequest, name: str) -> HttpResponse:
    if request.method != "POST":
        return method_not_allowed(request, ["POST"])
    body = _body(request)
    try:
        source = gitsource_store().get(name)
    except (NotFound, ValueError):
        raise ApiError(404, f'gitsource "{name}" not found') from None
    except InvalidRecord:
        raise ApiError(500, f'the record of gitsource "{name}" cannot be read') from None
    webhook = source.spec.webhook
    if webhook is None:
        raise ApiError(404, f'gitsource "{name}" takes no webhook: it names no spec.webhook.secretRef')
    values = values_of(source.spec.apply_as or "", webhook.secret_ref.name) or {}
    key = values.get("hmac")
    if not key:
        raise ApiError(
            401,
            f'the webhook of gitsource "{name}" cannot be verified: its secret '
            f'"{webhook.secret_ref.name}" is missing or has no hmac key',
        )
    signed = _signed(body, key, request)
    if signed is None:
        raise ApiError(
            401, "the request is not signed: send X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token"
        )
    if not signed:
        raise ApiError(401, "the signature does not match the body and the webhook's secret")
    wait = _buckets.take(name)
    if wait > 0:
        raise ApiError(
            429,
            f'too many webhook calls for gitsource "{name}": the fetch already requested covers them',
            retry_after_seconds=max(1, math.ceil(wait)),
        )
    try:
        requested = _request_fetch(name)
    except NotFound:
        raise ApiError(404, f'gitsource "{name}" not found') from None
    except StoreError as error:
        raise write_refused(error, f'the fetch request of gitsource "{name}"', name=name) from None
    message = (
        "fetch requested" if requested else "a fetch was requested less than a second ago; it covers this"
    )
    response = content.render(
        request,
        {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 202, "message": message},
        status=202,
    )
    return response


@csrf_exempt
async def gitsource_hook(request: HttpRequest, name: str) -> HttpResponse:
    from api.views import in_worker_thread

    return await in_worker_thread(_handle)(request, name)
