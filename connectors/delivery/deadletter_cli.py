"""``lienthong deadletter``: list parked messages and re-send them (gửi lại).

    lienthong deadletter list [--reason R] [--limit N]
    lienthong deadletter resend OFFSET [OFFSET ...]
    lienthong deadletter resend --all-deliveries

A re-send publishes the parked record's original bytes, with its original key, to the topic it
came from; the delivery service then delivers it again. Every delivery carries its
``Idempotency-Key``, so re-sending one that was in fact applied is harmless.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lienthong.connectors.delivery.records import (
    ParkedRecord,
    RecordProblem,
    hub_topic,
    read_parked,
)
from lienthong.services.settings import Settings


@dataclass(frozen=True)
class Parked:
    partition: int
    offset: int
    record: ParkedRecord | None
    problem: str | None = None  # when the dead-letter record itself cannot be read

    def label(self, partitions: int) -> str:
        return str(self.offset) if partitions == 1 else f"{self.partition}:{self.offset}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Inspect and re-send messages parked in the deadletter topic (what the hub could not "
        "process or deliver, with the reason and where it came from).")
    s = Settings.from_env()
    parser.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--topic", default=None,
                        help="dead-letter topic (default: the hub's deadletter topic)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser(
        "list", help="print parked messages: offset, reason, source, dossier, at",
        description="Read the dead-letter topic from the beginning and print one line per "
        "parked message: its offset (PARTITION:OFFSET when the topic has several partitions), "
        "reason, source topic/partition@offset, dossier and when it was parked.")
    ls.add_argument("--reason", help="only this reason code (e.g. delivery_rejected)")
    ls.add_argument("--limit", type=int, default=None, help="print at most N lines (the latest)")
    rs = sub.add_parser(
        "resend", help="re-publish parked messages to their source topic",
        description="Re-publish parked messages (original bytes and key) to the topic they came "
        "from. Name them by offset as 'list' prints them, or use --all-deliveries for every "
        "parked delivery. Safe to repeat: deliveries carry an Idempotency-Key.")
    rs.add_argument("offsets", nargs="*", metavar="OFFSET",
                    help="offsets from 'list' (OFFSET or PARTITION:OFFSET)")
    rs.add_argument("--all-deliveries", action="store_true",
                    help="every parked message whose source topic is the deliveries topic")
    rs.add_argument("--deliveries-topic", default=None,
                    help="the topic --all-deliveries selects by (default: the hub's "
                    "deliveries topic)")


def read_all(bootstrap: str, topic: str) -> tuple[int, list[Parked]]:
    """Every record of the dead-letter topic, oldest first per partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=2000)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise LookupError(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[Parked] = []
        for rec in _until(consumer, end):
            try:
                out.append(Parked(rec.partition, rec.offset, read_parked(rec.value)))
            except RecordProblem as problem:
                out.append(Parked(rec.partition, rec.offset, None, problem.detail))
        return len(tps), out
    finally:
        consumer.close()


def _until(consumer: KafkaConsumer, end: dict[TopicPartition, int],
           timeout: float = 60.0) -> Iterator[Any]:
    """Records up to the end offsets taken when the read began (later ones are not listed)."""
    deadline = time.monotonic() + timeout
    while any(consumer.position(tp) < off for tp, off in end.items()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read to the end of the topic in {timeout:.0f} s")
        for tp, records in consumer.poll(timeout_ms=500).items():
            yield from (rec for rec in records if rec.offset < end[tp])


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _list(args: argparse.Namespace) -> int:
    partitions, parked = read_all(args.bootstrap, args.topic)
    if args.reason:
        parked = [p for p in parked if p.record is not None and p.record.reason == args.reason]
    if args.limit is not None:
        parked = parked[-args.limit:] if args.limit > 0 else []
    rows = [["OFFSET", "REASON", "SOURCE", "DOSSIER", "AT"]]
    for p in parked:
        r = p.record
        if r is None:
            rows.append([p.label(partitions), "unreadable", "-", "-", p.problem or ""])
            continue
        rows.append([p.label(partitions), r.reason,
                     f"{r.source_topic}/{r.partition}@{r.offset}", r.dossier or "-", r.at])
    print(_table(rows))
    print(f"{len(parked)} parked message(s)", file=sys.stderr)
    return 0


def _parse_offset(text: str) -> tuple[int | None, int]:
    part, sep, off = text.partition(":")
    if sep:
        return int(part), int(off)
    return None, int(text)


def _resend(args: argparse.Namespace) -> int:
    if not args.offsets and not args.all_deliveries:
        print("lienthong deadletter resend: name OFFSETs or use --all-deliveries",
              file=sys.stderr)
        return 2
    try:
        wanted = [_parse_offset(o) for o in args.offsets]
    except ValueError:
        print(f"lienthong deadletter resend: offsets are numbers or PARTITION:OFFSET, "
              f"got {args.offsets}", file=sys.stderr)
        return 2
    partitions, parked = read_all(args.bootstrap, args.topic)
    chosen: list[Parked] = []
    missing: list[str] = []
    for part, off in wanted:
        hits = [p for p in parked if p.offset == off and (part is None or p.partition == part)]
        if part is None and partitions > 1 and len(hits) > 1:
            print(f"offset {off} exists in several partitions; write PARTITION:OFFSET",
                  file=sys.stderr)
            return 2
        if not hits or hits[0].record is None:
            missing.append(f"{'' if part is None else f'{part}:'}{off}")
        else:
            chosen.extend(hits[:1])
    if args.all_deliveries:
        chosen.extend(p for p in parked if p.record is not None
                      and p.record.source_topic == args.deliveries_topic and p not in chosen)
    if missing:
        print(f"not found in {args.topic}: {', '.join(missing)}", file=sys.stderr)
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all",
                             enable_idempotence=True)
    try:
        futures = []
        for p in chosen:
            r = p.record
            assert r is not None
            futures.append((p, producer.send(r.source_topic, value=r.original, key=r.key)))
        producer.flush()
        for p, fut in futures:
            meta = fut.get(timeout=30)
            assert p.record is not None
            print(f"re-sent {p.label(partitions)} ({p.record.reason}) to "
                  f"{meta.topic}/{meta.partition}@{meta.offset}")
    finally:
        producer.close()
    print(f"{len(chosen)} message(s) re-sent", file=sys.stderr)
    return 1 if missing else 0


def run(args: argparse.Namespace) -> int:
    if not args.bootstrap:
        print("lienthong deadletter: no Kafka address; pass --bootstrap or set "
              "KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    args.topic = args.topic or hub_topic("DEADLETTER")
    if args.action == "resend" and args.all_deliveries:
        args.deliveries_topic = args.deliveries_topic or hub_topic("DELIVERIES")
    try:
        return _list(args) if args.action == "list" else _resend(args)
    except (LookupError, TimeoutError) as exc:
        print(f"lienthong deadletter: {exc}", file=sys.stderr)
        return 1
