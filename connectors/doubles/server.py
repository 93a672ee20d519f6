"""All test doubles on one aiohttp app (one port): every agency system of a catalogue, VNPost
and the national portal.

    doubles = Doubles(catalogue.agencies)          # or Doubles(["000.00.15.H99", ...])
    app = doubles.build_app()
    ...
    catalogue = point_catalogue_at(catalogue, "http://127.0.0.1:9800")

Paths: ``/agencies/{code}/inbox`` (and ``control``, ``changes``, ``dossiers/{dossier}``,
``stats``), ``/vnpost/...``, ``/dvcqg/...``, the citizen-messaging providers under ``/sms``
and ``/zalo`` (``doubles.messaging``; tokens ``sms-token``, ``zalo-token``), ``GET /stats``
(applications, receipts, duplicates per destination) and ``GET /healthz``. See each
double's module for its routes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from lienthong.connectors.doubles.agencies import AgencyDoubles
from lienthong.connectors.doubles.dvcqg import PortalDouble
from lienthong.connectors.doubles.messaging import SmsDouble, ZaloDouble
from lienthong.connectors.doubles.vnpost import VNPostDouble
from lienthong.connectors.http.serving import listening
from lienthong.services.domain.catalogue import Catalogue, parse_catalogue
from lienthong.services.domain.routing import PORTAL, POSTAL

DOUBLES_KEY = web.AppKey("doubles", object)


def endpoint_for(base_url: str, code: str) -> str:
    """Where a destination's deliveries go on the doubles server at ``base_url``."""
    base = base_url.rstrip("/")
    if code == POSTAL:
        return f"{base}/vnpost/inbox"
    if code == PORTAL:  # the delivery service sends the portal its own status-sync shape
        return f"{base}/dvcqg/api/status-sync"
    return f"{base}/agencies/{code}/inbox"


def point_catalogue_at(catalogue: Catalogue, base_url: str, *,
                       only_with_endpoint: bool = True) -> Catalogue:
    """The same catalogue with every endpoint moved onto the doubles server.

    Agencies without an endpoint keep none (``only_with_endpoint``), as in the source file.
    """
    data = catalogue.to_dict()
    for a in data["agencies"]:
        if a.get("endpoint") or not only_with_endpoint:
            a["endpoint"] = endpoint_for(base_url, a["code"])
    return parse_catalogue(data, source=f"{base_url} doubles")


def point_catalogue_data_at(data: dict[str, Any], base_url: str) -> dict[str, Any]:
    """As :func:`point_catalogue_at` on raw catalogue data (keeps comments-free YAML/JSON)."""
    out = dict(data)
    out["agencies"] = [
        {**a, "endpoint": endpoint_for(base_url, a["code"])} if a.get("endpoint") else dict(a)
        for a in data.get("agencies", [])
    ]
    return out


class Doubles:
    """Every double's state; ``build_app()`` serves them."""

    def __init__(self, agencies: Iterable[str] = (), *,
                 vnpost_webhook_url: str | None = None, vnpost_key: str | None = None,
                 vnpost_auto_track_seconds: float = 0.0, vnpost_failed_every: int = 0,
                 faults: dict[str, dict[str, Any]] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        codes = [c for c in agencies if c not in (PORTAL, POSTAL)]
        self.agencies = AgencyDoubles(codes)
        systems = AgencyDoubles([POSTAL, PORTAL])
        self.vnpost = VNPostDouble(systems.inbox(POSTAL), webhook_url=vnpost_webhook_url,
                                   key=vnpost_key, auto_track_seconds=vnpost_auto_track_seconds,
                                   failed_every=vnpost_failed_every, now=now)
        self.portal = PortalDouble(systems.inbox(PORTAL))
        # Citizen messaging providers (lienthong citizen-notify): /sms/v1/..., /zalo/v3.0/...
        self.sms = SmsDouble()
        self.zalo = ZaloDouble()
        for code, spec in (faults or {}).items():
            self.inbox(code).set_faults(spec)

    def inbox(self, code: str) -> Any:
        if code == POSTAL:
            return self.vnpost.inbox
        if code == PORTAL:
            return self.portal.inbox
        return self.agencies.inbox(code)

    def stats(self) -> dict[str, Any]:
        per = self.agencies.stats()
        per[POSTAL] = self.vnpost.stats()
        per[PORTAL] = self.portal.stats()
        totals = {k: sum(v[k] for v in per.values())
                  for k in ("receipts", "applications", "duplicates", "failed", "rejected")}
        return {"totals": totals, "destinations": per}

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "agencies": len(self.agencies.inboxes)})

    async def _system_control(self, request: web.Request) -> web.Response:
        box = self.vnpost.inbox
        spec = await request.json()
        box.set_faults(spec if isinstance(spec, dict) else {})
        return web.json_response(box.stats())

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=4 << 20)
        app[DOUBLES_KEY] = self
        self.agencies.add_routes(app)
        self.vnpost.add_routes(app)
        app.router.add_post("/vnpost/control", self._system_control)
        self.portal.add_routes(app)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/healthz", self._healthz)
        app.add_subapp("/sms", self.sms.build_app())
        app.add_subapp("/zalo", self.zalo.build_app())

        async def lifecycle(app: web.Application) -> AsyncIterator[None]:
            yield
            await self.vnpost.close()

        app.cleanup_ctx.append(lifecycle)
        return app


@contextlib.asynccontextmanager
async def running(doubles: Doubles, host: str = "127.0.0.1",
                  port: int = 0) -> AsyncIterator[str]:
    """Serve ``doubles`` on ``host:port`` (0: a free port); yields the base URL."""
    async with listening(doubles.build_app(), host, port) as url:
        yield url
