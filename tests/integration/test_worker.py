"""The worker over the real embedded Kafka broker, run as a real process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.hub import Hub, TopicReader, decoded

COMMUNE, POLICE, INSURANCE = "000.00.15.H99", "000.02.10.H99", "000.03.10.H99"


@pytest.fixture
def hub(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(kafka_bootstrap, tmp_path)
    hub.create_topics()
    yield hub
    hub.stop_all()


def ev(etype: str, code: str, at: str, agency: str = COMMUNE, **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": etype, "dossier": code, "at": at,
            "agency": agency, **extra}


def received(code: str, at: str) -> dict[str, Any]:
    return ev("received", code, at, procedure="1.001193", channel="desk",
              applicant={"name": "Trần Thị Bích", "id_number": "001099012345"})


def code(n: int) -> str:
    return f"{COMMUNE}-20261125-{n:07d}"


def test_a_handoff_becomes_a_delivery_and_bad_input_is_dead_lettered(hub: Hub) -> None:
    hub.start_worker()
    dossier = code(1)
    hub.publish([received(dossier, "2026-11-25T09:15:00+07:00"),
                 ev("handoff", dossier, "2026-11-25T10:00:00+07:00", to_agency=POLICE),
                 # illegal: the commune no longer holds the dossier
                 ev("handoff", dossier, "2026-11-25T10:05:00+07:00", to_agency=INSURANCE)])
    from kafka import KafkaProducer

    raw = KafkaProducer(bootstrap_servers=hub.bootstrap)
    raw.send(hub.names.events, key=b"junk", value=b"\x00\x01 not an event")
    raw.flush()
    raw.close()
    hub.publish([ev("handoff", dossier, "2026-11-25T11:00:00+07:00", agency=POLICE,
                    to_agency=INSURANCE)])

    deliveries = TopicReader(hub.bootstrap, hub.names.deliveries)
    letters = TopicReader(hub.bootstrap, hub.names.deadletter)
    try:
        def handoffs(records: list[Any]) -> list[dict[str, Any]]:
            return [d for d in decoded(records, "delivery") if d["kind"] == "handoff"]

        assert deliveries.until(lambda r: len(handoffs(r)) >= 2, 90, hub.workers), hub.log()
        assert [d["destination"] for d in handoffs(deliveries.records)] == [POLICE, INSURANCE]
        assert letters.until(lambda r: len(r) >= 2, 30, hub.workers), hub.log()
        reasons = sorted(d["reason"] for d in decoded(letters.records, "deadletter"))
        assert reasons[1] == "not_holder" and reasons[0] != "not_holder"
        assert hub.workers[0].poll() is None, "the worker keeps running after bad input"
    finally:
        deliveries.close()
        letters.close()


def test_an_overdue_alert_comes_within_2_s_of_its_instant_with_no_traffic(hub: Hub) -> None:
    # Received Wed 25 Nov 2026 09:15: the first step (4 working hours) is due 14:45
    # (09:15-11:30 is 2h15, 13:00-14:45 is 1h45). Virtual time reaches 14:45 25 s from now.
    lead = 25.0
    epoch = time.time()
    hub.start_worker(clock=f"scaled:2026-11-25T14:44:35+07:00:1@{epoch}")
    due_real = epoch + lead
    dossier = code(2)
    hub.publish([received(dossier, "2026-11-25T09:15:00+07:00")])
    alerts = TopicReader(hub.bootstrap, hub.names.alerts)
    try:
        def overdue(records: list[Any]) -> list[int]:
            return [i for i, a in enumerate(decoded(records, "alert"))
                    if a["kind"] == "overdue" and a["scope"] == "step"]

        assert alerts.until(lambda r: bool(overdue(r)), lead + 30, hub.workers), hub.log()
        arrival = alerts.arrivals[overdue(alerts.records)[0]]
        lateness = arrival - due_real
        assert -0.5 < lateness <= 2.0, f"overdue alert {lateness:.2f} s after its instant"
    finally:
        alerts.close()


# -- kill -9 and scale-out ---------------------------------------------------------------------

# Virtual time stands in a lunch break (no working instant passes while the test runs), so the
# alerts expected are exactly those the domain core raises up to this instant.
LUNCH = "2026-11-27T11:35:00+07:00"


def province_morning(dossiers: int) -> list[dict[str, Any]]:
    """Received Wed 25 Nov, handed to police and then social insurance (route of 1.001193)."""
    events: list[dict[str, Any]] = []
    for n in range(dossiers):
        dossier = code(1000 + n)
        minute = n % 50
        events += [received(dossier, f"2026-11-25T08:{minute:02d}:00+07:00"),
                   ev("handoff", dossier, f"2026-11-25T14:{minute:02d}:00+07:00",
                      to_agency=POLICE),
                   ev("handoff", dossier, f"2026-11-26T16:{minute:02d}:00+07:00",
                      agency=POLICE, to_agency=INSURANCE)]
    return events


def expected_alert_ids(events: list[dict[str, Any]]) -> set[str]:
    from datetime import datetime

    from lienthong.services.domain.catalogue import load_catalogue
    from lienthong.services.domain.dossier import Applied, apply_event, time_alerts
    from lienthong.services.domain.events import parse_event
    from tests.integration.hub import CATALOGUE

    catalogue = load_catalogue(CATALOGUE)
    states: dict[str, Any] = {}
    ids: set[str] = set()
    for raw in events:
        e = parse_event(raw)
        decision = apply_event(states.get(e.dossier), e, catalogue)
        assert isinstance(decision, Applied)
        states[e.dossier] = decision.state
        ids |= {a.alert_id for a in decision.alerts}
    now = datetime.fromisoformat(LUNCH)
    for state in states.values():
        ids |= {a.alert_id for a in time_alerts(state, catalogue, now)}
    return ids


def publish_steadily(hub: Hub, events: list[dict[str, Any]], seconds: float) -> Any:
    """Publish in order over about ``seconds`` from a thread (traffic under way)."""
    import threading

    def run() -> None:
        chunk = max(1, len(events) // max(1, int(seconds * 10)))
        for i in range(0, len(events), chunk):
            hub.publish(events[i:i + chunk])
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def missing_handoffs(hub: Hub, events: list[dict[str, Any]], records: list[Any]) -> str:
    """Which dossiers lack a hand-off delivery, what the dead-letter topic says of them, and
    what the workers logged about them."""
    got = {(d["dossier"], d["destination"]) for d in decoded(records, "delivery")
           if d["kind"] == "handoff"}
    missing = sorted({e["dossier"] for e in events if e["type"] == "handoff"
                      and (e["dossier"], e["to_agency"]) not in got})
    letters = TopicReader(hub.bootstrap, hub.names.deadletter)
    letters.until(lambda r: False, 2)
    letters.close()
    reasons = [(d["reason"], d["partition"], d["offset"], d["detail"][:80])
               for d in decoded(letters.records, "deadletter")]
    logs = "\n".join(line for i in range(len(hub.workers)) for line in hub.log(i).splitlines()
                     if "WARNING" in line or "ERROR" in line)[-3000:]
    return (f"{len(missing)} dossiers without all hand-offs: {missing[:5]}; "
            f"dead letters: {reasons[:5]}\n{logs}")


def check_exactly_once(hub: Hub, events: list[dict[str, Any]], dossiers: int) -> str:
    """Every hand-off delivered (distinct ids), in per-dossier order, and every alert id the
    domain core expects present; returns a line with the raw duplicates seen on the wire.

    The live sweeper may raise more alerts than the core over the whole day does: an event
    still in flight when virtual time passes an alert instant cannot stop that alert (the hub
    did not know yet). Those carry their own deterministic ids; none may be lost."""
    deliveries = TopicReader(hub.bootstrap, hub.names.deliveries)
    alerts = TopicReader(hub.bootstrap, hub.names.alerts)
    expected_alerts = expected_alert_ids(events)
    try:
        def handoff_ids(records: list[Any]) -> set[str]:
            return {d["delivery_id"] for d in decoded(records, "delivery")
                    if d["kind"] == "handoff"}

        if not deliveries.until(lambda r: len(handoff_ids(r)) >= 2 * dossiers, 120,
                                hub.live()):
            raise AssertionError(missing_handoffs(hub, events, deliveries.records))
        assert alerts.until(lambda r: {a["alert_id"] for a in decoded(r, "alert")}
                            >= expected_alerts, 60, hub.live()), hub.log(-1)
        time.sleep(1.0)
        deliveries.poll()
        alerts.poll()
        handoffs = [d for d in decoded(deliveries.records, "delivery") if d["kind"] == "handoff"]
        assert len({d["delivery_id"] for d in handoffs}) == 2 * dossiers
        first_seen: dict[str, list[str]] = {}
        seen: set[str] = set()
        for d in handoffs:
            if d["delivery_id"] not in seen:
                seen.add(d["delivery_id"])
                first_seen.setdefault(d["dossier"], []).append(d["destination"])
        assert all(route == [POLICE, INSURANCE] for route in first_seen.values())
        fired = [a["alert_id"] for a in decoded(alerts.records, "alert")]
        assert expected_alerts <= set(fired), "no alert lost"
        return (f"hand-offs {len(handoffs)} raw / {2 * dossiers} distinct; "
                f"alerts {len(fired)} raw / {len(expected_alerts)} distinct")
    finally:
        deliveries.close()
        alerts.close()


def test_a_worker_killed_mid_stream_loses_and_repeats_nothing_after_restart(hub: Hub) -> None:
    dossiers = 120
    events = province_morning(dossiers)
    clock = f"scaled:{LUNCH}:1@{time.time()}"
    first = hub.start_worker(clock=clock)
    probe = TopicReader(hub.bootstrap, hub.names.deliveries)
    publisher = publish_steadily(hub, events, seconds=6)
    try:
        assert probe.until(lambda r: len(r) >= 40, 60, [first]), hub.log()
    finally:
        probe.close()
    hub.kill(first)  # SIGKILL in the middle of the stream
    hub.start_worker(clock=clock)
    publisher.join(30)
    print(check_exactly_once(hub, events, dossiers))


def test_two_workers_share_partitions_and_the_survivor_takes_over(hub: Hub) -> None:
    dossiers = 120
    events = province_morning(dossiers)
    clock = f"scaled:{LUNCH}:1@{time.time()}"
    first = hub.start_worker(clock=clock)
    hub.start_worker(clock=clock)
    probe = TopicReader(hub.bootstrap, hub.names.deliveries)
    publisher = publish_steadily(hub, events, seconds=8)
    try:
        assert probe.until(lambda r: len(r) >= 40, 90, hub.live()), hub.log()
    finally:
        probe.close()
    hub.kill(first)
    publisher.join(30)
    print(check_exactly_once(hub, events, dossiers))


def test_the_worker_exports_its_consumer_lag_and_holdings(hub: Hub) -> None:
    import httpx

    worker = hub.start_worker()
    hub.publish([received(code(3), "2026-11-25T09:15:00+07:00")])
    port = hub.worker_ports[-1]
    deadline = time.time() + 60
    text = ""
    while time.time() < deadline and worker.poll() is None:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            text = ""
        if 'lienthong_consumer_lag{consumer="worker"' in text and \
                'lienthong_open_dossiers{agency="000.00.15.H99",level="commune"} 1.0' in text:
            break
        time.sleep(1)
    assert 'lienthong_consumer_lag{consumer="worker"' in text, hub.log()
    assert 'lienthong_open_dossiers{agency="000.00.15.H99",level="commune"} 1.0' in text
