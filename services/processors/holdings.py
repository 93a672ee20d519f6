"""Open and overdue dossiers per holding agency (cơ quan đang giữ hồ sơ), kept incrementally.

The worker exports them as ``lienthong_open_dossiers`` / ``lienthong_overdue_dossiers`` for the
dossiers of its own partitions; Prometheus sums the workers. Counting follows each changed
dossier (its holder, and whether it is overdue now) rather than rescanning the table, so the
cost is per change, and a full recount happens only after a rebalance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from lienthong.services.domain.catalogue import Catalogue
from lienthong.services.domain.dossier import DossierState, dossier_outcome
from lienthong.services.processors import metrics, stored

Label = tuple[str, str]  # (agency, level)


class Holdings:
    __slots__ = ("_catalogue", "_of", "_open", "_overdue")

    def __init__(self, catalogue: Catalogue) -> None:
        self._catalogue = catalogue
        self._of: dict[bytes, tuple[Label, bool]] = {}  # open dossiers only
        self._open: Counter[Label] = Counter()
        self._overdue: Counter[Label] = Counter()

    def update(self, changed: Iterable[tuple[bytes, DossierState]], now: datetime) -> None:
        """Count these dossiers as they are now, and publish the labels they touched."""
        touched: set[Label] = set()
        for key, state in changed:
            old = self._of.pop(key, None)
            if old is not None:
                self._open[old[0]] -= 1
                self._overdue[old[0]] -= old[1]
                touched.add(old[0])
            if state.ended:
                continue
            agency = self._catalogue.agency(state.holder)
            label = (state.holder, agency.level if agency else "unknown")
            overdue = dossier_outcome(state, self._catalogue, now) == "overdue"
            self._of[key] = (label, overdue)
            self._open[label] += 1
            self._overdue[label] += overdue
            touched.add(label)
        for label in touched:
            metrics.OPEN_DOSSIERS.labels(*label).set(self._open[label])
            metrics.OVERDUE_DOSSIERS.labels(*label).set(self._overdue[label])

    def recount(self, states: Iterable[tuple[bytes, DossierState]], now: datetime) -> None:
        """Count these dossiers afresh (after a rebalance or a restart), replacing every count.

        One pass, each open dossier's entry one of a few shared (label, overdue) pairs, and
        the counters summed per pair once at the end: the cost per dossier is its outcome and
        two dictionary steps.
        """
        self._recount(((key, state.holder,
                        dossier_outcome(state, self._catalogue, now) == "overdue")
                       for key, state in states if state.end_type is None))

    def recount_open(self, entries: Iterable[tuple[bytes, str, float | None]],
                     now: datetime) -> None:
        """``recount`` from (key, holder, overdue from) of the open dossiers, as the stored
        form's index header gives them (``stored.py``): overdue when ``now`` is later than
        "overdue from"."""
        at = now.timestamp()
        self._recount((key, holder, stored.overdue(overdue_from, at))
                      for key, holder, overdue_from in entries)

    def _recount(self, entries: Iterable[tuple[bytes, str, bool]]) -> None:
        """Count afresh from (key, holder, overdue) of every open dossier."""
        self.reset()
        catalogue = self._catalogue
        pairs: dict[tuple[str, bool], tuple[Label, bool]] = {}
        of = self._of
        for key, holder, overdue in entries:
            pair = pairs.get((holder, overdue))
            if pair is None:
                agency = catalogue.agency(holder)
                pair = pairs[(holder, overdue)] = (
                    (holder, agency.level if agency else "unknown"), overdue)
            of[key] = pair
        for (label, overdue), n in Counter(of.values()).items():
            self._open[label] += n
            if overdue:
                self._overdue[label] += n
        for label in self._open:
            metrics.OPEN_DOSSIERS.labels(*label).set(self._open[label])
            metrics.OVERDUE_DOSSIERS.labels(*label).set(self._overdue[label])

    def reset(self) -> None:
        """Forget every dossier (partitions moved); the caller recounts what it owns."""
        self._of.clear()
        self._open.clear()
        self._overdue.clear()
        metrics.OPEN_DOSSIERS.clear()
        metrics.OVERDUE_DOSSIERS.clear()

    def open(self, label: Label) -> int:
        return self._open[label]

    def overdue(self, label: Label) -> int:
        return self._overdue[label]
