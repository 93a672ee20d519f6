"""Request signing, verification, keys, replay cache and the retrying client."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from lienthong.connectors.http import (
    AgencyKey,
    AuthFailure,
    KeyRing,
    KeyRingFile,
    KeysFileError,
    NonceCache,
    NonceCacheFull,
    RequestSigner,
    RetryPolicy,
    load_keyring,
    make_async_client,
    make_client,
    sign_request,
    signed_headers,
    verify_request,
)

AGENCY = "000.00.15.H99"
SECRET = "secret-key-0123456789"
NOW = 1_767_225_600.0


def test_signature_matches_openssl_worked_example() -> None:
    # printf 'POST\n/v1/events\n1767225600\nabcdefghijklmnop\n<sha256 of body>' \
    #   | openssl dgst -sha256 -hmac secret-key-0123456789
    sig = sign_request(SECRET, "POST", "/v1/events", 1767225600, "abcdefghijklmnop", b'{"a":1}')
    assert sig == "b55bd3921536fb645e9b7ba8a5e3cda0260287f7780d4d3b1dd3c59e4fc5368b"


def _ring(*keys: AgencyKey) -> KeyRing:
    return KeyRing({AGENCY: keys or (AgencyKey("k1", SECRET.encode()),)})


def _verify(ring: KeyRing, headers: dict[str, str], body: bytes = b"{}",
            cache: NonceCache | None = None, now: float = NOW, path: str = "/v1/events"):
    cache = NonceCache() if cache is None else cache
    return verify_request(ring, cache, "POST", path, headers, body, now=now)


def test_a_correctly_signed_request_names_its_agency_and_key() -> None:
    headers = signed_headers(AGENCY, SECRET, "POST", "/v1/events", b"{}", now=NOW)
    assert _verify(_ring(), headers).agency == AGENCY


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: h.pop("X-Signature"), "missing_header"),
        (lambda h: h.update({"X-Signature": "0" * 64}), "bad_signature"),
        (lambda h: h.update({"X-Agency": "000.00.16.H99"}), "unknown_agency"),
        (lambda h: h.update({"X-Timestamp": "12ab"}), "bad_timestamp"),
        (lambda h: h.update({"X-Nonce": "short"}), "bad_nonce"),
    ],
)
def test_tampered_headers_are_refused_with_their_reason(mutate, reason) -> None:
    headers = signed_headers(AGENCY, SECRET, "POST", "/v1/events", b"{}", now=NOW)
    mutate(headers)
    with pytest.raises(AuthFailure) as err:
        _verify(_ring(), headers)
    assert err.value.reason == reason


def test_a_changed_body_breaks_the_signature() -> None:
    headers = signed_headers(AGENCY, SECRET, "POST", "/v1/events", b"{}", now=NOW)
    with pytest.raises(AuthFailure, match="bad_signature"):
        _verify(_ring(), headers, body=b'{"x":1}')


def test_timestamps_more_than_five_minutes_off_are_refused_either_way() -> None:
    old = signed_headers(AGENCY, SECRET, "POST", "/v1/events", b"{}", now=NOW - 301)
    ahead = signed_headers(AGENCY, SECRET, "POST", "/v1/events", b"{}", now=NOW + 301)
    edge = signed_headers(AGENCY, SECRET, "POST", "/v1/events", b"{}", now=NOW - 300)
    with pytest.raises(AuthFailure, match="stale_timestamp"):
        _verify(_ring(), old)
    with pytest.raises(AuthFailure, match="future_timestamp"):
        _verify(_ring(), ahead)
    assert _verify(_ring(), edge).agency == AGENCY


def test_a_replayed_nonce_is_refused_but_another_agency_may_use_the_same_nonce() -> None:
    other = "000.00.16.H99"
    ring = KeyRing({AGENCY: [AgencyKey("k", SECRET.encode())],
                    other: [AgencyKey("k", b"another-secret-0123456")]})
    cache = NonceCache()
    h = signed_headers(AGENCY, SECRET, "POST", "/v1/events", b"{}", now=NOW, nonce="n" * 20)
    _verify(ring, h, cache=cache)
    with pytest.raises(AuthFailure, match="replayed_nonce"):
        _verify(ring, h, cache=cache, now=NOW + 10)
    h2 = signed_headers(other, "another-secret-0123456", "POST", "/v1/events", b"{}", now=NOW,
                        nonce="n" * 20)
    assert _verify(ring, h2, cache=cache).agency == other


def test_a_forged_signature_does_not_burn_the_nonce() -> None:
    cache = NonceCache()
    h = signed_headers(AGENCY, SECRET, "POST", "/v1/events", b"{}", now=NOW, nonce="m" * 20)
    forged = dict(h, **{"X-Signature": "f" * 64})
    with pytest.raises(AuthFailure, match="bad_signature"):
        _verify(_ring(), forged, cache=cache)
    assert _verify(_ring(), h, cache=cache).agency == AGENCY


def test_nonce_cache_forgets_after_the_window_and_fails_closed_when_full() -> None:
    cache = NonceCache(window_seconds=300, max_entries=2)
    assert cache.check_and_remember("A", "n1", NOW, NOW)
    assert cache.check_and_remember("A", "n2", NOW, NOW)
    with pytest.raises(NonceCacheFull):
        cache.check_and_remember("A", "n3", NOW, NOW + 1)
    # 302 s later both have expired: their timestamps could no longer be accepted anyway.
    assert cache.check_and_remember("A", "n3", NOW + 302, NOW + 302)
    assert len(cache) == 1


def test_during_rotation_both_live_keys_verify_and_a_revoked_one_is_named() -> None:
    ring = _ring(AgencyKey("new", b"new-secret-0123456789"), AgencyKey("old", SECRET.encode()),
                 AgencyKey("gone", b"gone-secret-012345678", revoked=True))
    for key, kid in (("new-secret-0123456789", "new"), (SECRET, "old")):
        h = signed_headers(AGENCY, key, "POST", "/v1/events", b"{}", now=NOW)
        assert _verify(ring, h).key_id == kid
    h = signed_headers(AGENCY, "gone-secret-012345678", "POST", "/v1/events", b"{}", now=NOW)
    with pytest.raises(AuthFailure, match="revoked_key"):
        _verify(ring, h)


def test_keys_file_loads_json_and_yaml_and_rejects_short_secrets(tmp_path) -> None:
    j = tmp_path / "keys.json"
    j.write_text(json.dumps({AGENCY: [{"key_id": "a", "secret": SECRET}]}))
    y = tmp_path / "keys.yaml"
    y.write_text(f"{AGENCY}:\n  - key_id: a\n    secret: {SECRET}\n    revoked: true\n")
    assert load_keyring(j).live_keys(AGENCY)[0].key_id == "a"
    assert load_keyring(y).revoked_keys(AGENCY)[0].key_id == "a"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"{AGENCY}:\n  - key_id: a\n    secret: short\n")
    with pytest.raises(KeysFileError, match="at least 16"):
        load_keyring(bad)
    assert SECRET not in repr(load_keyring(j).keys_of(AGENCY))


def test_keys_file_is_reread_when_it_changes(tmp_path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({AGENCY: [{"key_id": "a", "secret": SECRET}]}))
    watched = KeyRingFile(path)
    assert not watched.reload_if_changed()
    path.write_text(json.dumps({AGENCY: [{"key_id": "a", "secret": SECRET, "revoked": True}]}))
    assert watched.reload_if_changed()
    assert watched.ring.live_keys(AGENCY) == ()


def test_backoff_grows_exponentially_within_jitter_bounds() -> None:
    delays = list(RetryPolicy(attempts=6, base_delay=0.1, max_delay=1.0)
                  .delays(random.Random(7)))
    assert len(delays) == 5
    for n, d in enumerate(delays):
        assert 0.0 <= d <= min(1.0, 0.1 * 2**n)


def test_client_retries_503_and_signs_every_attempt_afresh() -> None:
    seen: list[tuple[dict[str, str], bytes]] = []  # each attempt as it went on the wire

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((dict(request.headers), request.content))
        return httpx.Response(503 if len(seen) < 3 else 200, headers={"Retry-After": "0"})

    signer = RequestSigner(AGENCY, SECRET)
    with make_client("http://hub.test", retry=RetryPolicy(attempts=4, base_delay=0.001),
                     signer=signer, transport=httpx.MockTransport(handler)) as client:
        assert client.post("/v1/events?x=1", content=b"{}").status_code == 200
    assert len(seen) == 3
    assert len({h["x-nonce"] for h, _ in seen}) == 3
    ring, cache = _ring(), NonceCache()
    for headers, body in seen:
        h = {k.title(): v for k, v in headers.items()}
        assert verify_request(ring, cache, "POST", "/v1/events?x=1", h, body).agency == AGENCY


async def test_async_client_gives_up_after_the_last_attempt() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    async with make_async_client("http://hub.test",
                                 retry=RetryPolicy(attempts=3, base_delay=0.001),
                                 transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/healthz")
    assert calls == 3
