"""Checking a signed request (DESIGN section 7), with a machine-readable reason on refusal.

Checks run cheapest first and the nonce is recorded only once the signature is valid, so a
forger cannot burn an agency's nonces.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from lienthong.connectors.http.keys import AgencyKey, KeyRing
from lienthong.connectors.http.nonces import NonceCache, NonceStore
from lienthong.connectors.http.signing import (
    HEADER_AGENCY,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    MIN_NONCE_LENGTH,
    sign_request,
)

CLOCK_SKEW_SECONDS = 300
MAX_NONCE_LENGTH = 128


class AuthFailure(Exception):
    """A refused request. ``reason`` is a stable code a client can act on."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Verified:
    agency: str
    key_id: str
    nonce: str = ""
    timestamp: int = 0


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None or value == "":
        raise AuthFailure("missing_header", f"header {name} is required")
    return value


def _matches(key: AgencyKey, signature: str, method: str, path: str, timestamp: str,
             nonce: str, body: bytes) -> bool:
    expected = sign_request(key.secret, method, path, timestamp, nonce, body)
    return hmac.compare_digest(expected, signature)


def verify_request(
    keyring: KeyRing,
    nonces: NonceCache,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    skew_seconds: float = CLOCK_SKEW_SECONDS,
) -> Verified:
    """Return who signed the request, or raise :class:`AuthFailure`.

    Reasons: ``missing_header``, ``bad_timestamp``, ``stale_timestamp``, ``future_timestamp``,
    ``bad_nonce``, ``unknown_agency``, ``revoked_key``, ``bad_signature``, ``replayed_nonce``.
    ``NonceCacheFull`` propagates (a server-side condition, not the caller's fault).
    """
    now = time.time() if now is None else now
    who = verify_signature(keyring, method, path, headers, body, now=now,
                           skew_seconds=skew_seconds)
    if not nonces.check_and_remember(who.agency, who.nonce, who.timestamp, now):
        raise AuthFailure("replayed_nonce", "this nonce was already used")
    return who


async def verify_and_claim(
    keyring: KeyRing,
    nonces: NonceStore,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    skew_seconds: float = CLOCK_SKEW_SECONDS,
) -> Verified:
    """:func:`verify_request` against a nonce store that may be shared by several gateways
    (its claim can wait on Kafka, so it is awaited)."""
    now = time.time() if now is None else now
    who = verify_signature(keyring, method, path, headers, body, now=now,
                           skew_seconds=skew_seconds)
    if not await nonces.claim(who.agency, who.nonce, who.timestamp, now):
        raise AuthFailure("replayed_nonce", "this nonce was already used")
    return who


def verify_signature(
    keyring: KeyRing,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    skew_seconds: float = CLOCK_SKEW_SECONDS,
) -> Verified:
    """Every check but the nonce's freshness: headers, timestamp window, signature.

    The caller then claims the nonce (only a validly signed request may burn one).
    """
    now = time.time() if now is None else now
    agency = _header(headers, HEADER_AGENCY)
    raw_ts = _header(headers, HEADER_TIMESTAMP)
    nonce = _header(headers, HEADER_NONCE)
    signature = _header(headers, HEADER_SIGNATURE).strip().lower()

    if not raw_ts.isascii() or not raw_ts.isdigit() or len(raw_ts) > 12:
        raise AuthFailure("bad_timestamp", f"{HEADER_TIMESTAMP} must be Unix seconds (digits)")
    ts = int(raw_ts)
    if ts < now - skew_seconds:
        raise AuthFailure("stale_timestamp",
                          f"timestamp is {int(now - ts)} s old; at most {int(skew_seconds)} s")
    if ts > now + skew_seconds:
        raise AuthFailure("future_timestamp",
                          f"timestamp is {int(ts - now)} s ahead; at most {int(skew_seconds)} s")
    if not (MIN_NONCE_LENGTH <= len(nonce) <= MAX_NONCE_LENGTH) or not nonce.isascii():
        raise AuthFailure("bad_nonce",
                          f"{HEADER_NONCE} must be {MIN_NONCE_LENGTH}-{MAX_NONCE_LENGTH} "
                          "ASCII characters")

    keys = keyring.keys_of(agency)
    if not keys:
        raise AuthFailure("unknown_agency", f"no key is registered for agency {agency!r}")
    signer = next((k for k in keys if not k.revoked
                   and _matches(k, signature, method, path, raw_ts, nonce, body)), None)
    if signer is None:
        if any(_matches(k, signature, method, path, raw_ts, nonce, body)
               for k in keys if k.revoked):
            raise AuthFailure("revoked_key", "the request is signed with a revoked key")
        raise AuthFailure("bad_signature",
                          "signature does not match METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\n"
                          "hex(sha256(body)) under any live key of this agency")
    return Verified(agency=agency, key_id=signer.key_id, nonce=nonce, timestamp=ts)
