"""HTTP code shared by every connector: request signing and its verification, replay
protection, agency keys, and the one client factory with timeouts and retry."""

from lienthong.connectors.http.client import (
    NO_RETRY,
    RequestSigner,
    RetryPolicy,
    make_async_client,
    make_client,
)
from lienthong.connectors.http.keys import (
    AgencyKey,
    KeyRing,
    KeyRingFile,
    KeysFileError,
    load_keyring,
)
from lienthong.connectors.http.nonces import NonceCache, NonceCacheFull
from lienthong.connectors.http.signing import (
    HEADER_AGENCY,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    body_digest,
    new_nonce,
    sign_request,
    signed_headers,
    string_to_sign,
)
from lienthong.connectors.http.verification import AuthFailure, Verified, verify_request

__all__ = [
    "HEADER_AGENCY", "HEADER_NONCE", "HEADER_SIGNATURE", "HEADER_TIMESTAMP", "NO_RETRY",
    "AgencyKey", "AuthFailure", "KeyRing", "KeyRingFile", "KeysFileError", "NonceCache",
    "NonceCacheFull", "RequestSigner", "RetryPolicy", "Verified", "body_digest",
    "load_keyring", "make_async_client", "make_client", "new_nonce", "sign_request",
    "signed_headers", "string_to_sign", "verify_request",
]
