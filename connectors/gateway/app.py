"""The gateway's aiohttp application: the hub's front door for agency systems (cổng tiếp nhận).

``build_app`` is the composition point: every dependency is a parameter, so tests build the
same app with a fake publisher or a real one over a spool.

Routes: ``POST /v1/events``, ``GET /v1/dossiers/{code}``, ``GET /healthz``, ``GET /metrics``,
``GET /openapi.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiohttp import web

from lienthong.connectors.gateway.intake import (
    BodyError,
    Encoder,
    Limits,
    check_events,
    parse_body,
    status_when_all_rejected,
)
from lienthong.connectors.gateway.metrics import GatewayMetrics
from lienthong.connectors.gateway.openapi import openapi_document
from lienthong.connectors.gateway.spool import SpoolFull
from lienthong.connectors.gateway.timeline import TimelineStore
from lienthong.connectors.http.keys import KeyRing, KeyRingFile, KeysFileError
from lienthong.connectors.http.nonces import NonceCache, NonceCacheFull, NonceStore
from lienthong.connectors.http.verification import (
    CLOCK_SKEW_SECONDS,
    AuthFailure,
    Verified,
    verify_signature,
)
from lienthong.services.domain.identifiers import dossier_code_problem
from lienthong.services.ratelimit import TokenBuckets

log = logging.getLogger(__name__)


class EventPublisher(Protocol):
    """What the app needs from the Kafka side (``publisher.Publisher`` in production)."""

    @property
    def spooling(self) -> bool: ...

    def pending(self) -> int: ...

    async def publish(self, records: Sequence[tuple[bytes, bytes]]) -> str: ...


Clock = Callable[[], float]

KEYS = web.AppKey("keys", object)
STATE = web.AppKey("gateway", object)


def _error(status: int, reason: str, detail: str, **headers: str) -> web.Response:
    return web.json_response({"error": reason, "detail": detail}, status=status,
                             headers=headers or None)


class RateLimited(Exception):
    """An agency sent more signed requests than its bucket allows (429)."""

    def __init__(self, agency: str, retry_after: int, rate: float) -> None:
        super().__init__(agency)
        self.agency, self.retry_after, self.rate = agency, retry_after, rate

    def response(self) -> web.Response:
        return web.json_response(
            {"error": "rate_limited",
             "detail": f"agency {self.agency!r} sent more than {self.rate:g} requests per "
                       f"second on this gateway; retry after {self.retry_after} s",
             "retry_after": self.retry_after},
            status=429, headers={"Retry-After": str(self.retry_after)})


class Gateway:
    """Request handlers over their dependencies."""

    def __init__(self, *, keys: KeyRing | KeyRingFile, encode: Encoder,
                 publisher: EventPublisher, timelines: TimelineStore | None,
                 limits: Limits, nonces: NonceStore, metrics: GatewayMetrics, clock: Clock,
                 skew_seconds: float, rate_limit: TokenBuckets | None = None) -> None:
        self.keys, self.encode, self.publisher = keys, encode, publisher
        self.timelines, self.limits, self.nonces = timelines, limits, nonces
        self.metrics, self.clock, self.skew = metrics, clock, skew_seconds
        self.rate_limit = rate_limit if rate_limit is not None else TokenBuckets(0, 0)

    async def verify(self, request: web.Request, body: bytes) -> Verified:
        """Signature, then the agency's rate limit, then the nonce claim (a forger cannot
        spend an agency's tokens, and a refused request costs Kafka nothing).

        Raises ``AuthFailure``, ``RateLimited`` or ``NonceCacheFull``."""
        now = self.clock()
        who = verify_signature(self._ring(), request.method, request.raw_path,
                               request.headers, body, now=now, skew_seconds=self.skew)
        decision = self.rate_limit.take(who.agency, time.monotonic())
        if not decision.allowed:
            self.metrics.rate_limited.labels(who.agency).inc()
            raise RateLimited(who.agency, decision.retry_after, self.rate_limit.rate)
        if not await self.nonces.claim(who.agency, who.nonce, who.timestamp, now):
            raise AuthFailure("replayed_nonce", "this nonce was already used")
        return who

    def _ring(self) -> KeyRing:
        return self.keys.ring if isinstance(self.keys, KeyRingFile) else self.keys

    async def _authenticate(self, request: web.Request) -> tuple[Verified, bytes]:
        declared = request.content_length
        if declared is not None and declared > self.limits.max_body_bytes:
            raise BodyError(413, "body_too_large",
                            f"body is {declared} bytes; at most {self.limits.max_body_bytes}")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise BodyError(413, "body_too_large",
                            f"body exceeds {self.limits.max_body_bytes} bytes") from exc
        return await self.verify(request, body), body

    async def post_events(self, request: web.Request) -> web.Response:
        try:
            who, body = await self._authenticate(request)
            items, _ = parse_body(body, self.limits)
        except AuthFailure as exc:
            self.metrics.auth_failures.labels(exc.reason).inc()
            return _error(401, exc.reason, exc.detail)
        except RateLimited as exc:
            return exc.response()
        except NonceCacheFull as exc:
            return _error(503, "busy", f"cannot check the nonce now ({exc})", **{
                "Retry-After": "5"})
        except BodyError as exc:
            return web.json_response(exc.to_json(), status=exc.status)

        accepted, rejected = check_events(items, who.agency, self.encode, self.limits)
        for r in rejected:
            self.metrics.rejected.labels(r.reason).inc()
        rejections = [r.to_json() for r in rejected]
        if not accepted:
            return web.json_response(
                {"error": "all_events_rejected", "accepted": [], "rejected": rejections},
                status=status_when_all_rejected(rejected))
        try:
            path = await self.publisher.publish([(a.key, a.value) for a in accepted])
        except SpoolFull as exc:
            log.error("refusing %d events: Kafka unreachable and %s", len(accepted), exc)
            return _error(503, "spool_full", "Kafka is unreachable and the local spool is "
                          "full; nothing was accepted, retry later", **{"Retry-After": "30"})
        except OSError as exc:
            log.exception("cannot store accepted events")
            return _error(503, "storage_unavailable", f"nothing was accepted ({exc.strerror})",
                          **{"Retry-After": "10"})
        self.metrics.published.labels(path).inc(len(accepted))
        for a in accepted:
            self.metrics.accepted.labels(a.type, who.agency).inc()
        return web.json_response(
            {"accepted": [a.event_id for a in accepted], "rejected": rejections,
             "stored": path},
            status=202)

    async def get_dossier(self, request: web.Request) -> web.Response:
        try:
            who, _ = await self._authenticate(request)
        except AuthFailure as exc:
            self.metrics.auth_failures.labels(exc.reason).inc()
            return _error(401, exc.reason, exc.detail)
        except RateLimited as exc:
            return exc.response()
        except NonceCacheFull as exc:
            return _error(503, "busy", f"cannot check the nonce now ({exc})",
                          **{"Retry-After": "5"})
        except BodyError as exc:
            return web.json_response(exc.to_json(), status=exc.status)
        code = request.match_info["code"]
        problem = dossier_code_problem(code)
        if problem:
            return _error(400, "bad_dossier_code", problem)
        if self.timelines is None:
            return _error(501, "timeline_unavailable",
                          "this gateway has no timeline store; dossier timelines are served "
                          "once the stream processor's store is wired in")
        timeline = await self.timelines.timeline(code)
        if timeline is None:
            return _error(404, "unknown_dossier", f"the hub has no dossier {code!r}")
        if who.agency not in timeline.agencies:
            # The same answer whether or not the dossier exists would hide more, but agencies
            # legitimately need to tell "not yours" from "not yet arrived".
            return _error(403, "not_involved",
                          f"agency {who.agency!r} is not involved in dossier {code!r}")
        return web.json_response(timeline.to_json())

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok",
                                  "kafka": "spooling" if self.publisher.spooling else "direct",
                                  "spooled": self.publisher.pending()})

    async def metrics_page(self, request: web.Request) -> web.Response:
        self.metrics.spooled.set(self.publisher.pending())
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": self.metrics.content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(f"{request.scheme}://{request.host}"))


def _metrics_middleware(metrics: GatewayMetrics) -> Any:
    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.requests.labels(route, str(status)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - started)

    return middleware


def build_app(
    *,
    keys: KeyRing | KeyRingFile,
    encode: Encoder,
    publisher: EventPublisher,
    timelines: TimelineStore | None = None,
    limits: Limits | None = None,
    nonces: NonceStore | None = None,
    metrics: GatewayMetrics | None = None,
    clock: Clock = time.time,
    skew_seconds: float = CLOCK_SKEW_SECONDS,
    keys_reload_seconds: float = 5.0,
    rate_limit: TokenBuckets | None = None,
) -> web.Application:
    """The gateway app. If ``publisher`` or ``nonces`` have ``start``/``stop`` they run with
    the app. ``nonces`` defaults to this process's memory (one gateway alone); ``rate_limit``
    (per agency) to none."""
    limits = limits or Limits()
    metrics = metrics or GatewayMetrics()
    gw = Gateway(keys=keys, encode=encode, publisher=publisher, timelines=timelines,
                 limits=limits, nonces=nonces if nonces is not None else NonceCache(),
                 metrics=metrics, clock=clock, skew_seconds=skew_seconds,
                 rate_limit=rate_limit)
    # aiohttp's own limit sits a little above ours so our JSON 413 answers first.
    app = web.Application(client_max_size=limits.max_body_bytes + 1,
                          middlewares=[_metrics_middleware(metrics)])
    app[STATE] = gw
    app.router.add_post("/v1/events", gw.post_events)
    app.router.add_get("/v1/dossiers/{code}", gw.get_dossier)
    app.router.add_get("/healthz", gw.healthz)
    app.router.add_get("/metrics", gw.metrics_page)
    app.router.add_get("/openapi.json", gw.openapi)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        start = getattr(publisher, "start", None)
        if start is not None:
            await start()
        start_nonces = getattr(nonces, "start", None)
        if start_nonces is not None:
            await start_nonces()
        reload_task = None
        if isinstance(keys, KeyRingFile):
            reload_task = asyncio.create_task(_reload_keys(keys, keys_reload_seconds))
        yield
        if reload_task is not None:
            reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reload_task
        stop_nonces = getattr(nonces, "stop", None)
        if stop_nonces is not None:
            await stop_nonces()
        stop = getattr(publisher, "stop", None)
        if stop is not None:
            await stop()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _reload_keys(keys: KeyRingFile, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            if keys.reload_if_changed():
                log.info("keys file %s reloaded: %d agencies", keys.path, len(keys.ring))
        except KeysFileError as exc:
            log.error("keys file changed but cannot be used; keeping the old keys: %s", exc)
