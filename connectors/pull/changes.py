"""One page of an agency system's change feed turned into Kafka records: events for
``dossier.events`` and dead letters for the changes that cannot be events.

No I/O here. Each change goes through the gateway's own intake (Unicode NFC, size limits, the
agency rule, the one codec), so a pulled event is held to exactly the contract of a pushed one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lienthong.connectors.gateway.intake import Encoder, Limits, check_events

#: Namespace of derived event ids: uuid5(PULL_NAMESPACE, "system|change_id").
PULL_NAMESPACE = uuid.UUID("9d4b1f63-2c7a-5e48-b0d6-31f5a8c2e7b4")

#: Dead-letter reason for a change that is not ``{change_id, event: {...}}``.
INVALID_CHANGE = "invalid_change"

Record = tuple[bytes | None, bytes]
DeadletterEncoder = Callable[[Mapping[str, Any]], bytes]


class FeedError(ValueError):
    """A feed answer that is not ``{changes: [...], next_cursor, more}``; nothing of it is used
    and the cursor stays where it was."""


@dataclass(frozen=True)
class Page:
    changes: list[Any]
    next_cursor: Any  # opaque: echoed back as ``cursor`` on the next poll
    more: bool


@dataclass(frozen=True)
class Outcome:
    """What one page becomes: events to publish (in feed order) and dead letters."""

    events: list[Record]  # (dossier code, codec bytes)
    event_ids: list[str]
    deadletters: list[Record]  # (dossier code or None, deadletter codec bytes)
    reasons: list[str]  # one per dead letter, for logs and metrics


def derive_event_id(system: str, change_id: str) -> str:
    """The event id of a change whose source gave none: the same change is the same event,
    however often it is polled."""
    return str(uuid.uuid5(PULL_NAMESPACE, f"{system}|{change_id}"))


def parse_page(data: Any) -> Page:
    if not isinstance(data, dict):
        raise FeedError("the answer is not a JSON object")
    changes, more = data.get("changes"), data.get("more")
    if not isinstance(changes, list):
        raise FeedError("changes: not a list")
    if not isinstance(more, bool):
        raise FeedError("more: not true/false")
    if "next_cursor" not in data or data["next_cursor"] is None:
        raise FeedError("next_cursor: missing")
    if more and not changes:
        raise FeedError("more is true but the page holds no change")
    return Page(changes, data["next_cursor"], more)


def _change_id(change: Any) -> str | None:
    cid = change.get("change_id") if isinstance(change, dict) else None
    if isinstance(cid, bool) or not isinstance(cid, str | int) or str(cid) == "":
        return None
    return str(cid)


def prepare(changes: Sequence[Any], *, system: str, agency: str, encode: Encoder,
            encode_deadletter: DeadletterEncoder, limits: Limits, source: str,
            at: datetime) -> Outcome:
    """Check every change of a page on its own: a bad one is dead-lettered, never blocks.

    ``system`` names the feed in derived ids; ``agency`` is the only agency whose events this
    feed may carry (as at the gateway); ``source`` is written as the dead letter's source.
    """
    bad: list[tuple[int, str, str, str | None]] = []  # (index, reason, detail, change id)
    events: list[Any] = []
    positions: list[int] = []  # events[i] is changes[positions[i]]
    for index, change in enumerate(changes):
        cid = _change_id(change)
        if cid is None:
            bad.append((index, INVALID_CHANGE, "change_id: missing or not a string/number",
                        None))
            continue
        event = change.get("event")
        if not isinstance(event, dict):
            bad.append((index, INVALID_CHANGE, "event: missing or not an object", cid))
            continue
        if event.get("event_id") in (None, ""):
            event = {**event, "event_id": derive_event_id(system, cid)}
        events.append(event)
        positions.append(index)
    accepted, rejected = check_events(events, agency, encode, limits)
    for r in rejected:
        index = positions[r.index]
        where = f"{r.field}: " if r.field else ""
        bad.append((index, r.reason, f"{where}{r.problem}", _change_id(changes[index])))
    deadletters: list[Record] = []
    reasons: list[str] = []
    for index, reason, detail, cid in sorted(bad):
        change = changes[index]
        original = json.dumps(change, ensure_ascii=False, separators=(",", ":"),
                              default=str).encode("utf-8")
        event = change.get("event") if isinstance(change, dict) else None
        dossier = event.get("dossier") if isinstance(event, dict) else None
        key = dossier.encode("utf-8") if isinstance(dossier, str) else None
        deadletters.append((key, encode_deadletter({
            "original": original, "key": key, "reason": reason,
            "detail": f"change {cid if cid is not None else f'#{index}'}: {detail}"[:4000],
            "source_topic": source, "partition": -1, "offset": -1, "at": at.isoformat()})))
        reasons.append(reason)
    return Outcome([(a.key, a.value) for a in accepted], [a.event_id for a in accepted],
                   deadletters, reasons)
