"""A replay runs with the cyclic garbage collector held off, which is safe: it makes no cycles."""

from __future__ import annotations

import gc
from datetime import datetime
from pathlib import Path

import orjson

from lienthong.connectors.simulator.generate import plan
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.replay import collector_paused, replay

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "examples" / "province-h99.yaml")
BAD = (ROOT / "tests" / "data" / "replay-small.jsonl").read_bytes().splitlines()


def test_the_collector_is_paused_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def test_a_replay_leaves_no_reference_cycles_behind() -> None:
    events = plan(CATALOGUE, seed=4, dossiers=300,
                  start=datetime(2026, 1, 5, 8, tzinfo=CATALOGUE.calendar.tz))
    lines = [orjson.dumps(e) for e in events] + BAD + [b"{", b"[]", b'{"type": "handoff"}']
    gc.collect()
    with collector_paused():
        report, rejected = replay(lines, CATALOGUE)
        assert len(report["dossiers"]) >= 300 and rejected
        del report, rejected
        assert gc.collect() == 0
