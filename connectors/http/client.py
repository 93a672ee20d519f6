"""The one HTTP client factory for calls the hub makes: timeouts, retry with exponential
backoff and full jitter, and optional request signing.

Retry lives in the transport so every caller gets it; signing lives there too, because each
attempt must carry a fresh timestamp and nonce (a retried request with the first attempt's
nonce would be refused as a replay).

    async with make_async_client("http://agency.example", signer=RequestSigner(agency, key)) as c:
        response = await c.post("/v1/events", content=body)
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from lienthong.connectors.http.signing import HEADER_KEY_ID, signed_headers

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base*2**n))."""

    attempts: int = 5  # total tries, the first included
    base_delay: float = 0.2
    max_delay: float = 10.0
    retry_statuses: frozenset[int] = RETRY_STATUSES
    # Every hub endpoint is idempotent (event ids, Idempotency-Key), so POST is retried too.
    retry_methods: frozenset[str] = field(
        default_factory=lambda: frozenset({"GET", "HEAD", "PUT", "DELETE", "POST", "OPTIONS"})
    )

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The pause before each retry (``attempts - 1`` values)."""
        draw = (rng or random).uniform
        for n in range(self.attempts - 1):
            yield draw(0.0, min(self.max_delay, self.base_delay * (2**n)))


NO_RETRY = RetryPolicy(attempts=1)


def retry_after_seconds(response: httpx.Response, cap: float) -> float | None:
    """A server's ``Retry-After`` (seconds or HTTP date), capped; None if absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return min(cap, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(cap, max(0.0, when.timestamp() - time.time()))


@dataclass(frozen=True)
class RequestSigner:
    """Signs each attempt as ``agency`` with ``key`` (fresh timestamp and nonce each time)."""

    agency: str
    key: str | bytes
    key_id: str | None = None

    def apply(self, request: httpx.Request) -> None:
        body = request.read()
        path = request.url.raw_path.decode("ascii")
        headers = signed_headers(self.agency, self.key, request.method, path, body)
        if self.key_id:
            headers[HEADER_KEY_ID] = self.key_id
        request.headers.update(headers)


class _Retrying:
    def __init__(self, policy: RetryPolicy, signer: RequestSigner | None,
                 rng: random.Random | None) -> None:
        self.policy, self.signer, self.rng = policy, signer, rng

    def _retriable(self, request: httpx.Request) -> bool:
        return request.method in self.policy.retry_methods

    def _pause(self, delay: float, response: httpx.Response | None) -> float:
        if response is not None:
            hinted = retry_after_seconds(response, self.policy.max_delay)
            if hinted is not None:
                return hinted
        return delay


class AsyncRetryTransport(_Retrying, httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, policy: RetryPolicy = NO_RETRY,
                 signer: RequestSigner | None = None, rng: random.Random | None = None) -> None:
        super().__init__(policy, signer, rng)
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        delays = self.policy.delays(self.rng) if self._retriable(request) else iter(())
        while True:
            if self.signer is not None:
                self.signer.apply(request)
            try:
                response = await self.inner.handle_async_request(request)
            except httpx.TransportError as exc:
                delay = next(delays, None)
                if delay is None:
                    raise exc
                await asyncio.sleep(delay)
                continue
            if response.status_code in self.policy.retry_statuses:
                delay = next(delays, None)
                if delay is not None:
                    await response.aclose()
                    await asyncio.sleep(self._pause(delay, response))
                    continue
            return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class RetryTransport(_Retrying, httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, policy: RetryPolicy = NO_RETRY,
                 signer: RequestSigner | None = None, rng: random.Random | None = None) -> None:
        super().__init__(policy, signer, rng)
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        delays = self.policy.delays(self.rng) if self._retriable(request) else iter(())
        while True:
            if self.signer is not None:
                self.signer.apply(request)
            try:
                response = self.inner.handle_request(request)
            except httpx.TransportError:
                delay = next(delays, None)
                if delay is None:
                    raise
                time.sleep(delay)
                continue
            if response.status_code in self.policy.retry_statuses:
                delay = next(delays, None)
                if delay is not None:
                    response.close()
                    time.sleep(self._pause(delay, response))
                    continue
            return response

    def close(self) -> None:
        self.inner.close()


DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


def make_async_client(
    base_url: str = "",
    *,
    retry: RetryPolicy = RetryPolicy(),
    signer: RequestSigner | None = None,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    headers: dict[str, str] | None = None,
    max_connections: int = 100,
    rng: random.Random | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with timeouts, retry and optional signing."""
    inner = transport or httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=max_connections))
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        headers=headers,
        transport=AsyncRetryTransport(inner, retry, signer, rng),
    )


def make_client(
    base_url: str = "",
    *,
    retry: RetryPolicy = RetryPolicy(),
    signer: RequestSigner | None = None,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    headers: dict[str, str] | None = None,
    rng: random.Random | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The blocking twin of :func:`make_async_client` (for kafka-python shells)."""
    inner = transport or httpx.HTTPTransport()
    return httpx.Client(
        base_url=base_url,
        timeout=timeout,
        headers=headers,
        transport=RetryTransport(inner, retry, signer, rng),
    )
