"""Working-calendar throughput: add_working_time and working_time_between operations per second.

Run: ``.venv/bin/python bench/bench_calendar.py [--ops N]``. Starts are spread over 2026 (with
Tết, the swapped Saturday and the National Day holidays) at minute resolution, amounts from
zero to 20 working days, as a year of dossiers would ask.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lienthong.services.domain.calendar import WorkingCalendar


def measure(ops: int, seed: int = 7) -> dict[str, float]:
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    calendar = WorkingCalendar(years=range(2026, 2028))
    rng = random.Random(seed)
    year_start = datetime(2026, 1, 1, tzinfo=tz)
    starts = [year_start + timedelta(minutes=rng.randrange(365 * 24 * 60)) for _ in range(ops)]
    amounts = [timedelta(minutes=rng.randrange(20 * 8 * 60)) for _ in range(ops)]

    t0 = time.perf_counter()
    dues = [calendar.add_working_time(s, a) for s, a in zip(starts, amounts, strict=True)]
    add_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for s, d in zip(starts, dues, strict=True):
        calendar.working_time_between(s, d)
    between_s = time.perf_counter() - t0

    return {
        "ops": ops,
        "add_working_time_ops_per_s": round(ops / add_s),
        "working_time_between_ops_per_s": round(ops / between_s),
    }


def _write_results(name: str, data: dict[str, Any]) -> None:
    """bench/results/<name>.json, for comparison over time."""
    path = Path(__file__).resolve().parent / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"bench": name, "when": datetime.now(UTC).isoformat(
        timespec="seconds"), "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        **data}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200_000)
    args = parser.parse_args()
    figures = measure(args.ops)
    print(json.dumps(figures))
    _write_results("calendar", figures)


if __name__ == "__main__":
    main()
