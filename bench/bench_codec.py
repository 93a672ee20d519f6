"""Codec throughput: encode+decode of dossier events vs the json round trip, same run.

    .venv/bin/python bench/bench_codec.py [--seconds 5]

DESIGN section 10 target: encode+decode >= 100,000 events/s per core and at least as fast as
``json.dumps`` + ``json.loads`` of the same events. Runs interleaved rounds of each variant over
the same batch (a mix of every event type across 500 dossiers, unique ids and instants) and
keeps each variant's best round, so load from other processes hits all variants alike.
Writes bench/results/codec.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
from fastavro import schemaless_reader, schemaless_writer

from lienthong.schemas import codec, registry
from lienthong.schemas.compiled import to_avro_datum

TARGET_RATE = 100_000
RESULTS = Path(__file__).resolve().parent / "results" / "codec.json"
ICT = timezone(timedelta(hours=7))


def sample_events(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    agencies = ["000.00.15.H99", "000.00.16.H99", "G09.20", "000.23.15.H99", "VNPOST"]
    t0 = datetime(2026, 6, 9, 8, 0, tzinfo=ICT)
    out = []
    for i in range(n):
        dossier = f"G09.20-20260609-{i % 500:07d}"
        base = {"event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                "dossier": dossier,
                "at": (t0 + timedelta(seconds=37 * i)).isoformat(),
                "agency": rnd.choice(agencies[:4])}
        kind = rnd.choices(["received", "handoff", "supplement_requested", "result_ready",
                            "returned", "obligation_paid", "postal_update"],
                           [3, 4, 1, 2, 2, 1, 1])[0]
        extra: dict[str, Any] = {
            "received": {"procedure": "1.001193", "channel": "desk",
                         "applicant": {"name": "Nguyễn Văn A", "id_number": "001099012345"}},
            "handoff": {"to_agency": rnd.choice(agencies[:4]), "note": "Chuyển xử lý"},
            "supplement_requested": {"reason": "Thiếu bản sao giấy khai sinh"},
            "result_ready": {"decision": "approved"},
            "returned": {"channel": "desk"},
            "obligation_paid": {"amount_vnd": 150_000},
            "postal_update": {"agency": "VNPOST", "tracking_number": "EB123456789VN",
                              "leg": "result_out", "status": "in_transit"},
        }[kind]
        out.append({**base, "type": kind, **extra})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time budget (default 5)")
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()

    events = sample_events(args.batch)
    v = registry.latest("event")
    parsed = v.parsed
    flat = {"payload": "type"}
    avro_datums = [to_avro_datum(v.schema, e, flat) for e in events]
    encode, decode = codec.EVENTS.encode, codec.EVENTS.decode
    dumps, loads = json.dumps, json.loads

    def json_rt() -> None:
        for e in events:
            loads(dumps(e, ensure_ascii=False))

    def codec_rt() -> None:  # the gateway -> worker path: checked encode, then decode
        for e in events:
            decode(encode(e))

    def codec_rt_unchecked() -> None:
        for e in events:
            decode(encode(e, validate=False))

    def fastavro_rt() -> None:  # plain fastavro schemaless, parsed schema reused
        buf = BytesIO()
        for d in avro_datums:
            buf.seek(0)
            buf.truncate()
            schemaless_writer(buf, parsed, d)
            buf.seek(0)
            schemaless_reader(buf, parsed)

    for e in events:  # the codec must give every event back unchanged
        assert decode(encode(e)) == e

    variants: dict[str, Callable[[], None]] = {
        "json_roundtrip": json_rt, "codec_roundtrip": codec_rt,
        "codec_roundtrip_unchecked": codec_rt_unchecked, "fastavro_schemaless": fastavro_rt,
    }
    best = dict.fromkeys(variants, 0.0)
    deadline = time.perf_counter() + args.seconds
    rounds = 0
    while time.perf_counter() < deadline or rounds < 3:
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            best[name] = max(best[name], len(events) / (time.perf_counter() - t))
        rounds += 1

    ratio = best["codec_roundtrip"] / best["json_roundtrip"]
    ok = best["codec_roundtrip"] >= TARGET_RATE and ratio >= 1.0
    size = sum(len(encode(e)) for e in events) / len(events)
    jsize = sum(len(dumps(e, ensure_ascii=False).encode()) for e in events) / len(events)
    print(f"codec bench: {len(events)} events x {rounds} rounds, best round per variant")
    for name, rate in best.items():
        print(f"  {name:28s} {rate:12,.0f} events/s")
    print(f"  codec / json ratio           {ratio:12.2f}   (target >= 1.00)")
    print(f"  codec rate                   {best['codec_roundtrip']:12,.0f}   "
          f"(target >= {TARGET_RATE:,}/s per core)")
    print(f"  bytes per event: avro {size:.0f}, json {jsize:.0f}")
    print(f"  verdict: {'MET' if ok else 'NOT MET'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "bench": "codec", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(), "fastavro": fastavro.__version__,
        "events": len(events), "rounds": rounds,
        "rates_per_s": {k: round(r) for k, r in best.items()},
        "ratio_codec_vs_json": round(ratio, 3), "target_rate_per_s": TARGET_RATE,
        "target_ratio": 1.0, "met": ok,
        "bytes_per_event": {"avro": round(size, 1), "json": round(jsize, 1)},
    }, indent=2) + "\n", encoding="utf-8")
    print(f"  results: {RESULTS}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
