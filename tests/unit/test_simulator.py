"""The simulator's plan: legal for the engine, deterministic per seed, lifelike in its mix."""

from __future__ import annotations

import collections
import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest

from lienthong.connectors.http import load_keyring
from lienthong.connectors.simulator.generate import plan
from lienthong.connectors.simulator.play import write_keys
from lienthong.services import cli
from lienthong.services.domain.catalogue import Catalogue, load_catalogue
from lienthong.services.domain.dossier import Applied, DossierState, apply_event
from lienthong.services.domain.events import parse_event

ROOT = Path(__file__).resolve().parents[2]
START = datetime.fromisoformat("2026-11-25T07:30:00+07:00")


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(ROOT / "examples" / "province-h99.yaml")


@pytest.fixture(scope="module")
def events(catalogue: Catalogue) -> list[dict]:
    return plan(catalogue, seed=11, dossiers=400, start=START)


def test_every_planned_event_is_applied_by_the_engine_in_file_order(
        catalogue: Catalogue, events: list[dict]) -> None:
    states: dict[str, DossierState] = {}
    refused = []
    for n, data in enumerate(events):
        decision = apply_event(states.get(data["dossier"]), parse_event(data), catalogue)
        if isinstance(decision, Applied):
            states[data["dossier"]] = decision.state
        else:
            refused.append((n, data["type"], decision))
    assert refused == []
    assert len(states) == 400


def test_the_same_seed_plans_the_same_events_and_another_seed_does_not(
        catalogue: Catalogue) -> None:
    a = plan(catalogue, seed=5, dossiers=50, start=START)
    b = plan(catalogue, seed=5, dossiers=50, start=START)
    c = plan(catalogue, seed=6, dossiers=50, start=START)
    assert a == b
    assert a != c


def test_events_are_ordered_by_instant_and_ids_are_unique(events: list[dict]) -> None:
    instants = [datetime.fromisoformat(e["at"]) for e in events]
    assert instants == sorted(instants)
    assert len({e["event_id"] for e in events}) == len(events)


def test_the_mix_has_every_kind_of_traffic(events: list[dict]) -> None:
    types = collections.Counter(e["type"] for e in events)
    for t in ("received", "handoff", "supplement_requested", "supplement_received",
              "obligation_requested", "obligation_paid", "result_ready", "returned",
              "postal_update"):
        assert types[t] > 0, t
    channels = collections.Counter(e["channel"] for e in events if e["type"] == "received")
    assert set(channels) == {"desk", "online", "postal"}
    assert channels["desk"] > channels["postal"]
    procedures = {e["procedure"] for e in events if e["type"] == "received"}
    assert len(procedures) >= 6
    # Financial obligations belong to the land procedure (the tax office is on its route).
    land = {e["dossier"] for e in events if e.get("procedure") == "1.012756"}
    assert {e["dossier"] for e in events if e["type"] == "obligation_requested"} <= land
    # Postal updates come from VNPost only.
    assert {e["agency"] for e in events if e["type"] == "postal_update"} == {"VNPOST"}


def test_some_steps_run_late(catalogue: Catalogue, events: list[dict]) -> None:
    states: dict[str, DossierState] = {}
    for data in events:
        decision = apply_event(states.get(data["dossier"]), parse_event(data), catalogue)
        assert isinstance(decision, Applied)
        states[data["dossier"]] = decision.state
    late = [s for s in states.values()
            if s.ended_at is not None and s.judged_at is not None and s.judged_at > s.due_at]
    assert 0 < len(late) < len(states) / 4


def test_write_keys_gives_every_agency_and_the_hub_a_private_key(
        catalogue: Catalogue, tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    codes = write_keys(catalogue, path)
    ring = load_keyring(path)
    assert set(ring.agencies()) == set(catalogue.agencies) | {"LIENTHONG"}
    assert set(codes) == set(ring.agencies())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    secrets = [ring.live_keys(c)[0].secret for c in codes]
    assert len(set(secrets)) == len(secrets)


def test_simulate_jsonl_writes_canonical_lines(tmp_path: Path) -> None:
    out = tmp_path / "day.jsonl"
    rc = cli.main(["simulate", "--catalog", str(ROOT / "examples" / "province-h99.yaml"),
                   "--jsonl", str(out), "--dossiers", "20", "--seed", "3",
                   "--start", "2026-11-25T07:30:00+07:00"])
    assert rc == 0
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert sum(1 for e in lines if e["type"] == "received") == 20
    for e in lines:
        parse_event(e)
