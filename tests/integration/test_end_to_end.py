"""One hand-off end to end: signed POST to the gateway → dossier.events → worker → deliveries →
delivery service → the destination agency's HTTP inbox (a real server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from lienthong.connectors.delivery.service import DeliveryService
from lienthong.connectors.doubles import Doubles, running
from lienthong.connectors.doubles.server import endpoint_for
from lienthong.connectors.http import RequestSigner, load_keyring, signed_headers
from lienthong.connectors.simulator.play import write_keys
from lienthong.services.domain.catalogue import load_catalogue
from tests.integration.hub import CATALOGUE, Hub, running_gateway

COMMUNE, POLICE = "000.00.15.H99", "000.02.10.H99"
DOSSIER = f"{COMMUNE}-20261125-0000042"


async def test_a_handoff_posted_to_the_gateway_is_applied_once_by_its_destination(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    hub = Hub(kafka_bootstrap, tmp_path)
    hub.create_topics()
    catalogue = load_catalogue(CATALOGUE)
    write_keys(catalogue, tmp_path / "keys.json")
    keys = load_keyring(tmp_path / "keys.json")
    secrets = json.loads((tmp_path / "keys.json").read_text())

    def secret(agency: str) -> str:
        entry = secrets[agency]
        return str((entry[0] if isinstance(entry, list) else entry["keys"][0])["secret"])

    hub.start_worker()
    doubles = Doubles(list(catalogue.agencies.values()))
    stop = asyncio.Event()
    try:
        async with running_gateway(kafka_bootstrap, hub.names.events, keys,
                                   tmp_path / "spool") as (gateway, _), running(doubles) as base:
            delivery = DeliveryService(
                kafka_bootstrap, lambda code: endpoint_for(base, code),
                signer=RequestSigner("LIENTHONG", secret("LIENTHONG")),
                group_id=f"{hub.prefix}delivery", deliveries_topic=hub.names.deliveries,
                alerts_topic=hub.names.alerts, deadletter_topic=hub.names.deadletter)
            task = asyncio.create_task(delivery.run(stop))
            events: list[dict[str, Any]] = [
                {"event_id": str(uuid.uuid4()), "type": "received", "dossier": DOSSIER,
                 "at": "2026-11-25T09:15:00+07:00", "agency": COMMUNE,
                 "procedure": "1.001193", "channel": "desk",
                 "applicant": {"name": "Phạm Văn Đức", "id_number": "001099012345"}},
                {"event_id": str(uuid.uuid4()), "type": "handoff", "dossier": DOSSIER,
                 "at": "2026-11-25T10:00:00+07:00", "agency": COMMUNE, "to_agency": POLICE}]
            async with httpx.AsyncClient(base_url=gateway) as client:
                for event in events:
                    body = json.dumps(event).encode()
                    headers = signed_headers(COMMUNE, secret(COMMUNE), "POST", "/v1/events",
                                             body)
                    answer = await client.post("/v1/events", content=body,
                                               headers={**headers,
                                                        "Content-Type": "application/json"})
                    assert answer.status_code == 202, answer.text
                    # A retried POST (same event id) is harmless.
                retry = json.dumps(events[1]).encode()
                answer = await client.post("/v1/events", content=retry, headers={
                    **signed_headers(COMMUNE, secret(COMMUNE), "POST", "/v1/events", retry),
                    "Content-Type": "application/json"})
                assert answer.status_code == 202
            inbox = doubles.inbox(POLICE)
            for _ in range(600):
                if inbox.applications >= 1:
                    break
                assert hub.workers[0].poll() is None, hub.log()
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # anything repeated would arrive meanwhile
            assert inbox.applications == 1, hub.log()
            [applied] = inbox.applied.values()
            assert applied.kind == "handoff" and applied.dossier == DOSSIER
            assert applied.event_id == events[1]["event_id"]
            stop.set()
            await asyncio.wait_for(task, 20)
    finally:
        stop.set()
        hub.stop_all()
