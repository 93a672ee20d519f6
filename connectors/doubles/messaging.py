"""Doubles of the citizen-messaging providers: a brandname SMS gateway and the Zalo OA API, real
aiohttp servers on 127.0.0.1 that behave like the real ones where it matters to the hub.

Both keep every message they took, keyed by the caller's idempotency key (SMS
``Idempotency-Key``, Zalo ``tracking_id``): a repeat is answered with the first answer and is
not sent again, and ``requests`` counts every attempt so tests see repeats on the wire.

SMS (``SmsDouble``, routes under ``/v1``):

- ``POST /v1/sms`` ``{"to", "text", "brandname", "ref", "callback_url"?}`` with ``Authorization:
  Bearer TOKEN``: 202 ``{"id", "status": "accepted"}``; 401 for a wrong token; 400 for a number
  that is not Vietnamese; 429 with ``Retry-After: 1`` over ``rate_per_second``; 503 for each of
  the next ``fail_next`` requests (a transient outage); ``answer_delay`` seconds pass between
  taking a message and answering (a caller killed then never learns it was taken).
  ``report_after`` seconds later a delivery report ``{"id", "ref", "to", "status":
  "DELIVERED" | "FAILED", "at"}`` is POSTed to the message's ``callback_url``
  (``undeliverable`` numbers fail).
- ``POST /v1/control`` ``{"fail_next"?, "rate_per_second"?, "report_after"?}``; ``GET
  /v1/messages``: everything taken; ``POST /v1/control/reply`` ``{"from", "text"}``: a citizen's
  reply (MO), POSTed to ``mo_url`` like the real gateway's inbound webhook.

Zalo (``ZaloDouble``, routes under ``/v3.0/oa``): ``POST /v3.0/oa/message/transaction`` with
header ``access_token``: HTTP 200 ``{"error": 0, "data": {"message_id", "user_id"}}``, or
``{"error": -32, "message": "exceed rate limit"}`` over the rate, ``-213`` for a user who does not
follow the OA, ``-124`` for a wrong token; 502 for each of ``fail_next``. ``GET
/v3.0/oa/message/status?message_id=`` answers ``sent`` until ``report_after`` seconds passed,
then ``delivered``. ``POST /v3.0/oa/control`` as for SMS; ``POST /v3.0/oa/control/unfollow``
``{"user_id"}`` sends the OA's ``unfollow`` event to ``webhook_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiohttp import web

from lienthong.connectors.http import RetryPolicy, make_async_client

log = logging.getLogger(__name__)

_VN_MOBILE = re.compile(r"^84\d{9}$")


@dataclass
class Taken:
    """One message a provider took."""

    provider_id: str
    key: str
    to: str
    text: str
    at: float
    callback_url: str | None = None
    status: str = "accepted"


@dataclass
class _Provider:
    token: str
    rate_per_second: float = 50.0
    fail_next: int = 0
    report_after: float = 0.2
    undeliverable: set[str] = field(default_factory=set)
    taken: dict[str, Taken] = field(default_factory=dict)       # by idempotency key
    by_id: dict[str, Taken] = field(default_factory=dict)
    requests: int = 0
    answered: dict[int, int] = field(default_factory=dict)      # HTTP status -> count
    repeats: int = 0                  # requests for a key already taken (answered as before)
    answer_delay: float = 0.0         # seconds between taking a message and answering
    _window: deque[float] = field(default_factory=deque)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _client: httpx.AsyncClient | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def over_rate(self) -> bool:
        now = time.monotonic()
        while self._window and now - self._window[0] >= 1.0:
            self._window.popleft()
        if len(self._window) >= self.rate_per_second:
            return True
        self._window.append(now)
        return False

    def count(self, status: int) -> None:
        self.answered[status] = self.answered.get(status, 0) + 1

    def take(self, key: str, to: str, text: str, callback_url: str | None) -> Taken:
        t = Taken(uuid.uuid4().hex, key, to, text, time.time(), callback_url)
        self.taken[key] = t
        self.by_id[t.provider_id] = t
        self.arrived.set()
        self.arrived = asyncio.Event()
        return t

    def control(self, body: dict[str, Any]) -> dict[str, Any]:
        for name in ("fail_next", "rate_per_second", "report_after", "answer_delay"):
            if name in body:
                setattr(self, name, type(getattr(self, name))(body[name]))
        if "undeliverable" in body:
            self.undeliverable = set(body["undeliverable"])
        return {"fail_next": self.fail_next, "rate_per_second": self.rate_per_second,
                "report_after": self.report_after}

    def listing(self) -> dict[str, Any]:
        return {"requests": self.requests, "answered": self.answered, "repeats": self.repeats,
                "messages": [{"id": t.provider_id, "key": t.key, "to": t.to, "text": t.text,
                              "status": t.status, "at": t.at} for t in self.taken.values()]}

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Taken]:
        deadline = time.monotonic() + timeout
        while len(self.taken) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.taken)} of {count} messages arrived")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)
        return list(self.taken.values())

    def client(self) -> httpx.AsyncClient:
        """One client for every webhook this double calls (a client per call costs a TLS
        context each time)."""
        if self._client is None:
            self._client = _client()
        return self._client

    def later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _client() -> httpx.AsyncClient:
    return make_async_client(retry=RetryPolicy(attempts=3, base_delay=0.2), timeout=5.0)


class SmsDouble(_Provider):
    """A brandname SMS gateway (see the module's docstring)."""

    def __init__(self, token: str = "sms-token", *, mo_url: str | None = None,
                 **options: Any) -> None:
        super().__init__(token, **options)
        self.mo_url = mo_url
        self.reports_sent: list[dict[str, Any]] = []

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/sms", self._send)
        app.router.add_get("/v1/messages", self._messages)
        app.router.add_post("/v1/control", self._control)
        app.router.add_post("/v1/control/reply", self._reply)
        app.on_cleanup.append(lambda _: self.stop())
        return app

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.count(401)
            return web.json_response({"error": "invalid_token"}, status=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            self.count(503)
            return web.json_response({"error": "temporarily_unavailable"}, status=503)
        if self.over_rate():
            self.count(429)
            return web.json_response({"error": "rate_limited"}, status=429,
                                     headers={"Retry-After": "1"})
        try:
            body = await request.json()
            to, text = str(body["to"]), str(body["text"])
        except (ValueError, KeyError, TypeError):
            self.count(400)
            return web.json_response({"error": "bad_request"}, status=400)
        if not _VN_MOBILE.match(to):
            self.count(400)
            return web.json_response({"error": "invalid_number", "to": to}, status=400)
        key = request.headers.get("Idempotency-Key") or str(body.get("ref") or uuid.uuid4())
        t = self.taken.get(key)
        if t is None:
            t = self.take(key, to, text, body.get("callback_url"))
            if t.callback_url:
                self.later(self._report(t))
        else:
            self.repeats += 1
        if self.answer_delay:         # a slow answer: the caller may die before it reads it
            await asyncio.sleep(self.answer_delay)
        self.count(202)
        return web.json_response({"id": t.provider_id, "status": "accepted"}, status=202)

    async def _report(self, t: Taken) -> None:
        await asyncio.sleep(self.report_after)
        t.status = "FAILED" if t.to in self.undeliverable else "DELIVERED"
        report = {"id": t.provider_id, "ref": t.key, "to": t.to, "status": t.status,
                  "at": datetime.now(UTC).isoformat()}
        try:
            await self.client().post(str(t.callback_url), json=report)
            self.reports_sent.append(report)
        except httpx.HTTPError as exc:
            log.warning("sms double: delivery report to %s failed: %s", t.callback_url, exc)

    async def _messages(self, request: web.Request) -> web.Response:
        return web.json_response(self.listing())

    async def _control(self, request: web.Request) -> web.Response:
        return web.json_response(self.control(await request.json()))

    async def _reply(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not self.mo_url:
            return web.json_response({"error": "no mo_url"}, status=409)
        async with _client() as client:
            r = await client.post(self.mo_url, json={"from": body["from"], "text": body["text"],
                                                     "at": datetime.now(UTC).isoformat()})
        return web.json_response({"forwarded": r.status_code})

    async def reply(self, sender: str, text: str) -> int:
        """A citizen's reply, forwarded to ``mo_url`` (the inbound webhook); its HTTP status."""
        assert self.mo_url, "no mo_url"
        async with _client() as client:
            r = await client.post(self.mo_url, json={"from": sender, "text": text,
                                                     "at": datetime.now(UTC).isoformat()})
        return r.status_code


class ZaloDouble(_Provider):
    """The Zalo OA message API (see the module's docstring)."""

    def __init__(self, token: str = "zalo-token", *, followers: set[str] | None = None,
                 webhook_url: str | None = None, **options: Any) -> None:
        super().__init__(token, **options)
        self.followers = followers      # None: everyone follows the OA
        self.webhook_url = webhook_url

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3.0/oa/message/transaction", self._send)
        app.router.add_get("/v3.0/oa/message/status", self._status)
        app.router.add_get("/v3.0/oa/messages", self._messages)
        app.router.add_post("/v3.0/oa/control", self._control)
        app.router.add_post("/v3.0/oa/control/unfollow", self._unfollow)
        app.on_cleanup.append(lambda _: self.stop())
        return app

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            self.count(502)
            return web.Response(status=502, text="Bad Gateway")
        self.count(200)
        if request.headers.get("access_token") != self.token:
            return web.json_response({"error": -124, "message": "access token is invalid"})
        if self.over_rate():
            return web.json_response({"error": -32, "message": "exceed rate limit"})
        try:
            body = await request.json()
            user = str(body["recipient"]["user_id"])
            text = str(body["message"]["text"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": -201, "message": "parameter is invalid"})
        if self.followers is not None and user not in self.followers:
            return web.json_response({"error": -213,
                                      "message": "user has not followed the OA"})
        key = str(body.get("tracking_id") or uuid.uuid4())
        t = self.taken.get(key)
        if t is None:
            t = self.take(key, user, text, None)
        else:
            self.repeats += 1
        return web.json_response({"error": 0, "message": "Success",
                                  "data": {"message_id": t.provider_id, "user_id": user}})

    async def _status(self, request: web.Request) -> web.Response:
        t = self.by_id.get(request.query.get("message_id", ""))
        if t is None:
            return web.json_response({"error": -201, "message": "message not found"})
        status = "sent" if time.time() - t.at < self.report_after else (
            "failed" if t.to in self.undeliverable else "delivered")
        t.status = status
        return web.json_response({"error": 0, "data": {"message_id": t.provider_id,
                                                       "status": status}})

    async def _messages(self, request: web.Request) -> web.Response:
        return web.json_response(self.listing())

    async def _control(self, request: web.Request) -> web.Response:
        return web.json_response(self.control(await request.json()))

    async def _unfollow(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"forwarded": await self.unfollow(str(body["user_id"]))})

    async def unfollow(self, user_id: str) -> int:
        """The follower left the OA: the OA's ``unfollow`` event to ``webhook_url``."""
        assert self.webhook_url, "no webhook_url"
        if self.followers is not None:
            self.followers.discard(user_id)
        async with _client() as client:
            r = await client.post(self.webhook_url, json={
                "event_name": "unfollow", "follower": {"id": user_id},
                "timestamp": str(int(time.time() * 1000))})
        return r.status_code
