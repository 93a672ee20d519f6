"""Agency system doubles (phần mềm một cửa của cơ quan): an inbox for deliveries and a
"changes since cursor" feed, with faults that can be switched on while running.

The inbox honours ``Idempotency-Key``: each key is applied once; a repeated key is answered as
the first time (200) without applying again. Each application is answered with a receipt
signed by the agency (``{"receipt": {...}}``, ``services/domain/receipts.py``) — with its demo
key unless given one — and a repeated key gets the same receipt again. It counts raw receipts
(every request that reached it), applications (first sight of a key), duplicates (a key seen
again) and injected failures separately, and records the order in which each dossier's
deliveries were applied.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lienthong.services.domain.receipts import DEMO_KEY_ID, demo_key, sign_receipt


@dataclass
class Faults:
    """What the double does wrong. ``fail_until`` is a ``time.monotonic()`` instant."""

    fail_status: int = 503
    fail_until: float = 0.0
    slow_seconds: float = 0.0
    reject_status: int = 422  # a permanent 4xx for the next ``reject_count`` requests
    reject_count: int = 0
    unsigned_count: int = 0  # applied, but answered without a receipt
    forged_count: int = 0  # applied, but the receipt's signature is not the agency's

    def to_json(self, now: float) -> dict[str, Any]:
        return {"fail_status": self.fail_status,
                "failing_for": round(max(0.0, self.fail_until - now), 3),
                "slow_seconds": self.slow_seconds, "reject_status": self.reject_status,
                "reject_count": self.reject_count, "unsigned_count": self.unsigned_count,
                "forged_count": self.forged_count}


@dataclass
class Applied:
    key: str
    kind: str | None
    dossier: str | None
    event_id: str | None
    body: dict[str, Any]
    received_at: float
    receipt: dict[str, str] | None = None


@dataclass
class Inbox:
    """One agency system's inbox and change feed."""

    code: str
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], float] = time.monotonic
    signing_key: Ed25519PrivateKey | None = None  # None: no receipts at all
    key_id: str = DEMO_KEY_ID
    wall: Callable[[], datetime] = lambda: datetime.now(UTC)
    receipts: int = 0
    duplicates: int = 0
    failed: int = 0
    rejected: int = 0
    applied: dict[str, Applied] = field(default_factory=dict)
    by_dossier: dict[str, list[str]] = field(default_factory=dict)  # dossier -> keys, in order
    changes: list[dict[str, Any]] = field(default_factory=list)  # the change feed

    @property
    def applications(self) -> int:
        return len(self.applied)

    def stats(self) -> dict[str, Any]:
        return {"receipts": self.receipts, "applications": self.applications,
                "duplicates": self.duplicates, "failed": self.failed,
                "rejected": self.rejected, "dossiers": len(self.by_dossier),
                "changes": len(self.changes), "faults": self.faults.to_json(self.clock())}

    def set_faults(self, spec: dict[str, Any]) -> None:
        """``{"fail_seconds", "fail_status", "slow_seconds", "reject_count", "reject_status",
        "reset"}``; absent keys keep their value."""
        f = self.faults
        if spec.get("reset"):
            self.faults = f = Faults()
        if "fail_status" in spec:
            f.fail_status = int(spec["fail_status"])
        if "fail_seconds" in spec:
            f.fail_until = self.clock() + float(spec["fail_seconds"])
        if "slow_seconds" in spec:
            f.slow_seconds = float(spec["slow_seconds"])
        if "reject_status" in spec:
            f.reject_status = int(spec["reject_status"])
        if "reject_count" in spec:
            f.reject_count = int(spec["reject_count"])
        if "unsigned_count" in spec:
            f.unsigned_count = int(spec["unsigned_count"])
        if "forged_count" in spec:
            f.forged_count = int(spec["forged_count"])

    def dossier_order(self, dossier: str) -> list[dict[str, Any]]:
        return [{"key": k, "kind": self.applied[k].kind, "event_id": self.applied[k].event_id}
                for k in self.by_dossier.get(dossier, [])]

    def add_change(self, event: dict[str, Any], change_id: str | None = None) -> int:
        """Append a change to the feed; returns its position (the cursor after it)."""
        self.changes.append({"change_id": change_id or str(len(self.changes) + 1),
                             "event": event})
        return len(self.changes)

    def changes_since(self, cursor: int, limit: int) -> dict[str, Any]:
        page = self.changes[cursor:cursor + limit]
        return {"changes": page, "next_cursor": cursor + len(page),
                "more": cursor + len(page) < len(self.changes)}

    async def receive(self, key: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one delivery POST: (status, JSON answer)."""
        self.receipts += 1
        f = self.faults
        if f.slow_seconds > 0:
            await asyncio.sleep(f.slow_seconds)
        if self.clock() < f.fail_until:
            self.failed += 1
            return f.fail_status, {"error": "unavailable", "detail": "failing on purpose"}
        if f.reject_count > 0:
            f.reject_count -= 1
            self.rejected += 1
            return f.reject_status, {"error": "rejected", "detail": "rejecting on purpose"}
        if not key:
            self.rejected += 1
            return 400, {"error": "missing_idempotency_key",
                         "detail": "header Idempotency-Key is required"}
        if key in self.applied:
            self.duplicates += 1
            again = self.applied[key].receipt
            return 200, {"status": "duplicate", "key": key,
                         **({"receipt": again} if again else {})}
        try:
            data = json.loads(body)
        except ValueError:
            self.rejected += 1
            return 400, {"error": "malformed_json", "detail": "body is not JSON"}
        if not isinstance(data, dict):
            self.rejected += 1
            return 400, {"error": "not_an_object", "detail": "body must be a JSON object"}
        dossier = data.get("dossier") if isinstance(data.get("dossier"), str) else None
        receipt = self._receipt(key, data, dossier, body)
        self.applied[key] = Applied(key, data.get("kind"), dossier, data.get("event_id"), data,
                                    self.clock(), receipt)
        if dossier is not None:
            self.by_dossier.setdefault(dossier, []).append(key)
        return 200, {"status": "applied", "key": key, **({"receipt": receipt} if receipt else {})}

    def _receipt(self, key: str, data: dict[str, Any], dossier: str | None,
                 body: bytes) -> dict[str, str] | None:
        f = self.faults
        if self.signing_key is None or dossier is None or not isinstance(data.get("kind"), str):
            return None
        if f.unsigned_count > 0:
            f.unsigned_count -= 1
            return None
        signer = self.signing_key
        if f.forged_count > 0:
            f.forged_count -= 1
            signer = Ed25519PrivateKey.generate()
        return sign_receipt(signer, self.key_id, delivery_id=key, kind=data["kind"],
                            dossier=dossier, body=body, receiver=self.code,
                            received_at=self.wall())


class AgencyDoubles:
    """Every agency's inbox on one aiohttp app, under ``/agencies/{code}/...``."""

    def __init__(self, codes: list[str] | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 faults: dict[str, dict[str, Any]] | None = None,
                 open_registration: bool = True, sign_receipts: bool = True,
                 signing_keys: dict[str, tuple[str, Ed25519PrivateKey]] | None = None) -> None:
        self.clock = clock
        self.open_registration = open_registration  # unknown codes get an inbox on first use
        # Receipts are signed with the given (key id, key) of an agency, else its demo key.
        self.sign_receipts = sign_receipts
        self.signing_keys = dict(signing_keys or {})
        self.inboxes: dict[str, Inbox] = {}
        for code in codes or []:
            self.inbox(code)
        for code, spec in (faults or {}).items():
            self.inbox(code).set_faults(spec)

    def inbox(self, code: str) -> Inbox:
        box = self.inboxes.get(code)
        if box is None:
            key_id, key = self.signing_keys.get(code) or (DEMO_KEY_ID, demo_key(code))
            box = self.inboxes[code] = Inbox(
                code, clock=self.clock, key_id=key_id,
                signing_key=key if self.sign_receipts else None)
        return box

    def _find(self, request: web.Request) -> Inbox:
        code = request.match_info["code"]
        if code not in self.inboxes and not self.open_registration:
            raise web.HTTPNotFound(text=json.dumps({"error": "unknown_agency", "detail": code}),
                                   content_type="application/json")
        return self.inbox(code)

    async def post_inbox(self, request: web.Request) -> web.Response:
        box = self._find(request)
        status, answer = await box.receive(request.headers.get("Idempotency-Key"),
                                           await request.read())
        return web.json_response(answer, status=status)

    async def post_control(self, request: web.Request) -> web.Response:
        box = self._find(request)
        try:
            spec = await request.json()
            box.set_faults(spec if isinstance(spec, dict) else {})
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": "bad_control", "detail": str(exc)}, status=400)
        return web.json_response(box.stats())

    async def get_dossier(self, request: web.Request) -> web.Response:
        box = self._find(request)
        return web.json_response({"agency": box.code,
                                  "dossier": request.match_info["dossier"],
                                  "applied": box.dossier_order(request.match_info["dossier"])})

    async def get_changes(self, request: web.Request) -> web.Response:
        box = self._find(request)
        try:
            cursor = int(request.query.get("cursor", "0") or 0)
            limit = min(1000, int(request.query.get("limit", "100")))
        except ValueError:
            return web.json_response({"error": "bad_cursor",
                                      "detail": "cursor and limit are integers"}, status=400)
        if cursor < 0 or limit < 1:
            return web.json_response({"error": "bad_cursor",
                                      "detail": "cursor >= 0, limit >= 1"}, status=400)
        f = box.faults
        if box.clock() < f.fail_until:
            return web.json_response({"error": "unavailable"}, status=f.fail_status)
        return web.json_response(box.changes_since(cursor, limit))

    async def post_changes(self, request: web.Request) -> web.Response:
        """Control: append changes (``{"event": {...}, "change_id"?}`` or a list of them)."""
        box = self._find(request)
        data = await request.json()
        items = data if isinstance(data, list) else [data]
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("event"), dict):
                return web.json_response({"error": "bad_change",
                                          "detail": "each change is {event, change_id?}"},
                                         status=400)
            box.add_change(item["event"], item.get("change_id"))
        return web.json_response({"changes": len(box.changes)})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"agency": request.match_info["code"],
                                  **self._find(request).stats()})

    def stats(self) -> dict[str, Any]:
        return {code: box.stats() for code, box in sorted(self.inboxes.items())}

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/agencies/{code}/inbox", self.post_inbox)
        r.add_post("/agencies/{code}/control", self.post_control)
        r.add_get("/agencies/{code}/dossiers/{dossier}", self.get_dossier)
        r.add_get("/agencies/{code}/changes", self.get_changes)
        r.add_post("/agencies/{code}/changes", self.post_changes)
        r.add_get("/agencies/{code}/stats", self.get_stats)
