"""The channels behind one interface, :class:`Sender`: SMS (a brandname SMS gateway over
HTTP), Zalo OA (the Official Account transaction-message API) and e-mail (SMTP).

A sender makes one attempt and says what the provider answered (:class:`SendResult`); the
service decides about retries (``citizen.RetryRule``), so a rate-limited provider never blocks
other messages. Each attempt carries the message id as the provider's idempotency key.
"""

from __future__ import annotations

import asyncio
import smtplib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Protocol

import httpx

from lienthong.connectors.http import NO_RETRY, make_async_client
from lienthong.connectors.http.client import retry_after_seconds
from lienthong.connectors.notify.service import SmtpSettings, send_mail
from lienthong.services.domain.citizen import Outcome, classify_http


@dataclass(frozen=True)
class Outgoing:
    """What a sender needs of a message."""

    message_id: str
    channel: str
    address: str
    subject: str
    text: str


@dataclass(frozen=True)
class SendResult:
    """The provider's answer to one attempt."""

    outcome: Outcome
    provider_id: str | None = None
    retry_after: float | None = None
    detail: str = ""
    throttled: bool = False         # over the provider's rate: not a failure of this message


@dataclass(frozen=True)
class DeliveryStatus:
    """A polled delivery report: None while the provider does not know yet."""

    delivered: bool | None
    detail: str = ""


class Sender(Protocol):
    """One channel. ``send`` makes one attempt; it never raises for the provider's answers."""

    channel: str

    async def send(self, message: Outgoing) -> SendResult: ...

    async def close(self) -> None: ...


def _http_failure(exc: Exception) -> SendResult:
    return SendResult("retry", detail=f"{type(exc).__name__}: {exc}"[:200])


class SmsSender:
    """A brandname SMS gateway: ``POST {base}/v1/sms`` with a bearer token.

    Body ``{"to", "text", "brandname", "ref", "callback_url"}``, header ``Idempotency-Key``
    (the message id); answer 200/202 ``{"id", "status"}``; 429 with ``Retry-After`` when over
    the account's rate; delivery reports are POSTed to ``callback_url``.
    """

    channel = "sms"

    def __init__(self, base_url: str, token: str, brandname: str, *,
                 callback_url: str | None = None, timeout: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self.brandname, self.callback_url = brandname, callback_url
        self.client = client or make_async_client(
            base_url, retry=NO_RETRY, timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "lienthong-citizen"})

    async def send(self, message: Outgoing) -> SendResult:
        body: dict[str, Any] = {"to": message.address, "text": message.text,
                                "brandname": self.brandname, "ref": message.message_id}
        if self.callback_url:
            body["callback_url"] = self.callback_url
        try:
            r = await self.client.post("/v1/sms", json=body,
                                       headers={"Idempotency-Key": message.message_id})
        except httpx.HTTPError as exc:
            return _http_failure(exc)
        outcome = classify_http(r.status_code)
        if outcome != "accepted":
            return SendResult(outcome, retry_after=retry_after_seconds(r, 300.0),
                              detail=f"HTTP {r.status_code} {r.text[:120]}",
                              throttled=r.status_code == 429)
        try:
            provider_id = str(r.json()["id"])
        except (ValueError, KeyError, TypeError):
            return SendResult("retry", detail=f"HTTP {r.status_code} without a message id")
        return SendResult("accepted", provider_id)

    async def close(self) -> None:
        await self.client.aclose()


# Zalo answers HTTP 200 with an ``error`` code; these mean "not now" rather than "never".
ZALO_RETRY_ERRORS = frozenset({-32, -124, -201, -211})  # rate limit, token, quota, busy


class ZaloSender:
    """Zalo OA transaction messages to a follower's user id.

    ``POST {base}/v3.0/oa/message/transaction`` with header ``access_token`` and body
    ``{"recipient": {"user_id"}, "message": {"text"}, "tracking_id"}`` (the message id); answer
    ``{"error": 0, "data": {"message_id"}}`` or a negative ``error`` (``-32``: over the rate
    limit). Delivery is polled: ``GET {base}/v3.0/oa/message/status?message_id=``.
    """

    channel = "zalo"

    def __init__(self, base_url: str, access_token: str, *, timeout: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self.client = client or make_async_client(
            base_url, retry=NO_RETRY, timeout=timeout,
            headers={"access_token": access_token, "User-Agent": "lienthong-citizen"})

    async def send(self, message: Outgoing) -> SendResult:
        body = {"recipient": {"user_id": message.address}, "message": {"text": message.text},
                "tracking_id": message.message_id}
        try:
            r = await self.client.post("/v3.0/oa/message/transaction", json=body)
        except httpx.HTTPError as exc:
            return _http_failure(exc)
        outcome = classify_http(r.status_code)
        if outcome != "accepted":
            return SendResult(outcome, retry_after=retry_after_seconds(r, 300.0),
                              detail=f"HTTP {r.status_code}", throttled=r.status_code == 429)
        try:
            answer = r.json()
            error = int(answer.get("error", 0))
        except (ValueError, TypeError, AttributeError):
            return SendResult("retry", detail="answer is not Zalo JSON")
        if error == 0:
            return SendResult("accepted", str(answer["data"]["message_id"]))
        detail = f"zalo error {error}: {answer.get('message', '')}"[:200]
        if error in ZALO_RETRY_ERRORS:
            return SendResult("retry", retry_after=1.0 if error == -32 else None, detail=detail,
                              throttled=error == -32)
        return SendResult("rejected", detail=detail)

    async def status(self, provider_id: str) -> DeliveryStatus:
        """The delivery status of a message the OA sent."""
        try:
            r = await self.client.get("/v3.0/oa/message/status",
                                      params={"message_id": provider_id})
            answer = r.json()
        except (httpx.HTTPError, ValueError):
            return DeliveryStatus(None)
        if not r.is_success or not isinstance(answer, dict) or answer.get("error") != 0:
            return DeliveryStatus(None)
        status = str((answer.get("data") or {}).get("status", ""))
        if status in ("delivered", "seen"):
            return DeliveryStatus(True, status)
        if status == "failed":
            return DeliveryStatus(False, status)
        return DeliveryStatus(None, status)

    async def close(self) -> None:
        await self.client.aclose()


class EmailSender:
    """Plain-text UTF-8 mail through the data centre's relay (``smtplib``, in a thread).

    The ``Message-ID`` is made of the message id, so a repeat after a crash is the same
    message to the mailbox. A 4xx SMTP answer or a lost connection is tried again; 5xx refused.
    """

    channel = "email"

    def __init__(self, smtp: SmtpSettings, *, reply_to: str | None = None,
                 connections: int = 4) -> None:
        self.smtp, self.reply_to = smtp, reply_to
        # Its own threads: a slow relay never takes the threads the store's calls use.
        self._pool = ThreadPoolExecutor(connections, thread_name_prefix="citizen-smtp")

    def message(self, m: Outgoing) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.smtp.sender
        msg["To"] = m.address
        msg["Subject"] = m.subject
        msg["Date"] = format_datetime(datetime.now().astimezone())
        msg["Message-ID"] = f"<{m.message_id}@lienthong>"
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        msg.set_content(m.text + "\n", charset="utf-8")
        return msg

    async def send(self, message: Outgoing) -> SendResult:
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, send_mail, self.smtp,
                                                             self.message(message))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            permanent = all(code >= 500 for code in codes)
            return SendResult("rejected" if permanent else "retry", detail=f"SMTP {codes}")
        except smtplib.SMTPResponseException as exc:
            return SendResult("rejected" if exc.smtp_code >= 500 else "retry",
                              detail=f"SMTP {exc.smtp_code}")
        except (OSError, smtplib.SMTPException) as exc:
            return SendResult("retry", detail=f"{type(exc).__name__}: {exc}"[:200])
        return SendResult("accepted", message.message_id)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
