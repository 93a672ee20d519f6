"""The one codec: canonical JSON dicts <-> Avro single-object encoding.

Wire format (Avro specification, "Single-object encoding")::

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema | Avro binary body

Usage::

    from lienthong.schemas import codec

    data = codec.encode_event({"event_id": "5b1e…", "type": "handoff", ...})  # checks, encodes
    event = codec.decode_event(data)  # the same canonical dict back

One ``Codec`` per record kind: ``EVENTS``, ``DELIVERIES``, ``ALERTS``, ``DEADLETTERS``,
``RECEIPTS``, ``RECEIPTS_EXPECTED``, ``AUDIT_ENTRIES`` and ``AUDIT_CHECKPOINTS``. Each
writes the latest schema version of its kind and reads every version listed in
``registry.VERSIONS``: the latest through a generated straight-line reader (``compiled``), older
ones through fastavro's schema resolution. Errors are ``CodecError`` subclasses carrying a
dead-letter ``reason``: ``InvalidRecord`` (a record breaking the contract, ``field`` names it),
``UnknownSchema`` (a fingerprint no known version has) and ``CorruptRecord`` (bytes that are not
a well-formed record of a known version: truncated, bad marker, bad UTF-8…).

Canonical forms:

- event: the flat JSON object of DESIGN section 4; optional fields that are null are left out
  on decode (null and absent are the same on encode). Avro keeps the payload fields of each type
  in its own record of the ``payload`` union, chosen by ``type``.
- delivery: ``payload`` is a JSON object; on the wire it is its JSON text (UTF-8).
- alert and dead letter: every field present, null where the schema allows; an alert's
  ``cause`` (version 2) is left out when null, so alerts without one read as they always did.
- receipt, awaited receipt, audit entry and audit checkpoint: every field present; hashes in
  audit entries are 32 raw bytes (``prev``, ``content_sha256`` and, from version 2,
  ``dossier_sha256``; a version-1 entry reads with it empty), and the source record's bytes are
  ``content``.

Instants (``at``, ``due_at``…) are Avro strings holding the ISO-8601 text exactly as sent, so the
offset (+07:00 for the sample province) survives and decoding costs nothing; they are checked to
parse with an offset. Text is never normalised: NFC and NFD Vietnamese come back byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from io import BytesIO
from typing import Any

import orjson
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import expand_schema

from . import registry
from .compiled import (
    Compiled,
    Unsupported,
    compile_schema,
    field_names,
    from_avro_datum,
    to_avro_datum,
)
from .validation import (
    _INT,
    _LONG,
    MAX_DETAIL,
    CodecError,
    InvalidRecord,
    RecordCheck,
    _whole,
    agency,
    dossier,
    email,
    identifier,
    instant,
    json_object,
    phone,
    procedure,
    reason_code,
    text,
    topic_name,
    uuid,
)

__all__ = [
    "ALERTS", "AUDIT_CHECKPOINTS", "AUDIT_ENTRIES", "DEADLETTERS", "DELIVERIES", "EVENTS",
    "MAGIC", "RECEIPTS", "RECEIPTS_EXPECTED",
    "Codec", "CodecError", "CorruptRecord", "InvalidRecord", "UnknownSchema",
    "codec_for", "decode_alert", "decode_deadletter", "decode_delivery", "decode_event",
    "encode_alert", "encode_deadletter", "encode_delivery", "encode_event", "identify",
]

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10


class UnknownSchema(CodecError):
    """The bytes name a writer schema (by fingerprint) this codec does not know."""

    reason = "unknown_schema"

    def __init__(self, message: str, fingerprint: bytes) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


class CorruptRecord(CodecError):
    """The bytes are not a well-formed Avro single-object record of a known version."""

    reason = "corrupt_record"


# Failures a generated reader or writer can raise on bad input.
_DATA_ERRORS = (IndexError, KeyError, ValueError, TypeError, AttributeError, UnicodeError,
                EOFError, OverflowError)


class Codec:
    """Encoder and decoder of one record kind (event, delivery, alert, deadletter)."""

    def __init__(self, kind: str, *, reader_version: int | None = None,
                 flat: Mapping[str, str] | None = None, omit_null: bool = False,
                 specific: Mapping[str, Callable[[Any], str | None]] | None = None,
                 extra_check: Callable[[Mapping[str, Any]], None] | None = None,
                 to_wire: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
                 from_wire: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 check_schema: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 from_wire_when: str | None = None,
                 to_wire_when: str | None = None,
                 requires: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self._options: dict[str, Any] = {
            "flat": flat, "omit_null": omit_null, "specific": specific,
            "extra_check": extra_check, "to_wire": to_wire, "from_wire": from_wire,
            "check_schema": check_schema, "from_wire_when": from_wire_when,
            "to_wire_when": to_wire_when, "requires": requires}
        known = registry.versions(kind)
        # An older reader_version models a component deployed before a newer schema: it writes
        # its own version and still reads every version it is told about.
        current = known[-1] if reader_version is None else known[reader_version - 1]
        self.kind = kind
        self.version = current.version
        self.schema: dict[str, Any] = current.schema
        self.fingerprint = current.fingerprint
        self._header = MAGIC + current.fingerprint
        self._flat = dict(flat or {})
        self._omit_null = omit_null
        self._known = {v.fingerprint: v for v in known}
        self._reader_parsed = current.parsed
        # The canonical form may differ from the wire (``check_schema``): records are checked
        # in their canonical shape, before ``to_wire``.
        canonical = current.schema if check_schema is None else check_schema(current.schema)
        # Optional fields added since the first version are mostly absent: the generated
        # code tests runs of them at once.
        added = field_names(expand_schema(current.schema)) - field_names(
            expand_schema(known[0].schema))
        self._check = RecordCheck(canonical, specific or {}, flat=self._flat,
                                  requires=requires, added=added).function
        self._extra_check = extra_check
        self._to_wire = to_wire
        self._from_wire = from_wire
        # With ``from_wire_when``, only records holding that field go through ``from_wire``.
        self._from_wire_when = from_wire_when
        # With ``to_wire_when``, only records holding that field go through ``to_wire``.
        self._to_wire_when = to_wire_when
        self._compiled: Compiled | None
        try:
            self._compiled = compile_schema(expand_schema(current.schema), flat=self._flat,
                                            omit_null=omit_null, added=added)
        except Unsupported:
            self._compiled = None

    def __repr__(self) -> str:
        return f"<Codec {self.kind} v{self.version} {self.fingerprint.hex()}>"

    # -- checking -------------------------------------------------------------------------
    def validate(self, record: Mapping[str, Any]) -> None:
        """Raise ``InvalidRecord(field, problem)`` for the first problem of a canonical record."""
        self._check(record)
        if self._extra_check is not None:
            self._extra_check(record)

    # -- encoding -------------------------------------------------------------------------
    def encode(self, record: Mapping[str, Any], *, validate: bool = True) -> bytes:
        """Canonical dict -> single-object bytes of the current version."""
        if validate:
            self._check(record)
            if self._extra_check is not None:
                self._extra_check(record)
        if self._to_wire is not None and (self._to_wire_when is None
                                          or self._to_wire_when in record):
            record = self._to_wire(record)
        compiled = self._compiled
        try:
            if compiled is not None:
                out = bytearray(self._header)
                compiled.write(record, out)
                return bytes(out)
            buf = BytesIO()
            buf.write(self._header)
            schemaless_writer(buf, self._reader_parsed,
                              to_avro_datum(self.schema, record, self._flat))
            return buf.getvalue()
        except _DATA_ERRORS as exc:
            # Only reachable with validate=False (the checks above catch these first).
            raise InvalidRecord("", f"cannot encode this {self.kind}: {exc!r}") from exc

    # -- decoding -------------------------------------------------------------------------
    def decode(self, data: bytes, *, validate: bool = False) -> dict[str, Any]:
        """Single-object bytes of any known version -> canonical dict (current version's shape).

        ``validate=True`` also checks the decoded record like ``encode`` does (for bytes from
        producers other than this codec).
        """
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise CorruptRecord(f"expected bytes, got {type(data).__name__}")
            data = bytes(data)
        if data.startswith(self._header) and self._compiled is not None:
            try:
                record, end = self._compiled.read(data, HEADER_SIZE)
            except _DATA_ERRORS as exc:
                raise CorruptRecord(f"malformed {self.kind} v{self.version} body: "
                                    f"{_describe(exc)}") from None
            if end != len(data):
                raise CorruptRecord(f"{self.kind} v{self.version} body is "
                                    f"{'truncated' if end > len(data) else 'followed by junk'}")
        else:
            if data[:2] != MAGIC or len(data) < HEADER_SIZE:
                raise CorruptRecord("not Avro single-object encoding (no C3 01 marker and "
                                    "8-byte fingerprint)")
            record = self._decode_resolved(data, data[2:HEADER_SIZE])
        if self._from_wire is not None and (self._from_wire_when is None
                                            or self._from_wire_when in record):
            try:
                record = self._from_wire(record)
            except _DATA_ERRORS as exc:
                raise CorruptRecord(f"malformed {self.kind}: {_describe(exc)}") from None
        if validate:
            self.validate(record)
        return record

    def _decode_resolved(self, data: bytes, fp: bytes) -> dict[str, Any]:
        writer = self._known.get(fp)
        if writer is None:
            other = registry.by_fingerprint().get(fp)
            if other is not None:
                raise UnknownSchema(f"fingerprint {fp.hex()} is {other.kind} v{other.version}, "
                                    f"not a {self.kind}", fp)
            raise UnknownSchema(f"unknown {self.kind} schema fingerprint {fp.hex()}", fp)
        buf = BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            # fastavro resolves the writer's version to this codec's version (defaults filled,
            # removed fields skipped).
            value = schemaless_reader(buf, writer.parsed, self._reader_parsed)
        except Exception as exc:  # fastavro raises many types on malformed input
            raise CorruptRecord(f"malformed {self.kind} v{writer.version} body: "
                                f"{_describe(exc)}") from None
        if buf.tell() != len(data):
            raise CorruptRecord(f"{self.kind} v{writer.version} body is followed by junk")
        return from_avro_datum(self.schema, value, self._flat, self._omit_null)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, IndexError | EOFError):
        return "truncated"
    if isinstance(exc, UnicodeError):
        return "text is not valid UTF-8"
    if isinstance(exc, KeyError):
        return f"unknown enum or union index {exc}"
    return str(exc) or type(exc).__name__


# -- the four kinds -----------------------------------------------------------------------

# -- events, and the operator's void of version 3 ---------------------------------------
#
# An Avro enum cannot gain a symbol under FULL_TRANSITIVE compatibility (a version 2 reader
# would have no symbol to read it as), so the canonical type ``event_voided`` has no wire type
# of its own: a void is the record whose ``voided_event_id`` is set, written as type
# ``received`` with an empty Received payload and its reason in ``correction_reason``. A reader
# of versions 1 and 2 sees an invalid second receipt and refuses it; it can never apply it.
VOIDED = "event_voided"
_VOID_CARRIER = {"type": "received", "procedure": "", "channel": "desk",
                 "applicant": {"name": ""}}
_VOID_FIELDS = ("voided_event_id", "reason")
_CORRECTION_FIELDS = ("operator", "corrects_event_id", "correction_reason")


def _void_in_canonical_form(schema: dict[str, Any]) -> dict[str, Any]:
    """The event schema as canonical JSON sees it: ``event_voided`` is one more type, whose
    ``operator`` is required and which carries no correction fields; every other type may
    carry ``operator``, ``corrects_event_id`` and ``correction_reason``."""
    by_name = {f["name"]: f for f in schema["fields"]}
    if "voided_event_id" not in by_name:
        return schema  # a version before 3: no voids
    moved = [by_name[n] for n in _CORRECTION_FIELDS]
    fields = []
    for f in schema["fields"]:
        if f["name"] in _CORRECTION_FIELDS or f["name"] == "voided_event_id":
            continue
        if f["name"] == "payload":
            branches = [{**b, "fields": [*b["fields"], *moved]} for b in f["type"]]
            branches.append({
                "type": "record", "name": "EventVoided", "namespace": "vn.lienthong.event",
                "fields": [{"name": "voided_event_id", "type": "string"},
                           {"name": "reason", "type": "string"},
                           {"name": "operator", "type": "string"}]})
            f = {**f, "type": branches}
        fields.append(f)
    return {**schema, "fields": fields}


def _event_to_wire(record: Mapping[str, Any]) -> Mapping[str, Any]:
    if record.get("type") != VOIDED:
        return record
    out = {k: v for k, v in record.items() if k not in _VOID_FIELDS}
    out.update(_VOID_CARRIER, voided_event_id=record["voided_event_id"],
               correction_reason=record["reason"])
    return out


def _event_from_wire(record: dict[str, Any]) -> dict[str, Any]:
    voided = record.get("voided_event_id")
    if voided is None:
        return record
    out = {"event_id": record["event_id"], "type": VOIDED, "dossier": record["dossier"],
           "at": record["at"], "agency": record["agency"], "voided_event_id": voided,
           "reason": record.get("correction_reason")}
    for name in ("operator", "correlation_id"):
        if record.get(name) is not None:
            out[name] = record[name]
    return out


EVENTS = Codec("event", flat={"payload": "type"}, omit_null=True, specific={
    "event_id": uuid, "dossier": dossier, "agency": agency, "at": instant,
    "procedure": procedure, "applicant.name": text(), "applicant.id_number": text(),
    "applicant.phone": phone, "applicant.email": email, "applicant.zalo_user_id": identifier,
    "appointment_at": instant, "to_agency": agency, "note": text(empty=True), "reason": text(),
    "amount_vnd": _whole(_LONG, 0), "new_due_at": instant, "tracking_number": text(),
    "correlation_id": identifier, "operator": identifier, "corrects_event_id": uuid,
    "correction_reason": text(), "voided_event_id": uuid,
}, to_wire=_event_to_wire, from_wire=_event_from_wire, from_wire_when="voided_event_id",
    to_wire_when="voided_event_id",
    requires={"corrects_event_id": ("operator", "correction_reason")},
    check_schema=_void_in_canonical_form)


def _delivery_to_wire(record: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(record)
    try:
        # orjson writes what json.dumps(ensure_ascii=False, separators=(",", ":")) writes,
        # several times faster; keys other than text are refused.
        out["payload"] = orjson.dumps(record["payload"]).decode()
    except TypeError as exc:
        raise InvalidRecord("payload", f"is not JSON: {exc}") from None
    return out


def _delivery_from_wire(record: dict[str, Any]) -> dict[str, Any]:
    record["payload"] = json.loads(record["payload"])
    return record


def _alert_scope(record: Mapping[str, Any]) -> None:
    if record.get("scope") == "destination":
        if record.get("destination") is None:
            raise InvalidRecord("destination", "is required for a destination alert")
        return
    for name in ("dossier", "agency"):
        if record.get(name) is None:
            raise InvalidRecord(name, f"is required for a {record.get('scope')} alert")


DELIVERIES = Codec("delivery", specific={
    "delivery_id": identifier, "destination": agency, "dossier": dossier, "event_id": uuid,
    "at": instant, "payload": json_object,
}, to_wire=_delivery_to_wire, from_wire=_delivery_from_wire)
def _alert_from_wire(record: dict[str, Any]) -> dict[str, Any]:
    if record.get("cause", "") is None:
        del record["cause"]
    return record


ALERTS = Codec("alert", specific={
    "alert_id": identifier, "dossier": dossier, "agency": agency, "destination": agency,
    "due_at": instant, "fired_at": instant, "detail": text(MAX_DETAIL, empty=True),
    "cause": reason_code,
}, extra_check=_alert_scope, from_wire=_alert_from_wire)
DEADLETTERS = Codec("deadletter", specific={
    "reason": reason_code, "detail": text(MAX_DETAIL, empty=True), "source_topic": topic_name,
    "partition": _whole(_INT, -1), "offset": _whole(_LONG, -1), "at": instant,
})

def _sha256_hex(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 64 and all(c in _HEX for c in value):
        return None
    return "must be 64 lower-case hex digits (a SHA-256)"


def _hex_text(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 1024 and all(c in _HEX for c in value):
        return None
    return "must be lower-case hex"


def _hash32(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray) and len(value) == 32:
        return None
    return "must be 32 bytes (a SHA-256 digest)"


def _heads(value: Any) -> str | None:
    if not isinstance(value, list):
        return "must be a list of {partition, seq, head}"
    for i, head in enumerate(value):
        if not isinstance(head, Mapping) or set(head) != {"partition", "seq", "head"}:
            return f"[{i}] must be {{partition, seq, head}}"
        if not isinstance(head["partition"], int) or not isinstance(head["seq"], int) \
                or head["partition"] < 0 or head["seq"] < -1:
            return f"[{i}] partition >= 0 and seq >= -1 must be whole numbers"
        if _sha256_hex(head["head"]) is not None:
            return f"[{i}].head must be 64 lower-case hex digits"
    return None


_HEX = frozenset("0123456789abcdef")

RECEIPTS = Codec("receipt", specific={
    "receipt_id": identifier, "delivery_id": identifier, "kind": identifier,
    "dossier": dossier, "body_sha256": _sha256_hex, "receiver": agency,
    "received_at": instant, "key_id": identifier, "algorithm": identifier,
    "signature": _hex_text, "recorded_at": instant,
})
RECEIPTS_EXPECTED = Codec("receipt_expected", specific={
    "delivery_id": identifier, "destination": agency, "dossier": dossier, "kind": identifier,
    "due_at": instant, "partition": _whole(_INT, 0),
})
def _audit_entry_from_wire(record: dict[str, Any]) -> dict[str, Any]:
    # A version-1 entry read as version 2 gets the schema's default, which fastavro gives as
    # the JSON text ("") rather than bytes; Avro's bytes defaults are code points 0-255.
    digest = record.get("dossier_sha256")
    if isinstance(digest, str):
        record["dossier_sha256"] = digest.encode("latin-1")
    return record


AUDIT_ENTRIES = Codec("audit_entry", from_wire=_audit_entry_from_wire, specific={
    "prev": _hash32, "content_sha256": _hash32, "dossier_sha256": _hash32,
    "seq": _whole(_LONG, 0),
    "source_kind": identifier, "source_topic": topic_name,
    "source_partition": _whole(_INT, 0), "source_offset": _whole(_LONG, 0),
    "source_timestamp_ms": _whole(_LONG, -1), "dossier": text(), "logged_at": instant,
})
AUDIT_CHECKPOINTS = Codec("audit_checkpoint", specific={
    "audit_topic": topic_name, "at": instant, "heads": _heads, "key_id": identifier,
    "signature": _hex_text,
})

_BY_KIND = {"event": EVENTS, "delivery": DELIVERIES, "alert": ALERTS, "deadletter": DEADLETTERS,
            "receipt": RECEIPTS, "receipt_expected": RECEIPTS_EXPECTED,
            "audit_entry": AUDIT_ENTRIES, "audit_checkpoint": AUDIT_CHECKPOINTS}


def codec_for(kind: str, *, reader_version: int | None = None) -> Codec:
    """The codec of a kind; with ``reader_version``, one that writes and reads as that version."""
    base = _BY_KIND[kind]
    if reader_version is None:
        return base
    return Codec(kind, reader_version=reader_version, **base._options)


def identify(data: bytes) -> registry.SchemaVersion | None:
    """Which known schema version wrote ``data`` (None if unknown or not single-object)."""
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        return None
    return registry.by_fingerprint().get(bytes(data[2:HEADER_SIZE]))


encode_event = EVENTS.encode
decode_event = EVENTS.decode
encode_delivery = DELIVERIES.encode
decode_delivery = DELIVERIES.decode
encode_alert = ALERTS.encode
decode_alert = ALERTS.decode
encode_deadletter = DEADLETTERS.encode
decode_deadletter = DEADLETTERS.decode
encode_receipt = RECEIPTS.encode
decode_receipt = RECEIPTS.decode
