"""The reliability checker: what went in against what came out.

Given the events the gateway accepted, it runs the domain core over them (``apply_event`` per
dossier in order, then ``time_alerts`` at the worker's clock) and compares with what the hub
produced:

- ``dossier.events``: every accepted event id present, raw duplicates counted (the gateway's
  spool and retried POSTs are at least once; the worker skips a repeated id);
- ``deliveries`` and the destinations: every delivery the core routes (hand-offs, results,
  shipments, portal status syncs) applied once by its destination, in per-dossier order; the
  destination doubles count raw receipts and applications separately (``Idempotency-Key``);
- ``alerts``: every alert id the core expects present in the feed deduplicated by id, raw
  duplicates counted; ids beyond the core's (raised by the live sweeper on a state whose next
  event was still in flight) are reported apart, as they are legitimate and not repeats.

The checker reads; it never changes the hub. ``check`` is pure over its inputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lienthong.services.domain.catalogue import Catalogue
from lienthong.services.domain.dossier import (
    Applied,
    DossierState,
    Rejected,
    apply_event,
    time_alerts,
)
from lienthong.services.domain.events import InvalidEvent, parse_event


@dataclass(frozen=True)
class ExpectedDelivery:
    delivery_id: str
    destination: str
    kind: str
    dossier: str
    event_id: str


@dataclass
class Expectation:
    """What the domain core says must come out of ``events``."""

    events: dict[str, str] = field(default_factory=dict)  # event id -> dossier
    deliveries: dict[str, ExpectedDelivery] = field(default_factory=dict)
    # (destination, dossier) -> delivery ids in the order they must be applied
    order: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    alerts: set[str] = field(default_factory=set)  # fired by the core up to ``now``
    alerts_until: set[str] = field(default_factory=set)  # also legitimate up to ``until``
    refused: dict[str, str] = field(default_factory=dict)  # event id -> the core's reason


def expect(events: Iterable[Mapping[str, Any]], catalogue: Catalogue, now: datetime,
           until: datetime | None = None) -> Expectation:
    """Run the core over ``events`` (in the order they went in) at the worker's clock ``now``;
    ``until`` (>= now) is the clock when the check runs: alerts due in between are allowed."""
    out = Expectation()
    states: dict[str, DossierState] = {}
    for raw in events:
        event_id = str(raw.get("event_id"))
        if event_id in out.events:
            continue  # the same event sent twice: the hub skips it too
        try:
            event = parse_event(raw)
        except InvalidEvent as exc:
            out.refused[event_id] = f"invalid_event: {exc}"
            continue
        out.events[event_id] = event.dossier
        decision = apply_event(states.get(event.dossier), event, catalogue, now)
        if isinstance(decision, Rejected):
            out.refused[event_id] = decision.reason
            continue
        if not isinstance(decision, Applied):
            continue
        states[event.dossier] = decision.state
        for d in decision.deliveries:
            out.deliveries[d.delivery_id] = ExpectedDelivery(
                d.delivery_id, d.destination, d.kind, d.dossier, d.event_id)
            out.order.setdefault((d.destination, d.dossier), []).append(d.delivery_id)
        out.alerts |= {a.alert_id for a in decision.alerts}
    out.alerts_until = set(out.alerts)
    for state in states.values():
        out.alerts |= {a.alert_id for a in time_alerts(state, catalogue, now)}
    out.alerts_until |= out.alerts
    if until is not None and until > now:
        for state in states.values():
            out.alerts_until |= {a.alert_id for a in time_alerts(state, catalogue, until)}
    return out


@dataclass
class DestinationLog:
    """One destination system's side: what it received and applied, in application order."""

    code: str
    receipts: int = 0
    applications: int = 0
    duplicates: int = 0  # receipts of a key already applied (the cost of at least once)
    failed: int = 0  # receipts answered with an injected failure
    applied: list[str] = field(default_factory=list)  # Idempotency-Keys, first applications
    applied_at: list[float] = field(default_factory=list)  # the double's clock, same order


def destinations_from_doubles(doubles: Any) -> dict[str, DestinationLog]:
    """Snapshot of the in-process doubles (``connectors.doubles.Doubles``)."""
    boxes = dict(doubles.agencies.inboxes)
    boxes[doubles.vnpost.inbox.code] = doubles.vnpost.inbox
    boxes[doubles.portal.inbox.code] = doubles.portal.inbox
    out: dict[str, DestinationLog] = {}
    for code, box in boxes.items():
        applied = list(box.applied.values())
        out[code] = DestinationLog(code, box.receipts, box.applications, box.duplicates,
                                   box.failed, [a.key for a in applied],
                                   [a.received_at for a in applied])
    return out


def destinations_from_stats(stats: Mapping[str, Any]) -> dict[str, DestinationLog]:
    """Counts only, from the doubles' ``GET /stats`` (no keys: order and identity unchecked)."""
    return {code: DestinationLog(code, int(s.get("receipts", 0)), int(s.get("applications", 0)),
                                 int(s.get("duplicates", 0)), int(s.get("failed", 0)))
            for code, s in stats.get("destinations", {}).items()}


@dataclass
class HubOutput:
    """The hub's topics, decoded, in offset order per partition."""

    events: list[dict[str, Any]] = field(default_factory=list)
    undecodable_events: int = 0
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    deadletters: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Verdict:
    """The checker's findings. ``ok`` means nothing lost, repeated or out of order."""

    events_in: int = 0  # distinct accepted event ids
    events_found: int = 0  # of those, present in dossier.events
    events_lost: int = 0
    events_raw_duplicates: int = 0  # extra copies on the topic
    events_unaccepted: int = 0  # ids on the topic the sender never saw accepted
    refused_by_core: int = 0  # accepted but illegal for the state machine (dead letters)
    deliveries_expected: int = 0
    deliveries_on_topic: int = 0  # distinct expected ids present in ``deliveries``
    deliveries_topic_duplicates: int = 0  # raw extra copies in ``deliveries``
    delivered: int = 0  # expected ids applied by their destination
    lost: int = 0  # expected ids not applied
    parked: int = 0  # of the lost, those parked in ``deadletter`` (re-sendable)
    duplicated_applied: int = 0  # applied beyond once (same key twice, or an unexpected key)
    duplicated_raw: int = 0  # receipts of an already-applied key at the destinations
    out_of_order: int = 0  # (destination, dossier) pairs applied in another order
    alerts_expected: int = 0
    alerts_fired: int = 0  # expected ids present
    alerts_missing: int = 0
    alerts_raw_duplicates: int = 0  # extra copies of any id in the feed
    alerts_extra: int = 0  # dossier alerts beyond the core's over the final events
    destination_alerts: int = 0  # delivery_failing and the like (scope destination)
    deadletters: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.events_lost or self.lost or self.duplicated_applied
                    or self.out_of_order or self.alerts_missing)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("deadletters", "examples")}
        out["deadletters"] = dict(self.deadletters)
        out["examples"] = self.examples[:10]
        out["ok"] = self.ok
        return out


def _example(v: Verdict, text: str) -> None:
    if len(v.examples) < 10:
        v.examples.append(text)


def check(expected: Expectation, output: HubOutput,
          destinations: Mapping[str, DestinationLog]) -> Verdict:
    v = Verdict()
    # dossier.events
    on_topic = Counter(str(e.get("event_id")) for e in output.events)
    v.events_in = len(expected.events)
    v.events_found = sum(1 for i in expected.events if i in on_topic)
    v.events_lost = v.events_in - v.events_found
    v.events_raw_duplicates = sum(n - 1 for n in on_topic.values())
    v.events_unaccepted = sum(1 for i in on_topic if i not in expected.events)
    v.refused_by_core = len(expected.refused)
    for i in expected.events:
        if i not in on_topic:
            _example(v, f"event {i} ({expected.events[i]}) accepted but not in dossier.events")

    # deliveries topic
    seen = Counter(str(d.get("delivery_id")) for d in output.deliveries)
    v.deliveries_expected = len(expected.deliveries)
    v.deliveries_on_topic = sum(1 for i in expected.deliveries if i in seen)
    v.deliveries_topic_duplicates = sum(n - 1 for n in seen.values())

    # destinations
    applied_where: dict[str, list[str]] = {}
    for log in destinations.values():
        v.duplicated_raw += log.duplicates
        keys = Counter(log.applied)
        v.duplicated_applied += sum(n - 1 for n in keys.values())
        v.duplicated_applied += max(0, log.applications - len(keys)) if log.applied else 0
        for key in keys:
            applied_where.setdefault(key, []).append(log.code)
    for key, where in applied_where.items():
        want = expected.deliveries.get(key)
        if want is None:
            if key in seen:  # routed by the hub but not by the core: applied beyond once
                v.duplicated_applied += len(where)
                _example(v, f"delivery {key} applied at {where} was not expected")
            continue
        if where != [want.destination]:
            v.duplicated_applied += max(0, len(where) - 1)
            _example(v, f"delivery {key} applied at {where}, expected {want.destination}")
    parked = _parked_deliveries(output.deadletters)
    for key, want in expected.deliveries.items():
        if want.destination in applied_where.get(key, ()):
            v.delivered += 1
            continue
        v.lost += 1
        if key in parked:
            v.parked += 1
            _example(v, f"{want.kind} {key} for {want.destination} ({want.dossier}) "
                        f"parked: {parked[key]}")
        else:
            _example(v, f"{want.kind} {key} for {want.destination} ({want.dossier}) "
                        f"not applied{'' if key in seen else '; not in deliveries either'}")
    # per-dossier order at each destination
    for (destination, dossier), ids in expected.order.items():
        log = destinations.get(destination)
        if log is None or not log.applied:
            continue
        wanted = set(ids)
        got = [k for k in log.applied if k in wanted]
        if got != [k for k in ids if k in set(got)]:
            v.out_of_order += 1
            _example(v, f"{destination} applied {dossier}'s deliveries out of order")

    # alerts
    raw = Counter(str(a.get("alert_id")) for a in output.alerts)
    v.alerts_raw_duplicates = sum(n - 1 for n in raw.values())
    v.alerts_expected = len(expected.alerts)
    v.alerts_fired = sum(1 for a in expected.alerts if a in raw)
    v.alerts_missing = v.alerts_expected - v.alerts_fired
    for a in expected.alerts:
        if a not in raw:
            _example(v, f"alert {a} expected by the core is not in the feed")
    destination_ids = {str(a.get("alert_id")) for a in output.alerts
                       if a.get("scope") == "destination"}
    v.destination_alerts = len(destination_ids)
    v.alerts_extra = sum(1 for a in raw if a not in expected.alerts_until
                         and a not in destination_ids)
    v.deadletters = Counter(str(d.get("reason")) for d in output.deadletters)
    return v


def _parked_deliveries(deadletters: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """delivery id -> dead-letter reason, for parked deliveries."""
    from lienthong.schemas import codec

    out: dict[str, str] = {}
    for d in deadletters:
        original = d.get("original")
        if not isinstance(original, bytes | bytearray):
            continue
        try:
            delivery = codec.DELIVERIES.decode(bytes(original))
        except codec.CodecError:
            continue
        out[str(delivery["delivery_id"])] = str(d.get("reason"))
    return out


# -- reading the hub's topics -------------------------------------------------------------------

def read_topic(bootstrap: str, topic: str, *, timeout: float = 30.0) -> list[bytes]:
    """Every record value of ``topic`` from the beginning to its end offsets now."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=500, request_timeout_ms=15000,
                             isolation_level="read_committed")
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(tps)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
            for batch in consumer.poll(timeout_ms=300, max_records=5000).values():
                values.extend(r.value for r in batch)
        else:
            raise TimeoutError(f"could not read {topic} to its end in {timeout:.0f} s")
        return values
    finally:
        consumer.close()


def read_hub(bootstrap: str, names: Any, *, timeout: float = 30.0) -> HubOutput:
    """The four topics the checker needs (``names``: ``schemas.topics.TopicNames``)."""
    from lienthong.schemas import codec

    out = HubOutput()
    for value in read_topic(bootstrap, names.events, timeout=timeout):
        try:
            out.events.append(codec.EVENTS.decode(value))
        except codec.CodecError:
            out.undecodable_events += 1
    for kind, topic, into in (("delivery", names.deliveries, out.deliveries),
                              ("alert", names.alerts, out.alerts),
                              ("deadletter", names.deadletter, out.deadletters)):
        c = codec.codec_for(kind)
        into.extend(c.decode(v) for v in read_topic(bootstrap, topic, timeout=timeout))
    return out


# -- the table ----------------------------------------------------------------------------------

COLUMNS: Sequence[tuple[str, str]] = (
    ("scenario", "scenario"), ("events_in", "events in"), ("delivered", "delivered"),
    ("lost", "lost"), ("dup", "dup raw/applied"), ("alerts", "alerts exp/fired/dup"),
    ("extra", "extra alerts"), ("recovery", "recovery s"), ("verdict", "verdict"),
)


def row(name: str, v: Verdict, recovery: float | None = None) -> dict[str, str]:
    """One table row of a verdict; ``lost`` counts lost events and lost deliveries."""
    return {
        "scenario": name,
        "events_in": str(v.events_in),
        "delivered": f"{v.delivered}/{v.deliveries_expected}",
        "lost": f"{v.events_lost + v.lost}",
        "dup": f"{v.duplicated_raw + v.events_raw_duplicates + v.deliveries_topic_duplicates}"
               f"/{v.duplicated_applied}",
        "alerts": f"{v.alerts_expected}/{v.alerts_fired}/{v.alerts_raw_duplicates}",
        "extra": str(v.alerts_extra),
        "recovery": "-" if recovery is None else f"{recovery:.1f}",
        "verdict": "ok" if v.ok else "FAIL",
    }


def table(rows: Sequence[Mapping[str, str]],
          columns: Sequence[tuple[str, str]] = COLUMNS) -> str:
    """A plain-text table (Markdown pipe syntax, readable as is)."""
    heads = [h for _, h in columns]
    cells = [[str(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(heads)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in cells]
    return "\n".join([line, rule, *body])
