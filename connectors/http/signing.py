"""The request signature every agency system puts on its calls to the hub (DESIGN section 7).

    X-Signature = hex HMAC-SHA256(key, METHOD "\\n" PATH "\\n" TIMESTAMP "\\n" NONCE "\\n"
                                       hex SHA-256(body))

``PATH`` is the request target exactly as sent: the path, plus ``?query`` when there is one.
``TIMESTAMP`` is Unix seconds; ``NONCE`` is 16 or more random characters, never reused. The key
is the agency's secret as UTF-8 bytes, so ``openssl dgst -sha256 -hmac "$SECRET"`` signs the
same way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER_AGENCY = "X-Agency"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"
HEADER_KEY_ID = "X-Key-Id"  # optional hint; verification never depends on it

MIN_NONCE_LENGTH = 16


def _key_bytes(key: str | bytes) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key


def body_digest(body: bytes) -> str:
    """Hex SHA-256 of the raw body (of ``b""`` for a request without one)."""
    return hashlib.sha256(body).hexdigest()


def string_to_sign(method: str, path: str, timestamp: str | int, nonce: str, body: bytes) -> str:
    """The text the HMAC covers; shown to vendors when their signature does not match."""
    return "\n".join((method.upper(), path, str(timestamp), nonce, body_digest(body)))


def sign_request(
    key: str | bytes, method: str, path: str, timestamp: str | int, nonce: str, body: bytes
) -> str:
    """Hex HMAC-SHA256 of the request under ``key``."""
    message = string_to_sign(method, path, timestamp, nonce, body).encode("utf-8")
    return hmac.new(_key_bytes(key), message, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """A fresh nonce: 24 URL-safe random characters (about 144 bits)."""
    return secrets.token_urlsafe(18)


def signed_headers(
    agency: str,
    key: str | bytes,
    method: str,
    path: str,
    body: bytes,
    now: float | None = None,
    *,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers that authenticate one request from ``agency``.

    ``now`` (Unix seconds) defaults to the wall clock; a fresh nonce is drawn unless given.
    """
    timestamp = str(int(time.time() if now is None else now))
    nonce = new_nonce() if nonce is None else nonce
    return {
        HEADER_AGENCY: agency,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: sign_request(key, method, path, timestamp, nonce, body),
    }
