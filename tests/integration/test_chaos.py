"""The fast fault scenario under load: about 100 events through the real gateway, worker and
delivery service while the worker is killed with SIGKILL and restarted; the checker finds
nothing lost, applied twice or out of order, and every alert the domain core expects.

The other scenarios (two workers, a broker of three, the gateway with a spool, destinations
down or slow, the whole broker down) run with ``make chaos``.
"""

from __future__ import annotations

import time
from pathlib import Path

from lienthong.services.reliability.chaos import SCENARIOS, run_scenario
from lienthong.services.reliability.checker import table


async def test_a_worker_killed_under_load_loses_and_repeats_nothing(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    began = time.monotonic()
    result = await run_scenario(SCENARIOS["worker-kill"], bootstrap=kafka_bootstrap,
                                broker=None, workdir=tmp_path, rate=10, seconds=10,
                                settle=40)
    print()
    print(table([result.row()]))
    v = result.verdict
    assert v.events_in >= 90 and v.events_lost == 0
    assert v.deliveries_expected > 50 and v.lost == 0, v.examples
    assert v.duplicated_applied == 0 and v.out_of_order == 0, v.examples
    assert v.alerts_expected > 0 and v.alerts_missing == 0, v.examples
    assert v.ok
    assert result.recovery is not None
    assert not [n for n in result.notes if "unexpectedly" in n], result.notes
    assert time.monotonic() - began < 90
