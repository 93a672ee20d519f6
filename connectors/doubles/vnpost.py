"""VNPost double (Bưu chính công ích): shipment orders in, tracking webhooks out.

Routes (under ``/vnpost``):

- ``POST /inbox``: a hub ``shipment`` delivery (the delivery service's JSON, with
  ``Idempotency-Key``) becomes a result-out shipment order; answers its ``tracking_number``.
- ``POST /api/pickups``: a citizen's pickup order ``{"dossier", "receiving_agency",
  "procedure", "applicant"}`` (a dossier carried to the desk); answers its tracking number.
- ``POST /control/track``: ``{"tracking_number", "status", "at"?}`` sends one tracking webhook
  (VNPost status codes of ``postal.mapping.VNPOST_STATUSES``).
- ``GET /shipments``: every order and the webhooks sent for it.

With ``webhook_url`` set, each webhook is POSTed there, signed as ``VNPOST`` when a key is
given. With ``auto_track_seconds`` > 0 every new order moves by itself: picked up, in transit,
delivered, one step each ``auto_track_seconds`` (``failed_every`` > 0 makes every n-th order
fail once before it is delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiohttp import web

from lienthong.connectors.doubles.agencies import Inbox
from lienthong.connectors.http import RequestSigner, RetryPolicy, make_async_client
from lienthong.connectors.postal.mapping import POSTAL_AGENCY, VNPOST_STATUSES

log = logging.getLogger(__name__)


def tracking_number_for(key: str) -> str:
    """VNPost-shaped tracking number (2 letters, 9 digits, VN), stable for one order key."""
    digits = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 10**9
    return f"EL{digits:09d}VN"


@dataclass
class Shipment:
    tracking_number: str
    order_type: str  # result_out | dossier_in
    dossier: str
    extra: dict[str, Any] = field(default_factory=dict)  # dossier_in: desk, procedure, applicant
    sent: list[dict[str, Any]] = field(default_factory=list)  # webhooks sent

    def to_json(self) -> dict[str, Any]:
        return {"tracking_number": self.tracking_number, "order_type": self.order_type,
                "dossier": self.dossier, **self.extra,
                "statuses": [w["status"] for w in self.sent]}


class VNPostDouble:
    def __init__(self, inbox: Inbox, *, webhook_url: str | None = None,
                 key: str | None = None, auto_track_seconds: float = 0.0,
                 failed_every: int = 0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.inbox = inbox
        self.webhook_url = webhook_url
        self.key = key
        self.auto_track_seconds = auto_track_seconds
        self.failed_every = failed_every
        self.now = now
        self.shipments: dict[str, Shipment] = {}
        self.webhooks_sent = 0
        self.webhooks_failed = 0
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- orders ---------------------------------------------------------------------------------

    def _order(self, key: str, order_type: str, dossier: str,
               extra: dict[str, Any] | None = None) -> Shipment:
        tn = tracking_number_for(key)
        s = self.shipments.get(tn)
        if s is None:
            s = self.shipments[tn] = Shipment(tn, order_type, dossier, extra or {})
            if self.auto_track_seconds > 0:
                self._spawn(self._auto(s, len(self.shipments)))
        return s

    async def post_inbox(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = request.headers.get("Idempotency-Key")
        status, answer = await self.inbox.receive(key, body)
        if status != 200 or key is None:
            return web.json_response(answer, status=status)
        data = json.loads(body)
        s = self._order(key, str((data.get("payload") or {}).get("leg") or "result_out"),
                        str(data.get("dossier")))
        return web.json_response({**answer, "tracking_number": s.tracking_number})

    async def post_pickup(self, request: web.Request) -> web.Response:
        data = await request.json()
        need = ("dossier", "receiving_agency", "procedure", "applicant")
        if not isinstance(data, dict) or any(data.get(k) is None for k in need):
            return web.json_response({"error": "bad_pickup",
                                      "detail": f"required: {', '.join(need)}"}, status=400)
        s = self._order(f"pickup|{data['dossier']}", "dossier_in", data["dossier"],
                        {k: data[k] for k in need[1:]})
        return web.json_response({"tracking_number": s.tracking_number}, status=201)

    async def get_shipments(self, request: web.Request) -> web.Response:
        return web.json_response({"shipments": [s.to_json() for s in self.shipments.values()]})

    async def post_track(self, request: web.Request) -> web.Response:
        data = await request.json()
        s = self.shipments.get(data.get("tracking_number", "")) if isinstance(data, dict) \
            else None
        if s is None:
            return web.json_response({"error": "unknown_tracking_number"}, status=404)
        code = data.get("status")
        if code not in VNPOST_STATUSES:
            return web.json_response({"error": "bad_status",
                                      "detail": f"one of {', '.join(VNPOST_STATUSES)}"},
                                     status=400)
        answer = await self.track(s, code, data.get("at"))
        return web.json_response(answer)

    # -- webhooks -------------------------------------------------------------------------------

    def callback(self, s: Shipment, code: str, at: str | None = None) -> dict[str, Any]:
        body = {"tracking_number": s.tracking_number, "order_type": s.order_type,
                "dossier": s.dossier, "status": code,
                "status_text": VNPOST_STATUSES[code][1],
                "at": at or self.now().isoformat(timespec="seconds")}
        if s.order_type == "dossier_in":
            body.update(s.extra)
        return body

    async def track(self, s: Shipment, code: str, at: str | None = None) -> dict[str, Any]:
        body = self.callback(s, code, at)
        s.sent.append(body)
        result: dict[str, Any] = {"webhook": body, "delivered_to": None}
        if not self.webhook_url:
            return result
        if self._client is None:
            signer = RequestSigner(POSTAL_AGENCY, self.key) if self.key else None
            self._client = make_async_client(
                retry=RetryPolicy(attempts=5, base_delay=0.2, max_delay=2.0), signer=signer,
                timeout=5.0)
        try:
            response = await self._client.post(
                self.webhook_url, content=json.dumps(body, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json"})
            result["delivered_to"] = self.webhook_url
            result["answer_status"] = response.status_code
            if response.status_code >= 300:
                self.webhooks_failed += 1
                log.warning("webhook %s %s answered %d: %s", s.tracking_number, code,
                            response.status_code, response.text[:200])
            else:
                self.webhooks_sent += 1
        except httpx.HTTPError as exc:
            self.webhooks_failed += 1
            result["error"] = f"{type(exc).__name__}: {exc}"
            log.warning("webhook %s %s failed: %s", s.tracking_number, code, exc)
        return result

    async def _auto(self, s: Shipment, n: int) -> None:
        codes = ["PICKED_UP", "IN_TRANSIT"]
        if self.failed_every and n % self.failed_every == 0:
            codes.append("DELIVERY_FAILED")
        codes.append("DELIVERED")
        for code in codes:
            await asyncio.sleep(self.auto_track_seconds)
            await self.track(s, code)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()

    def stats(self) -> dict[str, Any]:
        return {**self.inbox.stats(), "shipments": len(self.shipments),
                "webhooks_sent": self.webhooks_sent, "webhooks_failed": self.webhooks_failed}

    def add_routes(self, app: web.Application, prefix: str = "/vnpost") -> None:
        r = app.router
        r.add_post(f"{prefix}/inbox", self.post_inbox)
        r.add_post(f"{prefix}/api/pickups", self.post_pickup)
        r.add_post(f"{prefix}/control/track", self.post_track)
        r.add_get(f"{prefix}/shipments", self.get_shipments)
