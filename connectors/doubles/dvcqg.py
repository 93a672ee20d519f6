"""National portal double (Cổng Dịch vụ công quốc gia, DVCQG): status syncs in, the latest
status per dossier out, for the status-sync adapter and the drift reconciler.

Routes (under ``/dvcqg``):

- ``POST /api/status-sync``: one status sync in the portal's shape (see
  ``national_portal.mapping``), with ``Idempotency-Key``; 200, or 400 naming the field.
- ``GET /api/status/{dossier}``: ``{"MaHoSo", "TrangThaiHoSo", "KenhThucHien", "ThoiDiem"}``
  or 404.
- ``POST /api/status-query``: ``{"MaHoSo": [codes]}`` → ``{"items": [{"MaHoSo",
  "TrangThaiHoSo"|null, ...}]}`` (batch lookup for reconciliation).
- ``POST /inbox``: a hub ``portal_status`` delivery in the generic envelope, mapped with the
  adapter's ``to_portal_request`` (for a client that does not shape its requests; the delivery
  service POSTs the status-sync shape to ``/api/status-sync`` itself).
- ``POST /control``: ``{"set": {"MaHoSo": code, "TrangThaiHoSo": n}}`` overwrites a status (to
  make drift on purpose); also the fault keys of an agency double.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lienthong.connectors.doubles.agencies import Inbox
from lienthong.connectors.national_portal.mapping import (
    PortalShapeError,
    check_portal_request,
    to_portal_request,
)


class PortalDouble:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox  # idempotency, counters and faults are an agency inbox's
        self.latest: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[int]] = {}

    def apply(self, sync: dict[str, Any]) -> None:
        code = sync["MaHoSo"]
        self.latest[code] = {k: sync[k] for k in ("MaHoSo", "TrangThaiHoSo", "KenhThucHien",
                                                   "ThoiDiem", "MaDonVi", "MaTTHC")}
        self.history.setdefault(code, []).append(sync["TrangThaiHoSo"])

    def status(self, code: str) -> int | None:
        item = self.latest.get(code)
        return None if item is None else int(item["TrangThaiHoSo"])

    async def _take(self, request: web.Request, mapper: Any) -> web.Response:
        body = await request.read()
        try:
            sync = mapper(json.loads(body))
        except ValueError as exc:  # PortalShapeError is one; so is bad JSON
            self.inbox.receipts += 1
            self.inbox.rejected += 1
            field = exc.field if isinstance(exc, PortalShapeError) else ""
            return web.json_response({"error": "invalid_status_sync", "field": field,
                                      "detail": str(exc)}, status=400)
        canonical = json.dumps(sync, ensure_ascii=False).encode()
        status, answer = await self.inbox.receive(request.headers.get("Idempotency-Key"),
                                                  canonical)
        if answer.get("status") == "applied":
            self.apply(sync)
        return web.json_response(answer, status=status)

    async def post_sync(self, request: web.Request) -> web.Response:
        return await self._take(request, check_portal_request)

    async def post_inbox(self, request: web.Request) -> web.Response:
        return await self._take(request, lambda d: check_portal_request(to_portal_request(d)))

    async def get_status(self, request: web.Request) -> web.Response:
        item = self.latest.get(request.match_info["dossier"])
        if item is None:
            return web.json_response({"error": "unknown_dossier"}, status=404)
        return web.json_response(item)

    async def post_query(self, request: web.Request) -> web.Response:
        data = await request.json()
        codes = data.get("MaHoSo") if isinstance(data, dict) else None
        if not isinstance(codes, list) or len(codes) > 1000:
            return web.json_response({"error": "bad_query",
                                      "detail": "MaHoSo: a list of at most 1000 codes"},
                                     status=400)
        return web.json_response({"items": [
            self.latest.get(c) or {"MaHoSo": c, "TrangThaiHoSo": None} for c in codes]})

    async def post_control(self, request: web.Request) -> web.Response:
        spec = await request.json()
        if not isinstance(spec, dict):
            return web.json_response({"error": "bad_control"}, status=400)
        forced = spec.get("set")
        if isinstance(forced, dict) and isinstance(forced.get("MaHoSo"), str):
            item = self.latest.setdefault(forced["MaHoSo"], {
                "MaHoSo": forced["MaHoSo"], "KenhThucHien": 1, "ThoiDiem": "", "MaDonVi": "",
                "MaTTHC": ""})
            item["TrangThaiHoSo"] = forced.get("TrangThaiHoSo")
        self.inbox.set_faults(spec)
        return web.json_response(self.stats())

    def stats(self) -> dict[str, Any]:
        return {**self.inbox.stats(), "dossiers": len(self.latest)}

    def add_routes(self, app: web.Application, prefix: str = "/dvcqg") -> None:
        r = app.router
        r.add_post(f"{prefix}/api/status-sync", self.post_sync)
        r.add_get(f"{prefix}/api/status/{{dossier}}", self.get_status)
        r.add_post(f"{prefix}/api/status-query", self.post_query)
        r.add_post(f"{prefix}/inbox", self.post_inbox)
        r.add_post(f"{prefix}/control", self.post_control)
