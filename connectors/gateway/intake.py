"""From a request body to encoded events: parsing, Unicode NFC, size limits, the agency rule
and the contract's validation, with one rejection per refused event (field, problem, reason).

The contract is checked by one call, ``encode(event) -> bytes`` (the codec): it raises an error
carrying ``field`` and ``problem``, and its bytes are exactly what goes to Kafka.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Encoder = Callable[[Mapping[str, Any]], bytes]
OPERATOR_ONLY = ("operator", "corrects_event_id", "correction_reason", "voided_event_id")


@dataclass(frozen=True)
class Limits:
    """Request size limits; each refusal names the limit it hit."""

    max_body_bytes: int = 1 << 20  # 1 MiB per request
    max_batch: int = 500  # events per request
    max_string: int = 4000  # characters in any one string (after NFC)
    max_depth: int = 4  # nesting of objects/arrays inside one event
    max_event_bytes: int = 256 << 10  # encoded event; Kafka's default limit is 1 MiB


class BodyError(Exception):
    """The request as a whole is refused (``status`` 400 or 413)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail

    def to_json(self) -> dict[str, Any]:
        return {"error": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class Rejection:
    index: int
    event_id: str | None
    field: str | None
    problem: str
    reason: str  # forbidden_agency, operator_only, invalid_event, too_long, too_deep, ...
    status: int  # what this rejection alone would answer

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": self.event_id, "field": self.field,
                "problem": self.problem, "reason": self.reason}


@dataclass(frozen=True)
class Accepted:
    index: int
    event_id: str
    type: str
    key: bytes  # dossier code: the Kafka key keeps one dossier's events in order
    value: bytes


class _Problem(Exception):
    def __init__(self, field: str, problem: str, reason: str, status: int = 400) -> None:
        super().__init__(problem)
        self.field, self.problem, self.reason, self.status = field, problem, reason, status


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(body: bytes, limits: Limits) -> tuple[list[Any], bool]:
    """The events of a body (one object or an array) and whether it was a batch."""
    if len(body) > limits.max_body_bytes:
        raise BodyError(413, "body_too_large",
                        f"body is {len(body)} bytes; at most {limits.max_body_bytes}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, "malformed_json", f"body is not UTF-8 ({exc.reason})") from exc
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except (json.JSONDecodeError, ValueError) as exc:
        raise BodyError(400, "malformed_json", f"body is not JSON: {exc}") from exc
    except RecursionError as exc:  # a few hundred KB of "[[[[..." exhausts the parser's stack
        raise BodyError(400, "malformed_json", "body is nested too deeply to parse") from exc
    if isinstance(data, dict):
        return [data], False
    if isinstance(data, list):
        if not data:
            raise BodyError(400, "empty_batch", "the batch holds no event")
        if len(data) > limits.max_batch:
            raise BodyError(413, "batch_too_large",
                            f"batch holds {len(data)} events; at most {limits.max_batch}")
        return data, True
    raise BodyError(400, "not_an_event", "body must be an event object or an array of them")


# C0 controls but tab, line feed and carriage return; DEL and C1; bidi embeddings, overrides
# and isolates.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def normalise(value: Any, limits: Limits, path: str = "", depth: int = 0) -> Any:
    """The value with every string (keys too) in Unicode NFC, refusing over-long strings."""
    if isinstance(value, str):
        if len(value) > limits.max_string * 4:  # cheap early refusal before normalising
            raise _Problem(path, f"longer than {limits.max_string} characters", "too_long", 413)
        out = unicodedata.normalize("NFC", value)
        if len(out) > limits.max_string:
            raise _Problem(path, f"{len(out)} characters; at most {limits.max_string}",
                           "too_long", 413)
        bad = _CONTROL.search(out)
        if bad is not None:
            # NUL, escape sequences and bidi overrides have no place in a dossier's text: they
            # break agency databases and terminals, or disguise what a name says.
            raise _Problem(path, f"contains control character U+{ord(bad.group()):04X}",
                           "invalid_event", 422)
        return out
    if depth >= limits.max_depth and isinstance(value, dict | list):
        raise _Problem(path, f"nested deeper than {limits.max_depth} levels", "too_deep")
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for k, v in value.items():
            key = normalise(k, limits, path, depth + 1)
            result[key] = normalise(v, limits, f"{path}.{key}" if path else key, depth + 1)
        return result
    if isinstance(value, list):
        return [normalise(v, limits, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    return value


def _field_of(exc: Exception) -> tuple[str | None, str]:
    field = getattr(exc, "field", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return (str(field) if field else None), str(problem)


def check_events(items: list[Any], agency: str, encode: Encoder,
                 limits: Limits) -> tuple[list[Accepted], list[Rejection]]:
    """Each event checked on its own: a bad event never sinks the good ones beside it."""
    accepted: list[Accepted] = []
    rejected: list[Rejection] = []
    seen_ids: set[str] = set()
    for index, raw in enumerate(items):
        raw_id = raw.get("event_id") if isinstance(raw, dict) else None
        event_id = raw_id if isinstance(raw_id, str) else None
        try:
            if not isinstance(raw, dict):
                raise _Problem("", "each event must be a JSON object", "not_an_object")
            event = normalise(raw, limits)
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            claimed = event.get("agency")
            if isinstance(claimed, str) and claimed != agency:
                raise _Problem("agency", f"agency {agency!r} may only publish its own events, "
                               f"not {claimed!r}'s", "forbidden_agency", 403)
            operator_field = next((f for f in OPERATOR_ONLY if event.get(f) is not None), None)
            if event.get("type") == "event_voided" or operator_field is not None:
                # Voids and corrections are the hub operators' (lienthong correct, the
                # dashboard), signed in with a role that allows them, never an agency system's.
                raise _Problem(operator_field or "type", "voids and corrections are entered by "
                               "the hub's operators (dashboard or lienthong correct), not "
                               "through the gateway", "operator_only", 403)
            try:
                value = encode(event)
            except (ValueError, TypeError, KeyError) as exc:
                field, problem = _field_of(exc)
                raise _Problem(field or "", problem, "invalid_event", 422) from exc
            if claimed != agency:  # the codec refused a missing agency already; belt and braces
                raise _Problem("agency", "agency is required", "invalid_event", 422)
            if len(value) > limits.max_event_bytes:
                raise _Problem("", f"encoded event is {len(value)} bytes; at most "
                               f"{limits.max_event_bytes}", "too_large", 413)
            if event_id in seen_ids:
                raise _Problem("event_id", "the same event_id appears twice in this batch",
                               "duplicate_in_batch")
            assert event_id is not None  # the codec refuses an event without an id
            seen_ids.add(event_id)
            accepted.append(Accepted(index, event_id, str(event.get("type")),
                                     str(event["dossier"]).encode("utf-8"), value))
        except _Problem as p:
            rejected.append(Rejection(index, event_id, p.field or None, p.problem, p.reason,
                                      p.status))
    return accepted, rejected


def status_when_all_rejected(rejected: list[Rejection]) -> int:
    """403 if every event was another agency's, 413 if every one was oversize, else 422/400."""
    statuses = {r.status for r in rejected}
    if len(statuses) == 1:
        return statuses.pop()
    return 422 if 422 in statuses else 400
