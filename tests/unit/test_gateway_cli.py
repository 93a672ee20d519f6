"""``lienthong gateway`` as its command runs it: one port serves agency events and VNPost's
tracking webhook, and a stop signal shuts it down cleanly with the spool kept."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from lienthong.connectors.gateway import Spool
from lienthong.connectors.gateway import cli as gateway_cli
from lienthong.connectors.http import signed_headers
from lienthong.connectors.postal.webhook import WEBHOOK_PATH
from lienthong.schemas.codec import decode_event

VNPOST_SECRET = "vnpost-secret-0123456789"
DOSSIER = "000.00.15.H99-20261125-0000007"


def closed_port() -> int:
    """A port nothing listens on: Kafka there is unreachable, so events go to the spool."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_args(tmp_path: Path) -> argparse.Namespace:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"VNPOST": [{"key_id": "k", "secret": VNPOST_SECRET}]}))
    parser = argparse.ArgumentParser()
    gateway_cli.add_arguments(parser)
    return parser.parse_args([
        "--host", "127.0.0.1", "--port", "0", "--keys-file", str(keys),
        "--spool-dir", str(tmp_path / "spool"), "--bootstrap", f"127.0.0.1:{closed_port()}",
        "--kafka-timeout", "0.5", "--topic", "dossier.events"])


async def wait_for_banner(capsys: pytest.CaptureFixture[str]) -> str:
    seen = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen += capsys.readouterr().out
        if "listening on " in seen:
            return seen.split("listening on ")[1].split()[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the gateway never said where it listens: {seen!r}")


async def test_the_gateway_command_serves_vnpost_webhooks_on_its_own_port(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = gateway_args(tmp_path)
    task = asyncio.create_task(gateway_cli.serve(args))
    base = await wait_for_banner(capsys)
    callback = {"tracking_number": "EL123456789VN", "order_type": "result_out",
                "status": "DELIVERED", "at": "2026-11-27T10:05:00+07:00", "dossier": DOSSIER}
    body = json.dumps(callback).encode()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=15) as client:
            health = await client.get("/healthz")
            answer = await client.post(WEBHOOK_PATH, content=body, headers=signed_headers(
                "VNPOST", VNPOST_SECRET, "POST", WEBHOOK_PATH, body))
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # the command's own stop signal
        code = await asyncio.wait_for(task, 20)
    assert health.status_code == 200
    assert answer.status_code == 202, answer.text
    assert answer.json()["stored"] == "spool"  # Kafka is unreachable: kept, not lost
    assert code == 0
    assert "1 events left in the spool" in capsys.readouterr().out
    spool = Spool(tmp_path / "spool")
    try:
        [record] = spool.read(10)
    finally:
        spool.close()
    event = decode_event(record.value)
    assert (record.key, event["type"], event["status"]) == (DOSSIER.encode(), "postal_update",
                                                            "delivered")
