"""VNPost's tracking webhook receiver: signed callbacks in, hub events out to
``dossier.events`` through the gateway's own publisher (Kafka, or the durable spool).

    app = build_app(keys=..., encode=..., publisher=publisher)   # the gateway
    mount_postal(app)                     # POST /v1/postal/vnpost on the same app
    # or standalone:  build_postal_app(keys=..., publisher=publisher)

VNPost signs each callback like any agency system (DESIGN section 7) as ``VNPOST``; a
callback signed by anyone else is refused (403). The body is one callback or an array of them
(``postal.mapping``). Answers: 202 ``{"accepted": [event ids], "ignored": [tracking numbers],
"stored": "kafka"|"spool"}``; 4xx with ``{"error", "rejected": [{"index", "field",
"problem"}]}`` when no callback could be used; 503 when neither Kafka nor the spool can take
the events (VNPost retries).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from lienthong.connectors.gateway.app import STATE, EventPublisher
from lienthong.connectors.gateway.intake import Encoder
from lienthong.connectors.gateway.spool import SpoolFull
from lienthong.connectors.http.keys import KeyRing, KeyRingFile
from lienthong.connectors.http.nonces import NonceCache, NonceCacheFull, NonceStore
from lienthong.connectors.http.verification import AuthFailure, verify_and_claim
from lienthong.connectors.postal.mapping import POSTAL_AGENCY, CallbackError, map_callback

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/v1/postal/vnpost"
MAX_BODY = 256 << 10
MAX_CALLBACKS = 200


def _error(status: int, reason: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, "detail": detail, **extra}, status=status)


class PostalWebhook:
    """The handler over its dependencies (the same kinds the gateway has)."""

    def __init__(self, *, keys: KeyRing | KeyRingFile, publisher: EventPublisher,
                 encode: Encoder | None = None, nonces: NonceStore | None = None,
                 clock: Callable[[], float] = time.time, sender: str = POSTAL_AGENCY) -> None:
        if encode is None:
            from lienthong.schemas.codec import encode_event

            encode = encode_event
        self.keys, self.publisher, self.encode = keys, publisher, encode
        self.nonces = nonces if nonces is not None else NonceCache()
        self.clock, self.sender = clock, sender
        self.accepted = 0
        self.ignored = 0

    def _ring(self) -> KeyRing:
        return self.keys.ring if isinstance(self.keys, KeyRingFile) else self.keys

    async def handle(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_BODY:
            return _error(413, "body_too_large", f"at most {MAX_BODY} bytes")
        body = await request.read()
        if len(body) > MAX_BODY:
            return _error(413, "body_too_large", f"at most {MAX_BODY} bytes")
        try:
            who = await verify_and_claim(self._ring(), self.nonces, request.method,
                                         request.raw_path, request.headers, body,
                                         now=self.clock())
        except AuthFailure as exc:
            return _error(401, exc.reason, exc.detail)
        except NonceCacheFull:
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "5"})
        if who.agency != self.sender:
            return _error(403, "forbidden_agency",
                          f"only {self.sender} sends tracking callbacks, not {who.agency}")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, "malformed_json", f"body is not JSON: {exc}")
        items = data if isinstance(data, list) else [data]
        if not items or len(items) > MAX_CALLBACKS:
            return _error(400, "bad_batch", f"1 to {MAX_CALLBACKS} callbacks per request")

        records: list[tuple[bytes, bytes]] = []
        accepted: list[str] = []
        ignored: list[str] = []
        rejected: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                events = map_callback(item)
                encoded = [(e["dossier"].encode("utf-8"), self.encode(e)) for e in events]
            except CallbackError as exc:
                rejected.append({"index": index, "field": exc.field or None,
                                 "problem": exc.problem})
                continue
            except (ValueError, TypeError, KeyError) as exc:  # the codec names the field
                rejected.append({"index": index, "field": getattr(exc, "field", None),
                                 "problem": getattr(exc, "problem", None) or str(exc)})
                continue
            if not events:
                ignored.append(str(item.get("tracking_number")))
            records.extend(encoded)
            accepted.extend(e["event_id"] for e in events)
        if rejected and not records and not ignored:
            return web.json_response({"error": "all_callbacks_rejected", "accepted": [],
                                      "rejected": rejected}, status=422)
        stored = "none"
        if records:
            try:
                stored = await self.publisher.publish(records)
            except SpoolFull:
                return _error(503, "spool_full", "Kafka is unreachable and the spool is full",
                              retry_after=30)
            except OSError as exc:
                log.exception("cannot store postal events")
                return _error(503, "storage_unavailable", f"nothing was accepted ({exc})")
        self.accepted += len(accepted)
        self.ignored += len(ignored)
        return web.json_response({"accepted": accepted, "ignored": ignored,
                                  "rejected": rejected, "stored": stored}, status=202)


def mount_postal(app: web.Application, webhook: PostalWebhook | None = None, *,
                 path: str = WEBHOOK_PATH) -> PostalWebhook:
    """Add the webhook route to an app before it starts; by default to the gateway's app,
    sharing its keys, publisher, codec and replay cache."""
    if webhook is None:
        gw: Any = app[STATE]
        webhook = PostalWebhook(keys=gw.keys, publisher=gw.publisher, encode=gw.encode,
                                nonces=gw.nonces, clock=gw.clock)
    app.router.add_post(path, webhook.handle)
    return webhook


def build_postal_app(*, keys: KeyRing | KeyRingFile, publisher: EventPublisher,
                     encode: Encoder | None = None, path: str = WEBHOOK_PATH,
                     clock: Callable[[], float] = time.time) -> web.Application:
    """A standalone receiver; a publisher with ``start``/``stop`` runs with the app."""
    app = web.Application(client_max_size=MAX_BODY + 1)
    hook = mount_postal(app, PostalWebhook(keys=keys, publisher=publisher, encode=encode,
                                           clock=clock), path=path)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "accepted": hook.accepted,
                                  "ignored": hook.ignored,
                                  "kafka": "spooling" if publisher.spooling else "direct",
                                  "spooled": publisher.pending()})

    app.router.add_get("/healthz", healthz)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        start = getattr(publisher, "start", None)
        if start is not None:
            await start()
        yield
        stop = getattr(publisher, "stop", None)
        if stop is not None:
            await stop()

    app.cleanup_ctx.append(lifecycle)
    return app
