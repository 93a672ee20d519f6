"""The worker's policy for Python's cyclic garbage collector.

A worker holds every dossier state of its partitions for as long as it runs, and the
collector's full passes walk all of them: with 130,000 tracked objects (a few thousand states)
one pass took 80–250 ms on the pipeline bench, a pause every event in flight waits out, so
those passes alone set the p99 at 1,000 events/s. Dossier states are trees freed by reference
counting (the replay tests check that applying events makes no cycles), so a pass over them
finds nothing.

So the worker turns the automatic full passes off (the young generations are still collected
as usual, which is where short-lived cycles die) and every ``FREEZE_SECONDS`` freezes what
survived them (``gc.freeze``, constant time: frozen objects are never walked, and reference
counting still frees them). A cycle that an object frozen while alive becomes part of later
(faust's and aiokafka's own bookkeeping, not the states) would stay, so once every
``FULL_SECONDS`` everything is unfrozen and collected in one full pass, whose duration is
logged.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

FREEZE_SECONDS = 1.0
FULL_SECONDS = 3600.0
_NEVER = 1 << 30  # gen-1 collections before an automatic full pass


class CollectorPolicy:
    """:meth:`start` once when the worker starts; :meth:`tick` every ``FREEZE_SECONDS``."""

    def __init__(self, full_seconds: float = FULL_SECONDS) -> None:
        self.full_seconds = full_seconds
        self._last_full = time.monotonic()

    def start(self) -> None:
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, _NEVER)
        gc.freeze()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_full >= self.full_seconds:
            started = time.perf_counter()
            gc.unfreeze()
            found = gc.collect()
            self._last_full = now
            log.info("full garbage collection: %d unreachable objects freed in %.0f ms", found,
                     (time.perf_counter() - started) * 1000)
        gc.freeze()
