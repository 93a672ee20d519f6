"""The shared nonce store when Kafka cannot be reached: it decides from this gateway's view
(and keeps those claims to share later), or refuses with 503, as configured."""

from __future__ import annotations

import socket

import pytest

from lienthong.connectors.gateway.shared_nonces import KafkaNonceStore, NonceStoreUnavailable
from lienthong.connectors.http.nonce_ledger import claim_key
from lienthong.connectors.http.nonces import NonceCacheFull


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_without_kafka_the_store_decides_alone_and_still_refuses_its_own_replays() -> None:
    results: list[str] = []
    store = KafkaNonceStore(f"127.0.0.1:{closed_port()}", "gateway.nonces", gateway_id="t",
                            on_result=results.append)
    await store.start(warm_timeout=10)
    try:
        assert not store.ready.is_set()
        assert await store.claim("000.00.15.H99", "n" * 20, 1000, 1000.5)
        assert not await store.claim("000.00.15.H99", "n" * 20, 1000, 1001.0)
        assert await store.claim("000.00.16.H99", "n" * 20, 1000, 1001.0)  # per agency
        assert results == ["local", "replay_known", "local"]
        assert [k for k, _, _ in store._unconfirmed] == [
            claim_key("000.00.15.H99", "n" * 20), claim_key("000.00.16.H99", "n" * 20)]
    finally:
        await store.stop()


async def test_set_to_refuse_it_answers_unavailable_instead() -> None:
    store = KafkaNonceStore(f"127.0.0.1:{closed_port()}", "gateway.nonces", gateway_id="t",
                            outage="refuse")
    await store.start(warm_timeout=10)
    try:
        with pytest.raises(NonceStoreUnavailable) as caught:
            await store.claim("000.00.15.H99", "n" * 20, 1000, 1000.5)
        assert isinstance(caught.value, NonceCacheFull)  # the gateway's 503 path
    finally:
        await store.stop()


def test_only_two_outage_modes_exist() -> None:
    with pytest.raises(ValueError):
        KafkaNonceStore("x:1", "t", gateway_id="g", outage="ignore")
