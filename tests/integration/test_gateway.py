"""The gateway against the real embedded broker: events land once and in order, also when
Kafka was unreachable for a while and when the gateway was killed with SIGKILL meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lienthong.connectors.gateway import Publisher
from lienthong.connectors.http import AgencyKey, KeyRing, signed_headers
from lienthong.schemas.codec import decode_event
from tests.integration.hub import read_records, running_gateway

pytestmark = pytest.mark.kafka

AGENCY = "000.00.15.H99"
SECRET = "integration-secret-0123456789"
DOSSIER = "000.00.15.H99-261125-0007"


def event(n: int, dossier: str = DOSSIER) -> dict[str, Any]:
    return {"event_id": str(uuid.UUID(int=n + (uuid.uuid4().int >> 64 << 64))),
            "type": "supplement_requested", "dossier": dossier,
            "at": f"2026-11-25T09:{n % 60:02d}:00+07:00", "agency": AGENCY,
            "reason": f"bổ sung giấy tờ số {n}"}


async def post(client: httpx.AsyncClient, payload: Any, secret: str = SECRET) -> httpx.Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = signed_headers(AGENCY, secret, "POST", "/v1/events", body)
    return await client.post("/v1/events", content=body, headers=headers)


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 15.0,
               settle: float = 1.0) -> list[dict[str, Any]]:
    """Every event in the topic, in partition order, once ``expect`` arrived (plus a settle)."""
    return [decode_event(r.value) | {"_key": r.key.decode()}
            for r in read_records(bootstrap, topic, expect, timeout, settle)]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def gateway(bootstrap: str, topic: str, spool_dir: Path,
                  kafka_timeout: float = 5.0) -> AsyncIterator[tuple[httpx.AsyncClient, Publisher]]:
    keys = KeyRing({AGENCY: [AgencyKey("k", SECRET.encode())]})
    async with running_gateway(bootstrap, topic, keys, spool_dir,
                               kafka_timeout=kafka_timeout) as (url, publisher), \
            httpx.AsyncClient(base_url=url, timeout=20) as client:
        yield client, publisher


async def test_a_posted_event_is_in_kafka_once_and_refused_ones_never(
        kafka_bootstrap: str, new_topic, tmp_path: Path) -> None:
    topic = new_topic(partitions=3, prefix="dossier.events")
    good = event(1)
    async with gateway(kafka_bootstrap, topic, tmp_path) as (client, _):
        r = await post(client, good)
        assert r.status_code == 202, r.text
        assert r.json()["stored"] == "kafka"
        assert (await post(client, event(2), secret="not-the-agency-secret-000")).status_code \
            == 401
        assert (await post(client, dict(event(3), agency="000.00.16.H99"))).status_code == 403
        assert (await post(client, dict(event(4), at="soon"))).status_code == 422
    events = await asyncio.to_thread(read_topic, kafka_bootstrap, topic, 1)
    assert [e["event_id"] for e in events] == [good["event_id"]]
    assert events[0]["_key"] == DOSSIER
    assert events[0]["reason"] == good["reason"]


async def _proxy(listen_port: int, target: str) -> asyncio.AbstractServer:
    """A TCP relay: 'the broker comes back' on the address the gateway was given."""
    host, port = target.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(handle, "127.0.0.1", listen_port)


async def test_while_kafka_is_unreachable_events_are_spooled_then_forwarded_in_order(
        kafka_bootstrap: str, new_topic, tmp_path: Path) -> None:
    topic = new_topic(partitions=3, prefix="dossier.events")
    port = closed_port()
    sent = [event(n) for n in range(6)]
    async with gateway(f"127.0.0.1:{port}", topic, tmp_path, kafka_timeout=1.0) as (client,
                                                                                   publisher):
        for e in sent[:3]:
            r = await post(client, e)
            assert r.status_code == 202, r.text
            assert r.json()["stored"] == "spool"
        r = await post(client, sent[3:])  # a batch, spooled behind the single events
        assert r.json() == {"accepted": [e["event_id"] for e in sent[3:]], "rejected": [],
                            "stored": "spool"}
        assert publisher.pending() == 6
        health = (await client.get("/healthz")).json()
        assert health["kafka"] == "spooling" and health["spooled"] == 6
        proxy = await _proxy(port, kafka_bootstrap)
        try:
            deadline = time.monotonic() + 20
            while publisher.pending() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert publisher.pending() == 0
            after = event(99)
            r = await post(client, after)
            assert r.json()["stored"] == "kafka"
        finally:
            proxy.close()
    events = await asyncio.to_thread(read_topic, kafka_bootstrap, topic, 7)
    assert [e["event_id"] for e in events] == [e["event_id"] for e in [*sent, after]]


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({AGENCY: [{"key_id": "k", "secret": SECRET}]}))
    return path


def start_gateway(keys: Path, spool: Path, bootstrap: str, topic: str) -> tuple[
        subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lienthong.services.cli", "gateway", "--port", "0",
         "--keys-file", str(keys), "--spool-dir", str(spool), "--bootstrap", bootstrap,
         "--topic", topic, "--kafka-timeout", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on" in line:
            return proc, line.split("listening on ")[1].split()[0]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("gateway did not start")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(5)


async def test_spooled_events_survive_a_gateway_kill_9(
        kafka_bootstrap: str, new_topic, tmp_path: Path, keys_file: Path,
        processes: list[subprocess.Popen[str]]) -> None:
    topic = new_topic(partitions=3, prefix="dossier.events")
    spool = tmp_path / "spool"
    proc, url = await asyncio.to_thread(start_gateway, keys_file, spool,
                                        f"127.0.0.1:{closed_port()}", topic)
    processes.append(proc)
    sent = [event(n, dossier=f"000.00.15.H99-261125-{n % 2:04d}") for n in range(5)]
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        for e in sent:
            r = await post(client, e)
            assert r.status_code == 202 and r.json()["stored"] == "spool", r.text
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)

    proc2, url2 = await asyncio.to_thread(start_gateway, keys_file, spool, kafka_bootstrap,
                                          topic)
    processes.append(proc2)
    async with httpx.AsyncClient(base_url=url2, timeout=20) as client:
        deadline = time.monotonic() + 20
        while (await client.get("/healthz")).json()["spooled"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert (await client.get("/healthz")).json() == {"status": "ok", "kafka": "direct",
                                                          "spooled": 0}
    events = await asyncio.to_thread(read_topic, kafka_bootstrap, topic, 5)
    assert sorted(e["event_id"] for e in events) == sorted(e["event_id"] for e in sent)
    for dossier in {e["dossier"] for e in sent}:  # each dossier's events in the order sent
        assert [e["event_id"] for e in events if e["dossier"] == dossier] == \
            [e["event_id"] for e in sent if e["dossier"] == dossier]
