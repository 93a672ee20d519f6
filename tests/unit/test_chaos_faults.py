"""A scenario's fault waits for traffic to reach a destination, but never forever."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lienthong.connectors.doubles import Doubles
from lienthong.deploy.local import LocalHub
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.reliability.chaos import LUNCH, Run, Traffic, traffic_plan
from lienthong.services.reliability.checker import expect

CATALOGUE = load_catalogue(LocalHub("x", Path(".")).catalogue_path)


def a_run(tmp_path: Path, sent: int) -> Run:
    events = traffic_plan(CATALOGUE, 20)
    traffic = Traffic("http://127.0.0.1:9", tmp_path / "keys.json", events, rate=10,
                      give_up_after=1, sent=sent)
    return Run(LocalHub("x", tmp_path), traffic, Doubles(list(CATALOGUE.agencies)),
               expect(events, CATALOGUE, LUNCH), broker=None, seconds=2, stall_after=0.3)


async def test_a_fault_goes_ahead_when_nothing_arrives_after_the_traffic_ended(
        tmp_path: Path) -> None:
    run = a_run(tmp_path, sent=20)
    await asyncio.wait_for(run.when_sent(0.35), timeout=5)
    assert run.notes == ["nothing reached a destination 0.3 s after the traffic ended"]


async def test_a_fault_keeps_waiting_while_the_traffic_is_still_being_sent(
        tmp_path: Path) -> None:
    run = a_run(tmp_path, sent=19)
    waiting = asyncio.create_task(run.when_sent(0.35))
    await asyncio.sleep(0.8)  # well past stall_after
    assert not waiting.done() and run.notes == []
    waiting.cancel()
