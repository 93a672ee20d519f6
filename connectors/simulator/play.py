"""Playing a plan through the gateway: each event POSTed by its own agency's system, signed
with that agency's key, at a chosen rate and (optionally) in accelerated time.

One dossier's events are sent one after another (each waits for the previous one's answer),
so they reach Kafka in order; different dossiers go concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

from lienthong.connectors.http import KeyRing, RequestSigner, RetryPolicy, make_async_client
from lienthong.services.clock import ScaledClock
from lienthong.services.domain.catalogue import Catalogue

#: The code the hub itself signs as (the delivery service's X-Agency).
HUB_AGENCY = "LIENTHONG"


def write_keys(catalogue: Catalogue, path: str | Path, *,
               extra: Iterable[str] = (HUB_AGENCY,), key_id: str | None = None) -> list[str]:
    """Write a keys file (JSON, mode 0600) with one fresh key per agency of the catalogue (and
    ``extra`` codes); returns the agency codes."""
    kid = key_id or time.strftime("%Y-%m")
    codes = sorted(set(catalogue.agencies) | set(extra))
    data = {c: [{"key_id": kid, "secret": secrets.token_urlsafe(32)}] for c in codes}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # secrets: owner only
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    return codes


@dataclass
class Progress:
    total: int
    sent: int = 0
    accepted: int = 0
    rejected: int = 0  # events refused by the gateway (4xx or a per-event rejection)
    errors: int = 0  # requests that failed after retries
    skipped: int = 0  # not sent: duration reached, or beyond the wall clock in paced mode
    dossiers: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    reasons: dict[str, int] = field(default_factory=dict)

    def rate(self) -> float:
        return self.sent / max(1e-9, time.monotonic() - self.started)

    def line(self, sim: datetime | None) -> str:
        at = f", sim time {sim:%Y-%m-%d %H:%M}" if sim is not None else ""
        return (f"simulate: {self.sent}/{self.total} events ({self.rate():.1f}/s), "
                f"{len(self.dossiers)} dossiers, accepted {self.accepted}, rejected "
                f"{self.rejected}, errors {self.errors}{at}")

    def to_json(self) -> dict[str, Any]:
        return {"events_planned": self.total, "sent": self.sent, "accepted": self.accepted,
                "rejected": self.rejected, "errors": self.errors, "not_sent": self.skipped,
                "dossiers": len(self.dossiers),
                "seconds": round(time.monotonic() - self.started, 3),
                "events_per_second": round(self.rate(), 2), "rejections": self.reasons}


class Player:
    def __init__(self, gateway_url: str, keys: KeyRing, *, rate: float | None = 20.0,
                 duration: float | None = None, clock: ScaledClock | None = None,
                 not_after: Callable[[], datetime] | None = None, concurrency: int = 32,
                 progress_to: TextIO | None = sys.stderr, progress_every: float = 1.0) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.keys = keys
        self.rate = rate if rate and rate > 0 else None
        self.duration = duration
        self.clock = clock
        self.not_after = not_after
        self.limit = asyncio.Semaphore(concurrency)
        self.progress_to = progress_to
        self.progress_every = progress_every
        self._clients: dict[str, httpx.AsyncClient] = {}

    def _client(self, agency: str) -> httpx.AsyncClient:
        c = self._clients.get(agency)
        if c is None:
            live = self.keys.live_keys(agency)
            if not live:
                raise KeyError(f"the keys file has no live key for agency {agency}")
            c = self._clients[agency] = make_async_client(
                self.gateway_url, signer=RequestSigner(agency, live[0].secret, live[0].key_id),
                retry=RetryPolicy(attempts=5, base_delay=0.2, max_delay=3.0),
                max_connections=8, headers={"User-Agent": "lienthong-simulate"})
        return c

    async def _send(self, event: dict[str, Any], previous: asyncio.Task[None] | None,
                    progress: Progress) -> None:
        if previous is not None:
            await asyncio.shield(previous)
        async with self.limit:
            body = json.dumps(event, ensure_ascii=False).encode("utf-8")
            try:
                response = await self._client(event["agency"]).post(
                    "/v1/events", content=body, headers={"Content-Type": "application/json"})
            except (httpx.HTTPError, KeyError) as exc:
                progress.errors += 1
                self._reason(progress, type(exc).__name__)
                return
        progress.sent += 1
        progress.dossiers.add(event["dossier"])
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code == 202:
            progress.accepted += len(answer.get("accepted", []))
            for r in answer.get("rejected", []):
                progress.rejected += 1
                self._reason(progress, str(r.get("reason")))
        else:
            progress.rejected += 1
            self._reason(progress, f"http_{response.status_code}:{answer.get('error')}")

    @staticmethod
    def _reason(progress: Progress, reason: str) -> None:
        progress.reasons[reason] = progress.reasons.get(reason, 0) + 1

    def _print(self, progress: Progress, end: str = "\r") -> None:
        if self.progress_to is not None:
            sim = self.clock.now() if self.clock is not None else None
            self.progress_to.write(progress.line(sim) + end)
            self.progress_to.flush()

    async def play(self, events: Sequence[dict[str, Any]]) -> Progress:
        progress = Progress(total=len(events))
        deadline = None if self.duration is None else time.monotonic() + self.duration
        last: dict[str, asyncio.Task[None]] = {}
        tasks: set[asyncio.Task[None]] = set()
        interval = 0.0 if self.rate is None else 1.0 / self.rate
        next_slot = time.monotonic()
        shown = time.monotonic()
        try:
            for n, event in enumerate(events):
                at = datetime.fromisoformat(event["at"])
                if self.not_after is not None and at > self.not_after():
                    progress.skipped += len(events) - n
                    break
                if self.clock is not None:
                    wait = self.clock.real_seconds_until(at)
                    while wait > 0:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            break
                        await asyncio.sleep(min(wait, self.progress_every, left or wait))
                        wait = self.clock.real_seconds_until(at)
                        if time.monotonic() - shown >= self.progress_every:
                            self._print(progress)
                            shown = time.monotonic()
                now = time.monotonic()
                if next_slot > now:
                    await asyncio.sleep(next_slot - now)
                if deadline is not None and time.monotonic() >= deadline:
                    progress.skipped += len(events) - n
                    break
                next_slot = max(next_slot + interval, time.monotonic() - 1.0)
                task = asyncio.create_task(self._send(event, last.get(event["dossier"]),
                                                      progress))
                last[event["dossier"]] = task
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if time.monotonic() - shown >= self.progress_every:
                    self._print(progress)
                    shown = time.monotonic()
            if tasks:
                await asyncio.gather(*list(tasks), return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
            for c in self._clients.values():
                with contextlib.suppress(Exception):
                    await c.aclose()
        self._print(progress, end="\n")
        return progress
