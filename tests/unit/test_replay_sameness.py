"""The domain core decides exactly as it did: pinned digests of everything it produces.

Seeded traffic — the simulator's province (every procedure, pauses, obligations, restarts,
withdrawals, the postal leg, wrong appointments) over most of 2026, the same traffic with
seeded damage (repeated, swapped, misattributed and malformed lines), and the replay
benchmark's own traffic — goes through the core the way both of its callers use it:

- ``Replay`` (the ``replay`` command and ``bench/bench_replay.py``): the report, every alert
  with all its fields, the rejected lines and every final state's stored form;
- ``apply_event`` with deliveries and the hub's clock (the worker's tracker): after each
  event the decision, the alerts and deliveries with their ids, the state's stored form
  (``DossierState.to_dict()``, what ``DossierStateCodec`` writes to the changelog), the
  deadline index's ``next_alarm`` and the stored form again (``next_alarm`` may fill the
  state's cache of due_soon instants, which is stored).

Each digest is SHA-256 over those values as sorted-key JSON, pinned from the engine before its
hot path was made faster. A change of a digest means the core now decides, stores or names
something differently: find out what, and pin the new value only for an intended change of
behaviour.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.bench_replay import generate
from lienthong.connectors.simulator.generate import plan
from lienthong.services.domain.alerts import Alert
from lienthong.services.domain.catalogue import Catalogue, load_catalogue
from lienthong.services.domain.dossier import (
    Applied,
    DossierState,
    Rejected,
    apply_event,
    next_alarm,
)
from lienthong.services.domain.events import InvalidEvent, parse_event
from lienthong.services.domain.replay import Replay

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE_FILE = ROOT / "examples" / "province-h99.yaml"
START = "2026-01-05T08:00:00+07:00"

# SHA-256 digests of the engine's output for the traffic below (see the module docstring).
REPLAY_SIMULATED = "896545c6511d13190816a0a864b6956ed21317b9766bb70a957dde25c4e89763"
REPLAY_DAMAGED = "2c3b93899ae3f43444a043db3daf1dbd5b01ffba002dc6ad2fcf9eb15c5f9194"
REPLAY_BENCH = "4aa16b67c883ce2e522426a8bedb01ae13c6fe4ed49210c57420193db3653690"
WORKER_SIMULATED = "6cff51ce97b965f0fe05a95a1eaac9f4a53042bc33772a890e122bab67d00ec4"
WORKER_DAMAGED = "43782939ed372d915f890273f152a68eb3785d2eb0e2c35b1495ff9764568d46"


def _catalogue() -> Catalogue:
    return load_catalogue(CATALOGUE_FILE)  # a fresh one: its calendar tables built anew


def _simulated(catalogue: Catalogue) -> list[bytes]:
    """About 9,500 events of 1,500 dossiers received through most of 2026 (Tết, Hùng Kings,
    30 April, 2 September and the swapped working Saturday included)."""
    events = plan(catalogue, seed=21, dossiers=1500, per_working_hour=1.0,
                  start=datetime.fromisoformat(START))
    return [orjson.dumps(e) for e in events]


def _damaged(lines: list[bytes]) -> list[bytes]:
    """The same lines with about 6 % damaged, the same way every time."""
    rnd = random.Random(99)
    out: list[bytes] = []
    for i, line in enumerate(lines):
        roll = rnd.random()
        if roll < 0.01:
            out += [line, line]  # a retried event: skipped the second time
        elif roll < 0.02 and out:
            out.insert(len(out) - 1, line)  # one line earlier: out of order or not the holder
        elif roll < 0.03:
            data = orjson.loads(line)
            data["agency"] = "000.00.00.H99"  # the province centre, seldom the holder
            out.append(orjson.dumps(data))
        elif roll < 0.04:
            data = orjson.loads(line)
            data["at"] = "2025-12-31T23:59:00+07:00"  # before the receipt
            out.append(orjson.dumps(data))
        elif roll < 0.05:
            out.append(line[: len(line) // 2])  # cut off: not JSON
        elif roll < 0.06:
            data = orjson.loads(line)
            data["unknown_field"] = i  # refused by the contract
            out.append(orjson.dumps(data))
        else:
            out.append(line)
    return out


def _instant(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _alert(a: Alert) -> list[Any]:
    return [a.id_name, a.kind, a.scope, a.dossier, a.agency, _instant(a.due_at),
            _instant(a.at), a.procedure, a.step, a.event_id]


def _digest(values: Iterable[Any]) -> str:
    h = hashlib.sha256()
    for value in values:
        h.update(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        h.update(b"\n")
    return h.hexdigest()


def _replayed(lines: list[bytes], catalogue: Catalogue) -> Iterator[Any]:
    run = Replay(catalogue)
    run.feed(lines)
    when = run.finish()
    yield run.report(when)
    yield [_alert(a) for a in run.alerts]
    yield [[r.line, r.reason, r.detail] for r in run.rejected]
    for code in sorted(run.states):
        yield run.states[code].to_dict()


def _worked(lines: list[bytes], catalogue: Catalogue) -> Iterator[Any]:
    tz = catalogue.calendar.tz
    states: dict[str, DossierState] = {}
    hub_clock = datetime.fromisoformat(START)
    for line in lines:
        try:
            event = parse_event(orjson.loads(line), tz)
        except (InvalidEvent, ValueError) as exc:
            yield ["invalid", str(exc)]
            continue
        hub_clock = max(hub_clock, event.at + timedelta(minutes=1))
        decision = apply_event(states.get(event.dossier), event, catalogue, hub_clock)
        if isinstance(decision, Rejected):
            yield ["rejected", decision.reason, decision.detail]
        elif isinstance(decision, Applied):
            state = states[event.dossier] = decision.state
            yield ["applied", [_alert(a) for a in decision.alerts],
                   [d.to_json() for d in decision.deliveries], state.to_dict()]
            yield [_instant(next_alarm(state, catalogue)), state.to_dict()]
        else:
            yield ["skipped"]


@pytest.fixture(scope="module")
def simulated() -> list[bytes]:
    return _simulated(_catalogue())


def test_the_replay_of_simulated_traffic_is_unchanged(simulated: list[bytes]) -> None:
    assert _digest(_replayed(simulated, _catalogue())) == REPLAY_SIMULATED


def test_the_replay_of_damaged_traffic_is_unchanged(simulated: list[bytes]) -> None:
    assert _digest(_replayed(_damaged(simulated), _catalogue())) == REPLAY_DAMAGED


def test_the_replay_of_the_benchmark_traffic_is_unchanged() -> None:
    assert _digest(_replayed(generate(20_000, 7), _catalogue())) == REPLAY_BENCH


def test_the_worker_path_over_simulated_traffic_is_unchanged(simulated: list[bytes]) -> None:
    assert _digest(_worked(simulated, _catalogue())) == WORKER_SIMULATED


def test_the_worker_path_over_damaged_traffic_is_unchanged(simulated: list[bytes]) -> None:
    assert _digest(_worked(_damaged(simulated), _catalogue())) == WORKER_DAMAGED


def test_the_damage_is_seen_and_the_traffic_is_lifelike(simulated: list[bytes]) -> None:
    """The pinned traffic exercises what it claims to: rejections of each kind, alerts of each
    kind, dossiers of every ending."""
    run = Replay(_catalogue())
    run.feed(_damaged(simulated))
    run.finish()
    reasons = {r.reason for r in run.rejected}
    assert {"invalid_json", "invalid_event", "out_of_order", "not_holder"} <= reasons
    kinds = {a.kind for a in run.alerts}
    assert {"due_soon", "overdue", "appointment_mismatch", "repeat_supplement"} <= kinds
    endings = {s.end_type for s in run.states.values()}
    assert {"returned", "withdrawn", "stopped"} <= endings
    assert any(s.on_supplement == "restart" and s.supplements for s in run.states.values())
    assert any(s.apologies for s in run.states.values())
