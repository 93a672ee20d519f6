"""The gateway over real HTTP on 127.0.0.1: each hostile or broken request gets its 4xx and
reason, and nothing it carried reaches the publisher (the Kafka side)."""

from __future__ import annotations

import json
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from lienthong.connectors.gateway import InMemoryTimelines, Limits, Timeline, build_app
from lienthong.connectors.http import AgencyKey, KeyRing, signed_headers
from lienthong.connectors.http.serving import listening
from lienthong.schemas.codec import decode_event, encode_event

A = "000.00.15.H99"  # the commune one-stop desk that signs
B = "000.00.16.H99"
SECRET_A = "a-secret-for-agency-a-2026"
SECRET_A_OLD = "the-old-secret-of-agency-a"
SECRET_A_REVOKED = "a-leaked-secret-now-revoked"
SECRET_B = "b-secret-for-agency-b-2026"
DOSSIER = "000.00.15.H99-261125-0007"


encode = encode_event  # the one codec: checks the contract, names the field, gives the bytes


class RecordingPublisher:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.spooling = False

    def pending(self) -> int:
        return 0

    async def publish(self, records):
        self.records.extend(records)
        return "kafka"


def received(agency: str = A, **over: Any) -> dict[str, Any]:
    event = {"event_id": str(uuid.uuid4()), "type": "received", "dossier": DOSSIER,
             "at": "2026-11-25T09:15:00+07:00", "agency": agency, "procedure": "1.001193",
             "channel": "desk", "applicant": {"name": "Nguyễn Văn A",
                                             "id_number": "001099012345"}}
    event.update(over)
    return event


class Hub:
    def __init__(self, base: str, publisher: RecordingPublisher,
                 timelines: InMemoryTimelines) -> None:
        self.base, self.publisher, self.timelines = base, publisher, timelines
        self.client = httpx.AsyncClient(base_url=base, timeout=10)

    async def post(self, payload: Any, *, agency: str = A, secret: str = SECRET_A,
                   raw: bytes | None = None, now: float | None = None,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
        h = signed_headers(agency, secret, "POST", "/v1/events", body, now=now)
        h.update(headers or {})
        return await self.client.post("/v1/events", content=body, headers=h)

    async def get(self, path: str, *, agency: str = A, secret: str = SECRET_A) -> httpx.Response:
        return await self.client.get(path, headers=signed_headers(agency, secret, "GET", path,
                                                                  b""))


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    ring = KeyRing({
        A: [AgencyKey("2026", SECRET_A.encode()), AgencyKey("2025", SECRET_A_OLD.encode()),
            AgencyKey("leaked", SECRET_A_REVOKED.encode(), revoked=True)],
        B: [AgencyKey("2026", SECRET_B.encode())],
    })
    publisher, timelines = RecordingPublisher(), InMemoryTimelines()
    app = build_app(keys=ring, encode=encode, publisher=publisher, timelines=timelines,
                    limits=Limits(max_body_bytes=64 * 1024, max_batch=20, max_string=500))
    async with listening(app) as url:
        h = Hub(url, publisher, timelines)
        try:
            yield h
        finally:
            await h.client.aclose()


async def test_a_signed_event_is_accepted_with_its_id_and_keyed_by_dossier(hub: Hub) -> None:
    event = received()
    r = await hub.post(event)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == [event["event_id"]]
    assert r.json()["rejected"] == []
    assert hub.publisher.records[0][0] == DOSSIER.encode()


async def test_a_batch_accepts_the_good_events_and_names_the_bad_ones(hub: Hub) -> None:
    good, bad = received(), received(at="yesterday")
    r = await hub.post([good, bad])
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == [good["event_id"]]
    assert body["rejected"] == [{"index": 1, "event_id": bad["event_id"], "field": "at",
                                 "problem": body["rejected"][0]["problem"],
                                 "reason": "invalid_event"}]
    assert len(hub.publisher.records) == 1


@pytest.mark.parametrize(
    ("secret", "reason"),
    [("not-the-secret-of-anyone", "bad_signature"), (SECRET_A_REVOKED, "revoked_key"),
     (SECRET_B, "bad_signature")],
)
async def test_bad_or_revoked_keys_get_401_with_reason_and_nothing_is_published(
        hub: Hub, secret: str, reason: str) -> None:
    r = await hub.post(received(), secret=secret)
    assert r.status_code == 401
    assert r.json()["error"] == reason
    assert hub.publisher.records == []


async def test_both_keys_of_a_rotation_are_accepted(hub: Hub) -> None:
    assert (await hub.post(received(), secret=SECRET_A)).status_code == 202
    assert (await hub.post(received(), secret=SECRET_A_OLD)).status_code == 202
    assert len(hub.publisher.records) == 2


async def test_a_replayed_request_is_refused(hub: Hub) -> None:
    body = json.dumps(received()).encode()
    h = signed_headers(A, SECRET_A, "POST", "/v1/events", body)
    first = await hub.client.post("/v1/events", content=body, headers=h)
    again = await hub.client.post("/v1/events", content=body, headers=h)
    assert first.status_code == 202
    assert again.status_code == 401
    assert again.json()["error"] == "replayed_nonce"
    assert len(hub.publisher.records) == 1


@pytest.mark.parametrize(("shift", "reason"), [(-400, "stale_timestamp"),
                                               (400, "future_timestamp")])
async def test_timestamps_off_by_more_than_five_minutes_are_refused(
        hub: Hub, shift: int, reason: str) -> None:
    r = await hub.post(received(), now=time.time() + shift)
    assert r.status_code == 401
    assert r.json()["error"] == reason
    assert hub.publisher.records == []


async def test_missing_signature_headers_are_named(hub: Hub) -> None:
    r = await hub.client.post("/v1/events", content=b"{}")
    assert r.status_code == 401
    assert r.json()["error"] == "missing_header"


async def test_an_agency_cannot_publish_another_agencys_event(hub: Hub) -> None:
    r = await hub.post(received(agency=B))
    assert r.status_code == 403
    assert r.json()["rejected"][0]["field"] == "agency"
    assert r.json()["rejected"][0]["reason"] == "forbidden_agency"
    assert hub.publisher.records == []


async def test_a_forged_event_in_a_batch_is_refused_alone(hub: Hub) -> None:
    mine, forged = received(), received(agency=B)
    r = await hub.post([mine, forged])
    assert r.status_code == 202
    assert r.json()["accepted"] == [mine["event_id"]]
    assert r.json()["rejected"][0]["index"] == 1
    assert r.json()["rejected"][0]["reason"] == "forbidden_agency"


async def test_vietnamese_text_sent_in_nfd_is_published_in_nfc(hub: Hub) -> None:
    nfd = unicodedata.normalize("NFD", "Nguyễn Thị Hồng Nhung")
    assert nfd != unicodedata.normalize("NFC", nfd)
    r = await hub.post(received(applicant={"name": nfd, "id_number": "001099012345"}))
    assert r.status_code == 202
    published = decode_event(hub.publisher.records[0][1])
    assert published["applicant"]["name"] == "Nguyễn Thị Hồng Nhung"
    assert unicodedata.is_normalized("NFC", published["applicant"]["name"])


async def test_an_oversize_body_gets_413_before_anything_is_read(hub: Hub) -> None:
    r = await hub.post(None, raw=b"[" + b" " * (70 * 1024) + b"]")
    assert r.status_code == 413
    assert r.json()["error"] == "body_too_large"


async def test_a_batch_over_the_count_limit_gets_413(hub: Hub) -> None:
    r = await hub.post([received() for _ in range(21)])
    assert r.status_code == 413
    assert r.json()["error"] == "batch_too_large"
    assert hub.publisher.records == []


async def test_an_over_long_string_is_refused_naming_its_field(hub: Hub) -> None:
    r = await hub.post(received(applicant={"name": "A" * 501}))
    assert r.status_code == 413
    assert r.json()["rejected"][0]["field"] == "applicant.name"
    assert r.json()["rejected"][0]["reason"] == "too_long"


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[1, 2", b"NaN", b"42", b"[]"])
async def test_malformed_json_gets_400_with_a_reason(hub: Hub, raw: bytes) -> None:
    r = await hub.post(None, raw=raw)
    assert r.status_code == 400
    assert r.json()["error"] in {"malformed_json", "not_an_event", "empty_batch"}
    assert hub.publisher.records == []


@pytest.mark.parametrize(
    ("over", "field"),
    [({"at": 1764036900}, "at"), ({"dossier": 7}, "dossier"), ({"channel": ["desk"]}, "channel"),
     ({"type": "teleported"}, "type"), ({"event_id": "not-a-uuid"}, "event_id")],
)
async def test_wrong_types_get_422_naming_the_field(hub: Hub, over: dict[str, Any],
                                                    field: str) -> None:
    r = await hub.post(received(**over))
    assert r.status_code == 422
    assert r.json()["error"] == "all_events_rejected"
    assert r.json()["rejected"][0]["field"] == field
    assert hub.publisher.records == []


async def test_a_batch_of_non_objects_is_refused_per_item(hub: Hub) -> None:
    r = await hub.post([1, "x"])
    assert r.status_code == 400
    assert [x["reason"] for x in r.json()["rejected"]] == ["not_an_object"] * 2


async def test_the_same_event_twice_in_one_batch_is_accepted_once(hub: Hub) -> None:
    e = received()
    r = await hub.post([e, e])
    assert r.json()["accepted"] == [e["event_id"]]
    assert r.json()["rejected"][0]["reason"] == "duplicate_in_batch"


async def test_timeline_is_served_only_to_agencies_involved(hub: Hub) -> None:
    hub.timelines.put(Timeline(DOSSIER, [received()], frozenset({A})))
    mine = await hub.get(f"/v1/dossiers/{DOSSIER}")
    assert mine.status_code == 200
    assert mine.json()["dossier"] == DOSSIER
    theirs = await hub.get(f"/v1/dossiers/{DOSSIER}", agency=B, secret=SECRET_B)
    assert theirs.status_code == 403
    assert theirs.json()["error"] == "not_involved"
    unknown = await hub.get("/v1/dossiers/000.00.15.H99-261125-0008")
    assert unknown.status_code == 404
    bad = await hub.get("/v1/dossiers/nonsense")
    assert bad.status_code == 400


async def test_without_a_timeline_store_dossier_reads_answer_501() -> None:
    app = build_app(keys=KeyRing({A: [AgencyKey("k", SECRET_A.encode())]}), encode=encode,
                    publisher=RecordingPublisher())
    path = f"/v1/dossiers/{DOSSIER}"
    async with listening(app) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.get(path, headers=signed_headers(A, SECRET_A, "GET", path, b""))
    assert r.status_code == 501
    assert r.json()["error"] == "timeline_unavailable"


async def test_health_openapi_and_metrics_are_served(hub: Hub) -> None:
    await hub.post(received())
    await hub.post(received(), secret="wrong-secret-000000000")
    health = await hub.client.get("/healthz")
    assert health.json() == {"status": "ok", "kafka": "direct", "spooled": 0}
    doc = (await hub.client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/events", "/v1/dossiers/{code}", "/healthz"} <= set(doc["paths"])
    metrics = (await hub.client.get("/metrics")).text
    assert (f'lienthong_gateway_events_accepted_total{{agency="{A}",type="received"}} 1.0'
            in metrics)
    assert 'lienthong_gateway_requests_total{route="/v1/events",status="401"} 1.0' in metrics
    assert "lienthong_gateway_spooled_events 0.0" in metrics


def test_a_body_nested_too_deeply_to_parse_is_a_400_not_a_crash() -> None:
    from lienthong.connectors.gateway.intake import BodyError, parse_body

    with pytest.raises(BodyError) as refused:
        parse_body(b"[" * 100_000 + b"]" * 100_000, Limits())
    assert (refused.value.status, refused.value.reason) == (400, "malformed_json")


@pytest.mark.parametrize("name", ["Lê\x00Văn", "Lê\x1b[31mVăn", "Lê Văn\u202e", "Lê\x85Văn"])
def test_control_characters_in_text_are_refused_with_their_field(name: str) -> None:
    from lienthong.connectors.gateway.intake import _Problem, normalise

    with pytest.raises(_Problem) as refused:
        normalise({"applicant": {"name": name}}, Limits())
    assert refused.value.field == "applicant.name" and refused.value.status == 422
    assert normalise({"note": "dòng 1\ndòng 2\tTab"}, Limits())["note"] == "dòng 1\ndòng 2\tTab"


async def test_an_agency_over_its_rate_gets_429_with_retry_after_and_a_metric() -> None:
    from lienthong.services.ratelimit import TokenBuckets

    ring = KeyRing({A: [AgencyKey("k", SECRET_A.encode())], B: [AgencyKey("k", SECRET_B.encode())]})
    app = build_app(keys=ring, encode=encode, publisher=RecordingPublisher(),
                    rate_limit=TokenBuckets(rate=0.5, burst=2))
    async with listening(app) as url:
        hub = Hub(url, RecordingPublisher(), InMemoryTimelines())
        try:
            assert [(await hub.post(received())).status_code for _ in range(2)] == [202, 202]
            r = await hub.post(received())
            assert r.status_code == 429
            assert r.headers["Retry-After"] == "2"  # half a token per second: 2 s to the next
            assert r.json()["error"] == "rate_limited" and r.json()["retry_after"] == 2
            assert "000.00.15.H99" in r.json()["detail"]
            # Another agency has its own bucket; a forged request spends nobody's tokens.
            assert (await hub.post(received(B), agency=B, secret=SECRET_B)).status_code == 202
            forged = await hub.post(received(B), agency=B, secret="wrong-secret-000000000")
            assert forged.status_code == 401
            metrics = (await hub.client.get("/metrics")).text
            assert f'lienthong_gateway_rate_limited_total{{agency="{A}"}} 1.0' in metrics
        finally:
            await hub.client.aclose()
