"""Dossier events (DESIGN section 4): the canonical JSON form, parsed and checked.

Every event is a flat JSON object with ``event_id`` (a UUID chosen by the producer), ``type``,
``dossier`` (mã hồ sơ), ``at`` (an ISO-8601 instant with offset) and ``agency`` (the agency that
did the thing), plus the fields of its type:

=======================  ==========================================================
type                     extra fields
=======================  ==========================================================
received                 procedure, channel (desk/online/postal), applicant,
                         optional appointment_at (ngày hẹn trả of the source system)
handoff                  to_agency, optional note (chuyển hồ sơ)
supplement_requested     reason (yêu cầu bổ sung, hoàn thiện hồ sơ)
supplement_received      —
obligation_requested     amount_vnd (nghĩa vụ tài chính)
obligation_paid          amount_vnd
apology_issued           new_due_at, reason (xin lỗi và hẹn lại ngày trả)
result_ready             decision (approved/refused)
returned                 channel (desk/postal)
withdrawn / stopped      reason
postal_update            tracking_number, leg (dossier_in/result_out), status
event_voided             voided_event_id, reason, operator (hủy sự kiện; an operator
                         voids a wrong event, which stays in the log)
=======================  ==========================================================

Any event may also carry ``operator`` (the hub operator who entered it) and, when entered as a
correction of an earlier event, ``corrects_event_id`` with ``correction_reason`` (contract
version 3); ``event_voided`` requires ``operator``, a correction requires both others too. The
applicant may carry ``phone``, ``email`` and ``zalo_user_id`` for notifications.

A field of another type is accepted only when it is null (a flat Avro record decoded to a dict
carries every optional field); an unknown field is refused, so a misspelt optional field is
never silently ignored. Free text is normalised to Unicode NFC, so the same Vietnamese name
typed on two keyboards (NFC or NFD) is the same name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

from .identifiers import (
    agency_code_problem,
    dossier_code_problem,
    email_problem,
    phone_problem,
    procedure_code_problem,
)

EventType = Literal[
    "received", "handoff", "supplement_requested", "supplement_received",
    "obligation_requested", "obligation_paid", "apology_issued", "result_ready",
    "returned", "withdrawn", "stopped", "postal_update", "event_voided",
]

RECEIVED_CHANNELS = ("desk", "online", "postal")
RETURN_CHANNELS = ("desk", "postal")
DECISIONS = ("approved", "refused")
POSTAL_LEGS = ("dossier_in", "result_out")
POSTAL_STATUSES = ("picked_up", "in_transit", "delivered", "failed", "returned_to_sender")

COMMON_FIELDS = ("event_id", "type", "dossier", "at", "agency")
# Fields of the contract any event may carry that the engine does not use (Avro event schema
# v2 adds ``correlation_id``); accepted so a newer producer's events are not refused.
CARRIED_FIELDS = ("correlation_id",)
# Who entered an event on the hub and what it corrects (contract version 3); any type.
CORRECTION_FIELDS = ("operator", "corrects_event_id", "correction_reason")
VOIDED = "event_voided"

# Extra fields per type: (name, required).
TYPE_FIELDS: dict[str, tuple[tuple[str, bool], ...]] = {
    "received": (("procedure", True), ("channel", True), ("applicant", True),
                 ("appointment_at", False)),
    "handoff": (("to_agency", True), ("note", False)),
    "supplement_requested": (("reason", True),),
    "supplement_received": (),
    "obligation_requested": (("amount_vnd", True),),
    "obligation_paid": (("amount_vnd", True),),
    "apology_issued": (("new_due_at", True), ("reason", True)),
    "result_ready": (("decision", True),),
    "returned": (("channel", True),),
    "withdrawn": (("reason", True),),
    "stopped": (("reason", True),),
    "postal_update": (("tracking_number", True), ("leg", True), ("status", True)),
    "event_voided": (("voided_event_id", True), ("reason", True)),
}
EVENT_TYPES: tuple[str, ...] = tuple(TYPE_FIELDS)

_ALL_FIELDS = frozenset(COMMON_FIELDS).union(
    name for fields in TYPE_FIELDS.values() for name, _ in fields)
_ALLOWED = {t: frozenset(COMMON_FIELDS + CARRIED_FIELDS + CORRECTION_FIELDS).union(
    n for n, _ in f) for t, f in TYPE_FIELDS.items()}

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_TEXT = 2000  # longest free text (reason, note, names) the hub accepts
MAX_ID = 200  # longest operator login, Zalo user id


class InvalidEvent(ValueError):
    """An event that does not follow the contract; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Applicant:
    """Người nộp hồ sơ: personal data, masked in logs (Decree 13/2023)."""

    name: str
    id_number: str | None = None
    phone: str | None = None  # contact for notifications (contract version 3)
    email: str | None = None
    zalo_user_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.id_number is not None:
            out["id_number"] = self.id_number
        if self.phone is not None:
            out["phone"] = self.phone
        if self.email is not None:
            out["email"] = self.email
        if self.zalo_user_id is not None:
            out["zalo_user_id"] = self.zalo_user_id
        return out


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to a dossier. Fields not used by ``type`` are None."""

    event_id: str
    type: str
    dossier: str
    at: datetime
    agency: str
    procedure: str | None = None
    channel: str | None = None
    applicant: Applicant | None = None
    appointment_at: datetime | None = None
    to_agency: str | None = None
    note: str | None = None
    reason: str | None = None
    amount_vnd: int | None = None
    new_due_at: datetime | None = None
    decision: str | None = None
    tracking_number: str | None = None
    leg: str | None = None
    status: str | None = None
    voided_event_id: str | None = None
    operator: str | None = None
    corrects_event_id: str | None = None
    correction_reason: str | None = None


class _Draft:
    """An :class:`Event` being built: the same slots, without the frozen ``__setattr__``.

    Once filled in it becomes an Event by ``__class__`` assignment (the layouts are the same),
    several times cheaper than the frozen dataclass's ``__init__``, which sets each of the 18
    fields through ``object.__setattr__``; parsing is on the hot path of every event.
    """

    __slots__ = (
        "agency",
        "amount_vnd",
        "applicant",
        "appointment_at",
        "at",
        "channel",
        "correction_reason",
        "corrects_event_id",
        "decision",
        "dossier",
        "event_id",
        "leg",
        "new_due_at",
        "note",
        "operator",
        "procedure",
        "reason",
        "status",
        "to_agency",
        "tracking_number",
        "type",
        "voided_event_id",
    )

    def __init__(self, event_id: str, etype: str, dossier: str, at: datetime,
                 agency: str) -> None:
        self.event_id = event_id
        self.type = etype
        self.dossier = dossier
        self.at = at
        self.agency = agency
        self.procedure = self.channel = self.applicant = self.appointment_at = None
        self.to_agency = self.note = self.reason = self.amount_vnd = self.new_due_at = None
        self.decision = self.tracking_number = self.leg = self.status = None
        self.voided_event_id = self.operator = None
        self.corrects_event_id = self.correction_reason = None

    def done(self) -> Event:
        self.__class__ = Event  # type: ignore[assignment]
        return self  # type: ignore[return-value]


# Identifier shapes repeat across events (a province has a few hundred agencies, a dossier has
# several events); remember the good ones so the hot path pays for each regex about once.
# Bounded (emptied when full) so hostile input cannot grow them.
_GOOD_AGENCIES: set[str] = set()
_GOOD_PROCEDURES: set[str] = set()
_GOOD_DOSSIERS: set[str] = set()  # recent ones: a dossier's events come close together
_CACHE_LIMIT = 100_000


def _instant(data: Mapping[str, Any], name: str) -> datetime:
    value = data[name]
    if not isinstance(value, str):
        raise InvalidEvent(name, "must be an ISO-8601 instant string with offset")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(name, f"{value[:40]!r} is not an ISO-8601 instant") from None
    if t.tzinfo is None or t.utcoffset() is None:
        raise InvalidEvent(name, f"{value[:40]!r} has no UTC offset (write e.g. +07:00)")
    return t


def _code(data: Mapping[str, Any], name: str, good: set[str],
          problem_of: Callable[[object], str | None]) -> str:
    """An identifier checked by ``problem_of``, remembered in ``good`` once found good."""
    value = data[name]
    if type(value) is str and value in good:
        return value
    problem = problem_of(value)
    if problem:
        raise InvalidEvent(name, problem)
    if len(good) >= _CACHE_LIMIT:
        good.clear()
    good.add(value)
    return value  # type: ignore[no-any-return]


def _agency(data: Mapping[str, Any], name: str) -> str:
    return _code(data, name, _GOOD_AGENCIES, agency_code_problem)


def _text(data: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise InvalidEvent(name, "must be a string")
    if required and not value.strip():
        raise InvalidEvent(name, "must not be empty")
    if len(value) > MAX_TEXT:
        raise InvalidEvent(name, f"is longer than {MAX_TEXT} characters")
    return value if value.isascii() else unicodedata.normalize("NFC", value)


def _choice(data: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = data[name]
    if value not in allowed:
        raise InvalidEvent(name, f"{value!r} is not one of {', '.join(allowed)}")
    return value  # type: ignore[no-any-return]


def _amount(data: Mapping[str, Any], name: str) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidEvent(name, "must be a whole number of đồng, zero or more")
    return value


class _ApplicantDraft:
    """An :class:`Applicant` of name and ID number without the frozen dataclass's
    ``__init__`` (five ``object.__setattr__`` calls, once per receipt), as ``_Draft``."""

    __slots__ = ("email", "id_number", "name", "phone", "zalo_user_id")

    def __init__(self, name: str, id_number: str | None) -> None:
        self.name = name
        self.id_number = id_number
        self.phone = self.email = self.zalo_user_id = None


_APPLICANT_FIELDS = frozenset({"name", "id_number", "phone", "email", "zalo_user_id"})


def _applicant(data: Mapping[str, Any], name: str) -> Applicant:
    value = data[name]
    if type(value) is not dict and not isinstance(value, Mapping):
        raise InvalidEvent(name, "must be an object with name and id_number")
    if not _APPLICANT_FIELDS.issuperset(value):
        unknown = set(value) - _APPLICANT_FIELDS
        raise InvalidEvent(f"{name}.{sorted(unknown)[0]}", "is not a field of applicant")
    if "name" not in value:
        raise InvalidEvent(f"{name}.name", "is required")
    person = _text(value, "name")
    id_number = value.get("id_number")
    if id_number is not None:
        id_number = _text(value, "id_number")
    n = len(value)
    if n == 1 or (n == 2 and "id_number" in value):
        draft = _ApplicantDraft(person, id_number)
        draft.__class__ = Applicant  # type: ignore[assignment]
        return draft  # type: ignore[return-value]
    contact: dict[str, str | None] = {}
    for field, problem_of in (("phone", phone_problem), ("email", email_problem),
                              ("zalo_user_id", _identifier_problem)):
        item = value.get(field)
        if item is not None:
            problem = problem_of(item)
            if problem:
                raise InvalidEvent(f"{name}.{field}", problem)
        contact[field] = item
    return Applicant(person, id_number, **contact)


def parse_event(data: Mapping[str, Any], tz: tzinfo | None = None) -> Event:
    """Check a canonical JSON event (already decoded from JSON) and build its Event.

    With ``tz`` (the province's zone), ``at`` is converted to it: the same instant, and every
    later comparison with the calendar's instants is cheaper. Raises InvalidEvent(field,
    problem) naming the first problem found.
    """
    if type(data) is not dict and not isinstance(data, Mapping):
        raise InvalidEvent("", "an event must be a JSON object")
    etype: Any = data.get("type")
    spec = _SPECS.get(etype) if isinstance(etype, str) else None
    if spec is None:
        raise InvalidEvent("type", f"{etype!r} is not one of {', '.join(EVENT_TYPES)}")
    allowed, fields = spec
    if type(etype) is not str:
        etype = str(etype)
    if not allowed.issuperset(data):  # the keys; a little cheaper than keys() <= allowed
        for key in data:
            if key not in allowed:
                if key in _ALL_FIELDS:
                    if data[key] is None:
                        continue
                    raise InvalidEvent(key, f"is not a field of a {etype} event")
                raise InvalidEvent(str(key), "is not a field of any event")
    get = data.get
    event_id, dossier, at, agency = get("event_id"), get("dossier"), get("at"), get("agency")
    if event_id is None or dossier is None or at is None or agency is None:
        for name in COMMON_FIELDS:
            if get(name) is None:
                raise InvalidEvent(name, "is required")
    if not isinstance(event_id, str) or not _UUID.match(event_id):
        raise InvalidEvent("event_id", "must be a UUID like 5b1e7c1e-0d4e-4c9a-9d3e-2f1a0b9c8d7e")
    if type(dossier) is not str or dossier not in _GOOD_DOSSIERS:
        dossier = _code(data, "dossier", _GOOD_DOSSIERS, dossier_code_problem)
    if type(at) is str:
        try:
            instant = datetime.fromisoformat(at)
        except ValueError:
            instant = _instant(data, "at")  # raises with the reason
        if instant.tzinfo is None:
            instant = _instant(data, "at")  # raises with the reason
    else:
        instant = _instant(data, "at")
    if tz is not None:
        instant = instant.astimezone(tz)
    if type(agency) is not str or agency not in _GOOD_AGENCIES:
        agency = _agency(data, "agency")
    draft = _Draft(event_id.lower(), etype, dossier, instant, agency)
    for name, required, parse in fields:
        if get(name) is None:
            if required:
                raise InvalidEvent(name, f"is required for a {etype} event")
            continue
        setattr(draft, name, parse(data, name, etype))
    if etype == VOIDED or "operator" in data or "corrects_event_id" in data:
        _correction(data, draft, etype)
    draft.__class__ = Event  # type: ignore[assignment]  # done(), inlined: every event
    return draft  # type: ignore[return-value]


def _identifier_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID:
        return f"must be a non-empty string of at most {MAX_ID} characters"
    return None


def _event_id(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not _UUID.match(value):
        raise InvalidEvent(name, "must be a UUID like 5b1e7c1e-0d4e-4c9a-9d3e-2f1a0b9c8d7e")
    return value.lower()


def _correction(data: Mapping[str, Any], draft: _Draft, etype: str) -> None:
    """Operator, and what a correction corrects (contract version 3)."""
    if data.get("operator") is not None:
        problem = _identifier_problem(data["operator"])
        if problem:
            raise InvalidEvent("operator", problem)
        draft.operator = data["operator"]
    if etype == VOIDED:
        if draft.operator is None:
            raise InvalidEvent("operator", "is required for an event_voided event")
        if data.get("corrects_event_id") is not None:
            raise InvalidEvent("corrects_event_id", "is not a field of an event_voided event")
        draft.voided_event_id = _event_id(data, "voided_event_id")
        return
    if data.get("corrects_event_id") is None:
        return
    if draft.operator is None:
        raise InvalidEvent("operator", "is required for an event entered as a correction "
                           "(corrects_event_id)")
    if data.get("correction_reason") is None:
        raise InvalidEvent("correction_reason", "is required for an event entered as a "
                           "correction (corrects_event_id)")
    draft.corrects_event_id = _event_id(data, "corrects_event_id")
    draft.correction_reason = _text(data, "correction_reason")


def _procedure(data: Mapping[str, Any], name: str, _t: str) -> str:
    value = data[name]
    if type(value) is str and value in _GOOD_PROCEDURES:
        return value
    return _code(data, name, _GOOD_PROCEDURES, procedure_code_problem)


def _channel(data: Mapping[str, Any], name: str, etype: str) -> str:
    allowed = RECEIVED_CHANNELS if etype == "received" else RETURN_CHANNELS
    value = data[name]
    if type(value) is str and value in allowed:
        return value
    return _choice(data, name, allowed)


_FieldParser = Callable[[Mapping[str, Any], str, str], object]

def _to_agency(data: Mapping[str, Any], name: str, _t: str) -> str:
    value = data[name]
    if type(value) is str and value in _GOOD_AGENCIES:  # the usual case, without a call
        return value
    return _code(data, name, _GOOD_AGENCIES, agency_code_problem)


def _decision(data: Mapping[str, Any], name: str, _t: str) -> str:
    value = data[name]
    if value == "approved" or value == "refused":
        return value  # type: ignore[no-any-return]
    return _choice(data, name, DECISIONS)


_FIELD_PARSERS: dict[str, _FieldParser] = {
    "procedure": _procedure,
    "channel": _channel,
    "applicant": lambda d, n, _t: _applicant(d, n),
    "appointment_at": lambda d, n, _t: _instant(d, n),
    "to_agency": _to_agency,
    "note": lambda d, n, _t: _text(d, n, required=False),
    "reason": lambda d, n, _t: _text(d, n),
    "amount_vnd": lambda d, n, _t: _amount(d, n),
    "new_due_at": lambda d, n, _t: _instant(d, n),
    "decision": _decision,
    "tracking_number": lambda d, n, _t: _text(d, n),
    "leg": lambda d, n, _t: _choice(d, n, POSTAL_LEGS),
    "status": lambda d, n, _t: _choice(d, n, POSTAL_STATUSES),
    "voided_event_id": lambda d, n, _t: _event_id(d, n),
}

# Per type: the fields it may carry, and its own fields with whether required and their parser.
_SPECS: dict[str, tuple[frozenset[str], tuple[tuple[str, bool, _FieldParser], ...]]] = {
    t: (_ALLOWED[t], tuple((n, r, _FIELD_PARSERS[n]) for n, r in f))
    for t, f in TYPE_FIELDS.items()
}


def event_to_json(event: Event) -> dict[str, Any]:
    """The canonical JSON object of an event (only the fields of its type)."""
    out: dict[str, Any] = {
        "event_id": event.event_id, "type": event.type, "dossier": event.dossier,
        "at": event.at.isoformat(), "agency": event.agency,
    }
    for name, _ in TYPE_FIELDS[event.type]:
        value = getattr(event, name)
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Applicant):
            value = value.to_json()
        out[name] = value
    for name in CORRECTION_FIELDS:
        value = getattr(event, name)
        if value is not None:
            out[name] = value
    return out
