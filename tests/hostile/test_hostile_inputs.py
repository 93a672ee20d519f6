"""The hostile-input corpus (``corpus.json``) against the real gateway app on 127.0.0.1 and a
real worker process on the test broker.

Every input gets a clear 4xx with its reason from the gateway, or — if it is a well-formed
event the state machine refuses, or bytes written straight to ``dossier.events`` — a dead-letter
entry with its reason from the worker; the few inputs that are legitimate text (NFD Vietnamese,
HTML in a name) are accepted and stored normalised and inert. The gateway and the worker keep
running throughout; the counts per outcome are printed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer

from lienthong.connectors.http import load_keyring, signed_headers
from lienthong.connectors.simulator.play import write_keys
from lienthong.schemas import codec
from lienthong.services.domain.catalogue import load_catalogue
from tests.integration.conftest import kafka_bootstrap  # noqa: F401 - the session broker
from tests.integration.hub import CATALOGUE, Hub, read_records, running_gateway

CORPUS = json.loads((Path(__file__).parent / "corpus.json").read_text(encoding="utf-8"))
COMMUNE, POLICE, INSURANCE = "000.00.15.H99", "000.02.10.H99", "000.03.10.H99"
ICT = timedelta(hours=7)


pytestmark = pytest.mark.kafka


@pytest.fixture
def hub(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Hub]:  # noqa: F811
    hub = Hub(kafka_bootstrap, tmp_path)
    hub.create_topics()
    yield hub
    hub.stop_all()


class Filler:
    """Fills the corpus placeholders; one dossier code per case."""

    def __init__(self) -> None:
        now = datetime.now(UTC) + ICT
        self.day = now.strftime("%Y%m%d")
        self.at = (now - timedelta(hours=1)).replace(microsecond=0, tzinfo=None)
        self.n = 0
        self.dossier = ""

    def next_case(self) -> None:
        self.n += 1
        self.dossier = f"{COMMUNE}-{self.day}-{self.n:07d}"

    def fill(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if not isinstance(value, str) or not value.startswith("$"):
            return value
        return {"$uuid": lambda: str(uuid.uuid4()), "$dossier": lambda: self.dossier,
                "$at": lambda: f"{self.at.isoformat()}+07:00",
                "$later": lambda: f"{(self.at + timedelta(minutes=1)).isoformat()}+07:00",
                "$future": lambda: "2099-01-05T09:00:00+07:00",
                "$commune": lambda: COMMUNE, "$police": lambda: POLICE,
                "$insurance": lambda: INSURANCE}[value]()


def generated(kind: str, filler: Filler) -> bytes:
    base = filler.fill({"event_id": "$uuid", "type": "received", "dossier": "$dossier",
                        "at": "$at", "agency": "$commune", "procedure": "1.001193",
                        "channel": "desk",
                        "applicant": {"name": "Lê Văn Tám", "id_number": "001099012345"}})
    if kind == "giant_body":
        base["applicant"]["name"] = "A" * (2 << 20)
    elif kind == "giant_string":
        base["applicant"]["name"] = "Ạ" * 5000
    elif kind == "big_batch":
        return json.dumps([{**base, "event_id": str(uuid.uuid4())} for _ in range(501)]).encode()
    elif kind == "deep_event":
        nested: Any = "Tám"
        for _ in range(50):
            nested = {"x": nested}
        base["applicant"]["name"] = nested
    elif kind == "deep_body":
        return b"[" * 100_000 + b"]" * 100_000
    return json.dumps(base, ensure_ascii=False).encode()


class Client:
    def __init__(self, url: str, keys_file: Path) -> None:
        self.http = httpx.Client(base_url=url, timeout=30.0)
        data = json.loads(keys_file.read_text())
        self.secrets = {code: str(entry[0]["secret"]) for code, entry in data.items()}

    def post(self, body: bytes, auth: str = "ok", agency: str = COMMUNE) -> httpx.Response:
        secret = self.secrets[agency]
        headers = signed_headers(agency, secret, "POST", "/v1/events", body)
        if auth in ("stale", "ahead"):
            ts = str(int(time.time()) + (-600 if auth == "stale" else 600))
            nonce = secrets.token_hex(16)
            text = "\n".join(["POST", "/v1/events", ts, nonce, hashlib.sha256(body).hexdigest()])
            import hmac

            headers.update({"X-Timestamp": ts, "X-Nonce": nonce, "X-Signature": hmac.new(
                secret.encode(), text.encode(), hashlib.sha256).hexdigest()})
        elif auth == "bad_signature":
            headers["X-Signature"] = "0" * 64
        elif auth == "wrong_key":
            headers = signed_headers(agency, self.secrets[POLICE], "POST", "/v1/events", body)
        elif auth == "missing":
            headers = {}
        elif auth == "unknown_agency":
            headers = signed_headers("999.99.99.Z99", secret, "POST", "/v1/events", body)
        headers["Content-Type"] = "application/json"
        answer = self.http.post("/v1/events", content=body, headers=headers)
        if auth == "replay":
            assert answer.status_code == 202, answer.text  # the first one is fine
            answer = self.http.post("/v1/events", content=body, headers=headers)
        return answer


def outcome_of(answer: httpx.Response) -> dict[str, Any]:
    data = answer.json()
    rejected = data.get("rejected") or [{}]
    return {"status": answer.status_code, "error": data.get("error"),
            "reason": rejected[0].get("reason"), "field": rejected[0].get("field"),
            "accepted": data.get("accepted", [])}


def newer_schema_bytes(event: dict[str, Any]) -> bytes:
    """A real event's bytes re-labelled as written by a schema version nobody knows yet."""
    data = codec.EVENTS.encode(event)
    unknown = hashlib.sha256(b"dossier_event v99").digest()[:8]
    assert codec.identify(codec.MAGIC + unknown + data[10:]) is None
    return codec.MAGIC + unknown + data[10:]


async def test_every_hostile_input_gets_a_clear_refusal_or_a_dead_letter(
        hub: Hub, tmp_path: Path) -> None:
    catalogue = load_catalogue(CATALOGUE)
    keys_file = tmp_path / "keys.json"
    write_keys(catalogue, keys_file)
    worker = hub.start_worker()
    outcomes: Counter[str] = Counter()
    wanted_letters: dict[str, str] = {}  # event id -> dead-letter reason
    stored: dict[str, tuple[str, str]] = {}  # event id -> (field, value)
    filler = Filler()
    async with running_gateway(hub.bootstrap, hub.names.events, load_keyring(keys_file),
                               tmp_path / "spool") as (url, _):
        client = Client(url, keys_file)
        # Each call blocks the loop for one request: the gateway runs in this loop, so send
        # from a thread.
        import asyncio

        async def post(body: bytes, auth: str = "ok", agency: str = COMMUNE) -> httpx.Response:
            return await asyncio.to_thread(client.post, body, auth, agency)

        for case in CORPUS["http"]:
            filler.next_case()
            if "generate" in case:
                body = generated(case["generate"], filler)
            elif "raw_hex" in case:
                body = bytes.fromhex(case["raw_hex"])
            elif "raw" in case:
                body = case["raw"].encode()
            else:
                body = json.dumps(filler.fill(case["body"]), ensure_ascii=False).encode()
            got = outcome_of(await post(body, case.get("auth", "ok")))
            want = case["expect"]
            if "stored" in want:
                assert got["status"] == 202 and got["accepted"], (case["name"], got)
                stored[got["accepted"][0]] = (want["stored"], want["value"])
                outcomes["accepted, stored inert/normalised"] += 1
                continue
            assert got["status"] == want["status"], (case["name"], got)
            for key in ("error", "reason", "field"):
                if key in want:
                    assert got[key] == want[key], (case["name"], key, got)
            outcomes[f"HTTP {got['status']}"] += 1
            health = await asyncio.to_thread(client.http.get, "/healthz")
            assert health.status_code == 200, f"the gateway stopped answering after {case}"

        for case in CORPUS["worker"]:
            filler.next_case()
            for setup in filler.fill(case.get("setup", [])):
                answer = outcome_of(await post(json.dumps(setup).encode()))
                assert answer["status"] == 202, (case["name"], answer)
            event = filler.fill(case["body"])
            agency = filler.fill(case.get("as", "$commune"))
            got = outcome_of(await post(json.dumps(event, ensure_ascii=False).encode(),
                                        agency=agency))
            assert got["status"] == 202, (case["name"], got)
            wanted_letters[event["event_id"]] = case["expect"]["deadletter"]

        # Bytes written straight to the topic, as a producer with a newer schema would.
        filler.next_case()
        good = filler.fill({"event_id": "$uuid", "type": "withdrawn", "dossier": "$dossier",
                            "at": "$at", "agency": "$commune", "reason": "rút"})
        raw = KafkaProducer(bootstrap_servers=hub.bootstrap, acks="all")
        by_kind = {
            "newer_schema": (good["dossier"].encode(), newer_schema_bytes(good)),
            "truncated": (good["dossier"].encode(), codec.EVENTS.encode(good)[:14]),
            "junk": (b"junk", b"<html>not an event</html>"),
            "key_mismatch": (b"000.00.15.H99-20260101-0000001", codec.EVENTS.encode(good)),
        }
        topic_offsets: dict[tuple[int, int], str] = {}
        for case in CORPUS["topic"]:
            key, value = by_kind[case["bytes"]]
            meta = raw.send(hub.names.events, key=key, value=value).get(timeout=10)
            topic_offsets[(meta.partition, meta.offset)] = case["expect"]["deadletter"]
        raw.close()

        expected = len(wanted_letters) + len(topic_offsets)
        records = await asyncio.to_thread(read_records, hub.bootstrap, hub.names.deadletter,
                                          expected, 90.0)
        letters = [codec.DEADLETTERS.decode(r.value) for r in records]
        assert worker.poll() is None, f"the worker stopped:\n{hub.log()}"
        by_id: dict[str, str] = {}
        by_offset: dict[tuple[int, int], str] = {}
        for d in letters:
            by_offset[(d["partition"], d["offset"])] = d["reason"]
            assert d["detail"], d
            with contextlib.suppress(codec.CodecError):
                by_id[codec.EVENTS.decode(d["original"])["event_id"]] = d["reason"]
        for event_id, reason in wanted_letters.items():
            assert by_id.get(event_id) == reason, (event_id, reason, by_id.get(event_id))
            outcomes[f"dead letter: {reason}"] += 1
        for where, reason in topic_offsets.items():
            assert by_offset.get(where) == reason, (where, reason, by_offset.get(where))
            outcomes[f"dead letter: {reason}"] += 1
        health = await asyncio.to_thread(client.http.get, "/healthz")
        assert health.status_code == 200

    # Legitimate text came through normalised (NFC) and unchanged otherwise.
    seen: dict[str, Any] = {}
    for r in await asyncio.to_thread(read_records, hub.bootstrap, hub.names.events, 1, 10.0):
        with contextlib.suppress(codec.CodecError):  # the raw bytes written above
            e = codec.EVENTS.decode(r.value)
            if e["event_id"] in stored:
                seen[e["event_id"]] = e
    for event_id, (field, value) in stored.items():
        node: Any = seen[event_id]
        for part in field.split("."):
            node = node[part]
        assert node == value
    assert worker.poll() is None, f"the worker stopped:\n{hub.log()}"
    total = len(CORPUS["http"]) + len(CORPUS["worker"]) + len(CORPUS["topic"])
    assert sum(outcomes.values()) == total
    print(f"\nhostile corpus: {total} inputs")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {count:3d}  {outcome}")
