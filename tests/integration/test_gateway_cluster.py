"""Two ``lienthong gateway`` processes of one hub, on the real broker: a signed request accepted
by one is refused by the other (401 ``replayed_nonce``), also when both receive it at the same
moment, and also after a gateway restart."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lienthong.connectors.http import signed_headers
from lienthong.schemas import topics
from lienthong.services.settings import Settings

AGENCY = "000.00.15.H99"
SECRET = "cluster-test-secret-0123456789"


def event() -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "supplement_requested",
            "dossier": "000.00.15.H99-20261125-0000042", "at": "2026-11-25T09:15:00+07:00",
            "agency": AGENCY, "reason": "Bổ sung bản sao giấy khai sinh"}


def signed() -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event()).encode()
    return body, signed_headers(AGENCY, SECRET, "POST", "/v1/events", body)


class Gateways:
    def __init__(self, bootstrap: str, workdir: Path, prefix: str) -> None:
        self.bootstrap, self.workdir, self.prefix = bootstrap, workdir, prefix
        self.keys = workdir / "keys.json"
        self.keys.write_text(json.dumps({AGENCY: [{"key_id": "k1", "secret": SECRET}]}))
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, name: str) -> str:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "LIENTHONG_TOPIC_PREFIX": self.prefix}
        proc = subprocess.Popen(
            [sys.executable, "-m", "lienthong.services.cli", "gateway", "--port", "0",
             "--keys-file", str(self.keys), "--spool-dir", str(self.workdir / f"spool-{name}"),
             "--bootstrap", self.bootstrap, "--gateway-id", name, "--rate-limit", "0"],
            stdout=subprocess.PIPE, stderr=open(self.workdir / f"{name}.log", "a"),  # noqa: SIM115
            text=True, env=env)
        self.procs.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on" in line:
                assert "replay protection shared on" in line, line
                return line.split("listening on ")[1].split()[0]
        raise AssertionError((self.workdir / f"{name}.log").read_text()[-3000:])

    def stop(self, index: int) -> None:
        proc = self.procs[index]
        proc.terminate()
        proc.wait(15)

    def stop_all(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc.poll() is None:
                self.stop(i)


@pytest.fixture
def gateways(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Gateways]:
    prefix = f"gc{uuid.uuid4().hex[:8]}."
    topics.ensure_topics(kafka_bootstrap, Settings(partitions=4, topic_prefix=prefix))
    g = Gateways(kafka_bootstrap, tmp_path, prefix)
    try:
        yield g
    finally:
        g.stop_all()


async def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        return await client.post("/v1/events", content=body, headers=headers)


def test_a_request_accepted_by_one_gateway_is_refused_by_the_other_and_after_a_restart(
        gateways: Gateways) -> None:
    first, second = gateways.start("gw-a"), gateways.start("gw-b")
    body, headers = signed()

    accepted = asyncio.run(post(first, body, headers))
    assert accepted.status_code == 202, accepted.text
    replayed = asyncio.run(post(second, body, headers))
    assert replayed.status_code == 401, replayed.text
    assert replayed.json()["error"] == "replayed_nonce"

    # The same captured request reaching both gateways at the same moment: exactly one wins.
    outcomes: list[tuple[int, int]] = []
    for _ in range(10):
        body, headers = signed()

        async def race(b: bytes = body, h: dict[str, str] = headers) -> tuple[int, int]:
            r1, r2 = await asyncio.gather(post(first, b, h), post(second, b, h))
            return r1.status_code, r2.status_code

        outcomes.append(asyncio.run(race()))
    assert all(sorted(o) == [202, 401] for o in outcomes), outcomes

    # A restarted gateway reads the claims of the window back: the old request stays refused.
    gateways.stop(0)
    restarted = gateways.start("gw-a2")
    again = asyncio.run(post(restarted, body, headers))
    assert again.status_code == 401 and again.json()["error"] == "replayed_nonce", again.text
    fresh_body, fresh_headers = signed()
    assert asyncio.run(post(restarted, fresh_body, fresh_headers)).status_code == 202
    claims = [line for url in (second, restarted)
              for line in httpx.get(f"{url}/metrics").text.splitlines()
              if line.startswith("lienthong_gateway_nonce_claims_total{")]
    assert not any('result="local"' in line for line in claims), claims  # Kafka decided all
    print(f"two gateways: replay refused by the other; {len(outcomes)} races each won by "
          f"exactly one gateway; refused after restart; {claims}")
