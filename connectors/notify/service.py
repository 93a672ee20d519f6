"""The notify shell: reads ``alerts`` and ``dossier.status`` (through the dashboard's feed),
sends each alert to the agency responsible by webhook and/or e-mail, and a daily digest per
agency at a set local time.

Each notice is sent at least once and, as far as the sent log can tell, at most once: its key
(the alert id, or ``digest:<agency>:<day>``) is appended to the sent log after it went out on
every channel of its contact, and keys in the log are never sent again (restarts included).
Webhook posts carry the key as ``Idempotency-Key`` so a receiver can drop the rare repeat (a
crash between sending and logging).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import httpx

from lienthong.connectors.http import RetryPolicy, make_async_client
from lienthong.connectors.notify.routing import AlertRouter, Notice
from lienthong.services.ops.board import AlertRecord, OpsBoard
from lienthong.services.ops.feed import FeedTopics, StatusFeed

log = logging.getLogger(__name__)

# About two minutes of tries per channel before a notice is given up (and logged).
NOTICE_RETRY = RetryPolicy(attempts=6, base_delay=1.0, max_delay=60.0)


class SentLog:
    """Keys of the notices sent, one a line, appended and flushed after each success."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.keys: list[str] = []

    def load(self, keep: int = 200_000) -> list[str]:
        if self.path is None or not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        self.keys = [k for k in lines[-keep:] if k]
        return self.keys

    def add(self, key: str) -> None:
        self.keys.append(key)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (key.replace("\n", " ") + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


# -- channels --------------------------------------------------------------------------------

class WebhookSender:
    """POSTs the notice's JSON payload; any 2xx is success."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        # One retry layer: the dispatcher's. The shared factory still brings timeouts.
        self.client = client or make_async_client(retry=RetryPolicy(attempts=1), timeout=10.0)

    async def send(self, url: str, notice: Notice) -> None:
        response = await self.client.post(url, json=dict(notice.payload), headers={
            "Idempotency-Key": notice.key, "User-Agent": "lienthong-notify"})
        if not response.is_success:
            raise RuntimeError(f"webhook {url} answered HTTP {response.status_code}")

    async def close(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True)
class SmtpSettings:
    """The relay the notices are mailed through (the data centre's own, usually port 25)."""

    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "lienthong@localhost"
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 15.0


def send_mail(s: SmtpSettings, msg: EmailMessage) -> None:
    """One SMTP session through the relay (blocking: run it in a thread)."""
    with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as client:
        if s.starttls:
            client.starttls(context=ssl.create_default_context())
        if s.username:
            client.login(s.username, s.password or "")
        client.send_message(msg)


class MailSender:
    """Sends plain-text UTF-8 mail with the standard library's ``smtplib`` (in a thread)."""

    def __init__(self, smtp: SmtpSettings) -> None:
        self.smtp = smtp

    def message(self, to: str, notice: Notice) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.smtp.sender
        msg["To"] = to
        msg["Subject"] = notice.subject
        msg["Date"] = format_datetime(datetime.now().astimezone())
        msg["Message-ID"] = make_msgid(idstring=notice.key.replace(":", ".")[:60],
                                       domain="lienthong")
        msg["X-Lienthong-Key"] = notice.key
        msg["X-Lienthong-Agency"] = notice.agency
        msg.set_content(notice.text, charset="utf-8")
        return msg

    def _send(self, msg: EmailMessage) -> None:
        send_mail(self.smtp, msg)

    async def send(self, to: str, notice: Notice) -> None:
        await asyncio.to_thread(self._send, self.message(to, notice))


class Dispatcher:
    """Sends a notice on each channel of its contact, each retried with backoff until it went
    out; a channel that went out is not sent again for the same notice."""

    def __init__(self, webhook: WebhookSender | None, mail: MailSender | None, *,
                 retry: RetryPolicy = NOTICE_RETRY) -> None:
        self.webhook, self.mail, self.retry = webhook, mail, retry
        self.counts: dict[tuple[str, str], int] = {}

    def _count(self, channel: str, result: str) -> None:
        self.counts[(channel, result)] = self.counts.get((channel, result), 0) + 1

    async def _with_retry(self, channel: str, send: Callable[[], Awaitable[None]],
                          notice: Notice) -> bool:
        delays = iter(self.retry.delays())
        while True:
            try:
                await send()
                self._count(channel, "sent")
                return True
            except (OSError, smtplib.SMTPException, httpx.HTTPError, RuntimeError) as exc:
                delay = next(delays, None)
                if delay is None:
                    log.error("notify: %s of %s to %s failed: %s", channel, notice.key,
                              notice.contact.agency, exc)
                    self._count(channel, "failed")
                    return False
                log.warning("notify: %s of %s failed (%s); again in %.1f s", channel,
                            notice.key, exc, delay)
                self._count(channel, "retried")
                await asyncio.sleep(delay)

    async def deliver(self, notice: Notice) -> bool:
        """True once every channel of the contact took the notice."""
        c = notice.contact
        ok = True
        webhook, mail = self.webhook, self.mail
        if c.webhook and webhook is not None:
            url = c.webhook
            ok &= await self._with_retry("webhook", lambda: webhook.send(url, notice), notice)
        if c.email and mail is not None:
            to = c.email
            ok &= await self._with_retry("email", lambda: mail.send(to, notice), notice)
        return ok


# -- the service -----------------------------------------------------------------------------

class NotifyService:
    """Routes alerts as they arrive and sends the daily digest at ``digest_at`` local time.

    ``digest_days``: ``working`` (days the catalogue's calendar opens) or ``all``. A service
    started up to ``catch_up`` after today's digest time sends today's digest then.
    """

    def __init__(self, router: AlertRouter, dispatcher: Dispatcher, sent: SentLog,
                 clock: Callable[[], datetime], *, digest_at: time | None = time(7, 30),
                 digest_days: str = "working", include_empty: bool = False,
                 catch_up: timedelta = timedelta(hours=2), senders: int = 4) -> None:
        self.router = router
        self.dispatcher = dispatcher
        self.sent = sent
        self.clock = clock
        self.digest_at = digest_at
        self.digest_days = digest_days
        self.include_empty = include_empty
        self.catch_up = catch_up
        self.senders = senders
        self.board = OpsBoard(router.catalogue)
        self.queue: asyncio.Queue[AlertRecord] = asyncio.Queue()
        self.ready = asyncio.Event()
        for key in sent.load():
            router.remember_key(key)

    # alerts ----------------------------------------------------------------------------------

    def on_alert(self, alert: AlertRecord) -> None:
        """The feed's hook: called once per new alert id, from the event loop."""
        self.queue.put_nowait(alert)

    async def handle(self, alert: AlertRecord) -> Notice | None:
        notice = self.router.route(alert, self.clock())
        if notice is None:
            return None
        await self._deliver(notice)
        return notice

    async def _deliver(self, notice: Notice) -> bool:
        if await self.dispatcher.deliver(notice):
            self.sent.add(notice.key)
            return True
        self.router.forget_key(notice.key)
        return False

    async def _sender(self) -> None:
        while True:
            alert = await self.queue.get()
            try:
                await self.handle(alert)
            except Exception:  # one bad notice never stops the sender
                log.exception("notify: alert %s", alert.alert_id)
            finally:
                self.queue.task_done()

    # digests ---------------------------------------------------------------------------------

    def _digest_day(self, d: date) -> bool:
        return self.digest_days == "all" or self.router.catalogue.calendar.is_working_day(d)

    def next_digest(self, now: datetime, grace: timedelta = timedelta(0)) -> datetime:
        """The next digest instant: today's if it is still ahead (or passed less than ``grace``
        ago), else the next digest day's."""
        assert self.digest_at is not None
        tz = self.router.catalogue.calendar.tz
        d = now.astimezone(tz).date()
        for _ in range(400):
            slot = datetime.combine(d, self.digest_at, tzinfo=tz)
            if slot + grace > now and self._digest_day(d):
                return slot
            d += timedelta(days=1)
        raise RuntimeError("no digest day within a year")

    async def send_digests(self, now: datetime) -> list[Notice]:
        """Send today's digest to every contact that has not had it yet; what was sent."""
        sent: list[Notice] = []
        for notice in self.router.digests(self.board, now, include_empty=self.include_empty):
            if self.router.seen(notice.key):
                continue
            self.router.remember_key(notice.key)
            if await self._deliver(notice):
                sent.append(notice)
        return sent

    async def _digests(self) -> None:
        if self.digest_at is None:
            return
        await self.ready.wait()
        grace = self.catch_up
        while True:
            slot = self.next_digest(self.clock(), grace)
            grace = timedelta(0)
            # Short sleeps: the clock may be scaled (demo time) or the host may have slept.
            while (left := (slot - self.clock()).total_seconds()) > 0:
                await asyncio.sleep(min(30.0, left))
            sent = await self.send_digests(self.clock())
            log.info("notify: digest of %s sent to %d contacts", slot.date(), len(sent))
            while self.clock() < slot + timedelta(seconds=1):
                await asyncio.sleep(0.5)

    # running ---------------------------------------------------------------------------------

    async def run(self, bootstrap: str, topics: FeedTopics) -> None:
        """Until cancelled: read the topics, send alerts, send digests."""
        feed = StatusFeed(bootstrap, self.board, topics, notify=lambda change: None,
                          on_alert=self.on_alert)
        tasks = [asyncio.create_task(feed.run(), name="notify-feed"),
                 asyncio.create_task(self._mark_ready(feed), name="notify-ready"),
                 asyncio.create_task(self._digests(), name="notify-digest")]
        tasks += [asyncio.create_task(self._sender(), name=f"notify-send-{i}")
                  for i in range(self.senders)]
        try:
            done, _ = await asyncio.wait({tasks[0], tasks[2]},
                                         return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await feed.close()

    async def _mark_ready(self, feed: StatusFeed) -> None:
        await feed.ready.wait()
        self.ready.set()
        log.info("notify: caught up with %d dossiers", len(self.board))
