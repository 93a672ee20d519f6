"""Checks of canonical records before they are encoded, with errors that name the field.

The allowed fields, which of them are required and the enum symbols come from the Avro schema
itself, so a new schema version is checked without new code. What Avro cannot say (the shape of
dossier, agency and procedure codes, instants with a UTC offset, non-empty text, amounts) is
added per field name. Text is checked, never rewritten: the codec keeps it byte for byte.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from lienthong.services.domain.identifiers import (
    agency_code_problem,
    dossier_code_problem,
    email_problem,
    phone_problem,
    procedure_code_problem,
)

from .compiled import _nullable, _type_name, branch_symbol

MAX_TEXT = 2000  # longest free text (reason, note, names), as the domain core accepts
MAX_DETAIL = 10_000  # alert and dead-letter detail (error text)
MAX_ID = 200
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_REASON_CODE = re.compile(r"^[a-z][a-z0-9_.]{0,99}$")
_LONG = (-(1 << 63), (1 << 63) - 1)
_INT = (-(1 << 31), (1 << 31) - 1)

Problem = str | None
Check = Callable[[Any], Problem]


class CodecError(ValueError):
    """Bytes or a record the codec cannot take. ``reason`` is the dead-letter reason code."""

    reason = "codec_error"


class InvalidRecord(CodecError):
    """A record that breaks the contract; ``field`` names it (dotted for nested fields)."""

    reason = "invalid_record"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


# Codes repeat across records (a province has a few hundred agencies, a dossier has a dozen
# events): remember the good ones so each regex runs once. Bounded against hostile input.
_CACHE_LIMIT = 100_000


def _cached(problem_of: Callable[[object], str | None]) -> Check:
    good: set[str] = set()

    def check(value: Any) -> Problem:  # generated checks test ``check.good`` first
        if type(value) is str and value in good:
            return None
        problem = problem_of(value)
        if problem is None:
            if len(good) >= _CACHE_LIMIT:
                good.clear()
            good.add(value)
        return problem

    check.good = good  # type: ignore[attr-defined]
    return check


agency = _cached(agency_code_problem)
dossier = _cached(dossier_code_problem)
procedure = _cached(procedure_code_problem)


def phone(value: Any) -> Problem:
    return phone_problem(value)


def email(value: Any) -> Problem:
    return email_problem(value)


def instant(value: Any) -> Problem:
    if not isinstance(value, str):
        return "must be an ISO-8601 instant string with offset, e.g. 2026-11-25T09:15:00+07:00"
    if len(value) > 40:
        return "is too long for an ISO-8601 instant"
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return f"{value!r} is not an ISO-8601 instant"
    if t.tzinfo is None:
        return f"{value!r} has no UTC offset (write e.g. +07:00)"
    return None


def uuid(value: Any) -> Problem:
    if isinstance(value, str) and _UUID.fullmatch(value):
        return None
    return _UUID_PROBLEM


_UUID_PROBLEM = "must be a UUID like 5b1e7c1e-0d4e-4c9a-9d3e-2f1a0b9c8d7e"
# Generated checks inline this test instead of calling uuid(): ``{K}`` is the constant.
uuid.inline_bad = ("type(v) is not str or {K}(v) is None", _UUID.fullmatch,  # type: ignore
                   _UUID_PROBLEM)


def text(limit: int = MAX_TEXT, *, empty: bool = False) -> Check:
    def check(value: Any) -> Problem:
        if not isinstance(value, str):
            return "must be a string"
        if not empty and not value.strip():
            return "must not be empty"
        if len(value) > limit:
            return f"is longer than {limit} characters"
        return None

    return check


def identifier(value: Any) -> Problem:
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        return f"must be a non-empty string of at most {MAX_ID} characters"
    return None


def reason_code(value: Any) -> Problem:
    if isinstance(value, str) and _REASON_CODE.match(value):
        return None
    return "must be a reason code like unknown_schema (lower case, digits, _ and .)"


def topic_name(value: Any) -> Problem:
    if isinstance(value, str) and 0 < len(value) <= 249:
        return None
    return "must be a Kafka topic name"


def json_object(value: Any) -> Problem:
    return None if isinstance(value, Mapping) else "must be a JSON object"


def _whole(bounds: tuple[int, int], low: int | None = None) -> Check:
    lo = bounds[0] if low is None else low

    def check(value: Any) -> Problem:
        if type(value) is not int:
            return "must be a whole number"
        if not lo <= value <= bounds[1]:
            return f"must be between {lo} and {bounds[1]}"
        return None

    return check


def _enum(symbols: list[str]) -> Check:
    allowed = frozenset(symbols)
    listing = ", ".join(symbols)

    def check(value: Any) -> Problem:
        return None if value in allowed else f"{value!r} is not one of {listing}"

    return check


def _generic(t: Any) -> Check:
    kind = _type_name(t)
    if kind == "string":
        return text(MAX_TEXT, empty=True)
    if kind == "long":
        return _whole(_LONG)
    if kind == "int":
        return _whole(_INT)
    if kind == "enum":
        return _enum(t["symbols"])
    if kind == "bytes":
        return lambda v: None if isinstance(v, bytes | bytearray) else "must be bytes"
    if kind == "boolean":
        return lambda v: None if isinstance(v, bool) else "must be true or false"
    if kind in ("double", "float"):
        return lambda v: (None if isinstance(v, int | float) and not isinstance(v, bool)
                          and math.isfinite(v) else "must be a finite number")
    raise TypeError(f"no check for Avro type {kind}")


def _fail(field: str, problem: str) -> None:
    raise InvalidRecord(field, problem)


class RecordCheck:
    """Checks one record type: required fields, unknown fields, each field's value.

    Like the codec, the check is generated as straight-line Python per record type (per event
    type for a ``flat`` record, nested records inline): it runs for every event the gateway
    accepts. ``check.function`` is the generated function itself (no method call on the way).
    """

    def __init__(self, schema: Mapping[str, Any], specific: Mapping[str, Check],
                 *, flat: Mapping[str, str] | None = None) -> None:
        self.name = str(schema["name"]).rsplit(".", 1)[-1]
        self._ns: dict[str, Any] = {"fail": _fail, "Mapping": Mapping, "instant": instant,
                                    "fromiso": datetime.fromisoformat}
        self._n = 0
        self._specific = specific
        selector: str | None = None
        common: list[Mapping[str, Any]] = []
        branches: dict[str, list[Mapping[str, Any]]] = {}
        for f in schema["fields"]:
            if flat and f["name"] in flat:
                selector = flat[f["name"]]
                for branch in f["type"]:
                    branches[branch_symbol(branch["name"])] = branch["fields"]
            else:
                common.append(f)
        self.selector = selector
        any_field = frozenset(f["name"] for f in common).union(
            *({f["name"] for f in fs} for fs in branches.values()))
        lines = ["def check(d):",
                 "    if type(d) is not dict and not isinstance(d, Mapping): "
                 f"fail('', 'must be an object ({self.name})')"]
        if selector is None:
            self._record(lines, "d", common, "", self.name, any_field, "    ")
        else:
            lines.append(f"    s = d.get({selector!r})")
            keyword = "if"
            for symbol, fields in branches.items():
                lines.append(f"    {keyword} s == {symbol!r}:")
                keyword = "elif"
                self._record(lines, "d", [*common, *fields], "", f"a {symbol} event",
                             any_field, "        ", skip=selector)
            listing = ", ".join(branches)
            lines.append(f"    else: fail({selector!r}, repr(s) + ' is not one of {listing}')")
        self.source = "\n".join(lines) + "\n"
        exec(compile(self.source, f"<check {self.name}>", "exec"), self._ns)
        self.function: Callable[[Any], None] = self._ns["check"]

    def __call__(self, record: Any) -> None:
        self.function(record)

    def _const(self, value: Any) -> str:
        self._n += 1
        name = f"K{self._n}"
        self._ns[name] = value
        return name

    def _record(self, lines: list[str], r: str, fields: list[Mapping[str, Any]], path: str,
                where: str, any_field: frozenset[str], ind: str, skip: str | None = None) -> None:
        allowed = frozenset(f["name"] for f in fields)
        unknown = self._const(_unknown_fields(path, allowed, any_field, where))
        lines.append(f"{ind}if not {r}.keys() <= {self._const(allowed)}: {unknown}({r})")
        for f in fields:
            name = f["name"]
            if name == skip:
                continue  # the selector: already matched
            dotted = path + name
            t = f["type"]
            nb = _nullable(t)
            required = nb is None and "default" not in f
            inner = nb[2] if nb else t
            lines.append(f"{ind}v = {r}.get({name!r})")
            if required:
                suffix = f" for {where}" if " event" in where else ""
                lines.append(f"{ind}if v is None: fail({dotted!r}, 'is required{suffix}')")
                test = "if"
            else:
                lines.append(f"{ind}if v is None: pass")
                test = "elif"
            if _type_name(inner) == "record":
                sub = f"r{self._n}"
                self._n += 1
                sub_fields = inner["fields"]
                lines += [f"{ind}elif type(v) is not dict and not isinstance(v, Mapping): "
                          f"fail({dotted!r}, 'must be an object')",
                          f"{ind}else:", f"{ind}    {sub} = v"]
                self._record(lines, sub, sub_fields, dotted + ".",
                             str(inner["name"]).rsplit(".", 1)[-1],
                             frozenset(x["name"] for x in sub_fields), ind + "    ")
                continue
            check = self._specific.get(dotted)
            if check is None and _type_name(inner) == "enum":
                symbols = inner["symbols"]
                problem = f"is not one of {', '.join(symbols)}"
                lines.append(f"{ind}{test} type(v) is not str or v not in "
                             f"{self._const(frozenset(symbols))}: "
                             f"fail({dotted!r}, repr(v) + ' ' + {problem!r})")
                continue
            check = check or _generic(inner)
            if check is instant:  # inlined: one instant per event at least
                lines += [f"{ind}{test} type(v) is not str or len(v) > 40: "
                          f"fail({dotted!r}, instant(v) or 'is too long')",
                          f"{ind}else:",
                          f"{ind}    try: t = fromiso(v)",
                          f"{ind}    except ValueError: t = None",
                          f"{ind}    if t is None or t.tzinfo is None: "
                          f"fail({dotted!r}, instant(v))"]
                continue
            inline = getattr(check, "inline_bad", None)
            if inline is not None:
                expr, const, problem = inline
                lines.append(f"{ind}{test} {expr.format(K=self._const(const))}: "
                             f"fail({dotted!r}, {problem!r})")
                continue
            good = getattr(check, "good", None)
            fast = (f"(type(v) is not str or v not in {self._const(good)}) and "
                    if good is not None else "")
            lines.append(f"{ind}{test} {fast}(p := {self._const(check)}(v)) is not None: "
                         f"fail({dotted!r}, p)")


def _unknown_fields(path: str, allowed: frozenset[str], any_field: frozenset[str],
                    where: str) -> Callable[[Mapping[str, Any]], None]:
    name = where.removeprefix("a ").split(" ")[-1] if " event" in where else where

    def unknown(record: Mapping[str, Any]) -> None:
        for key, value in record.items():
            if key in allowed or (value is None and key in any_field):
                continue  # a null field of another type: what a flat Avro record carries
            known = key in any_field
            raise InvalidRecord(f"{path}{key}",
                                f"is not a field of {where if known else 'any ' + name}")

    return unknown
