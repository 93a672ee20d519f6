"""The province catalogue (danh mục): agencies, procedures and the working calendar.

One YAML file describes a province; JSON, being YAML, loads too (``.json`` files are read by the
stricter JSON parser). The shape (DESIGN section 5)::

    province: {code: H99, name: "Tỉnh Mẫu"}
    calendar:                                   # optional; these are the defaults
      timezone: Asia/Ho_Chi_Minh
      office_hours: [["07:30", "11:30"], ["13:00", "17:00"]]   # Monday-Friday, in order
      extra_days_off: []                        # dates, e.g. 2026-12-31
      extra_working_days: []                    # dates, e.g. a swapped Saturday
      due_soon_hours: 4                         # warn this many working hours before a due
    agencies:
      - code: "000.00.15.H99"                   # Decision 20/2020 code, <= 13 letters/digits/dots
        name: "UBND xã Hòa Bình"
        level: commune                          # one of LEVELS
        parent: "000.00.00.H99"                 # optional; must be listed; no cycles
        endpoint: "https://…/lienthong/inbox"   # optional; where deliveries go
        alert_webhook: "https://…/alerts"      # optional; where its alerts are posted
        alert_email: "motcua@hoabinh.h99.gov.vn" # optional; where its alerts are mailed
    procedures:
      - code: "1.001193"                        # national procedure code
        name: "…"
        total: {days: 5}                        # working days (fractions allowed) or {hours: N}
        same_day_cutoff: null                   # or "15:00"
        on_supplement: pause                    # pause (default) | restart
        effective_from: 2026-07-01              # optional, see below
        steps:                                  # the expected route, in order
          - {agency: "@receiving", allot: {hours: 4}}
          - {agency: "000.02.10.H99", allot: {days: 2}}
        citizen_messages:                       # optional: this procedure's wording of what
          supplement: "Hồ sơ {dossier} cần bổ sung: {reason}."   # the applicant is told

Versions. A procedure may appear several times with the same code: each entry is one complete
version, in force from its ``effective_from`` date (province local time) until the next
version's. An entry without ``effective_from`` is in force since always (at most one per code).
``Catalogue.procedure(code, at)`` returns the version in force at ``at``, so a dossier keeps the
allotments in force when it was received.

Route placeholders: ``@receiving`` is the agency that received the dossier, ``@parent`` that
agency's parent (resolved per dossier by ``Catalogue.route``).

Write times in quotes: YAML 1.1 reads an unquoted ``15:00`` as the number 900. Validation
collects every problem (with its path in the file, e.g. ``procedures[3].steps[1].agency``) and
raises one ``CatalogueError``.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import yaml

from .calendar import DEFAULT_OFFICE_HOURS, WorkingCalendar
from .citizen import NOTICE_KINDS, template_problem
from .identifiers import agency_code_problem, procedure_code_problem

LEVELS = ("province", "centre", "department", "district", "commune", "vertical", "system")
"""Agency levels: people's committees (province/district/commune), the province's Public
Administration Service Centre, departments (sở), vertical agencies (ngành dọc) and outside
systems such as VNPOST and DVCQG."""

RECEIVING = "@receiving"
PARENT = "@parent"
PLACEHOLDERS = (RECEIVING, PARENT)
SUPPLEMENT_RULES = ("pause", "restart")
DEFAULT_DUE_SOON_HOURS = 4

OnSupplement = Literal["pause", "restart"]


# -- model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agency:
    """An agency (cơ quan) or outside system, by its Decision 20/2020 code."""

    code: str
    name: str
    level: str
    parent: str | None = None
    endpoint: str | None = None
    alert_webhook: str | None = None    # alerts about this agency are posted here (JSON)
    alert_email: str | None = None      # ... and/or mailed here, with the daily digest


@dataclass(frozen=True)
class RouteStep:
    """One step (bước) of the expected route: an agency code or a placeholder, and its time."""

    agency: str
    allot: timedelta


@dataclass(frozen=True)
class Procedure:
    """One version of an administrative procedure (thủ tục hành chính)."""

    code: str
    name: str
    total: timedelta
    same_day_cutoff: time | None = None
    on_supplement: OnSupplement = "pause"
    steps: tuple[RouteStep, ...] = ()
    effective_from: date | None = None
    # What the applicant is told, where this procedure words it differently from the
    # defaults of ``citizen.DEFAULT_TEMPLATES``: (notice kind, template) pairs.
    citizen_messages: tuple[tuple[str, str], ...] = ()

    def citizen_template(self, kind: str) -> str | None:
        """This procedure's own wording of notice ``kind``, if it has one."""
        return dict(self.citizen_messages).get(kind)


@dataclass(frozen=True)
class CatalogueProblem:
    """One thing wrong in a catalogue file: where (``agencies[2].parent``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class CatalogueError(Exception):
    """A catalogue that cannot be used, with every problem found."""

    def __init__(self, problems: Sequence[CatalogueProblem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source  # the file (or "<memory>") the problems were found in
        super().__init__("\n".join(str(p) for p in self.problems))


class RouteError(ValueError):
    """A route step that cannot be resolved for this receiving agency (e.g. no parent)."""


_Route = tuple[tuple[str, timedelta], ...]


class Catalogue:
    """A province's agencies, procedure versions and working calendar (immutable)."""

    province_code: str
    province_name: str
    calendar: WorkingCalendar
    due_soon: timedelta
    agencies: Mapping[str, Agency]

    def __init__(
        self,
        *,
        province_code: str,
        province_name: str,
        agencies: Iterable[Agency],
        procedures: Iterable[Procedure],
        calendar: WorkingCalendar | None = None,
        due_soon: timedelta = timedelta(hours=DEFAULT_DUE_SOON_HOURS),
    ) -> None:
        self.province_code = province_code
        self.province_name = province_name
        self.calendar = calendar if calendar is not None else WorkingCalendar()
        self.due_soon = due_soon
        self.agencies = MappingProxyType({a.code: a for a in agencies})
        versions: dict[str, list[Procedure]] = {}
        for p in procedures:
            versions.setdefault(p.code, []).append(p)
        for vs in versions.values():
            vs.sort(key=lambda p: p.effective_from or date.min)
        self._versions = {code: tuple(vs) for code, vs in versions.items()}
        self._starts = {
            code: [p.effective_from or date.min for p in vs] for code, vs in self._versions.items()
        }
        # Resolved routes per (procedure version, receiving agency): the catalogue is
        # immutable, and every receipt asks. Keyed by the version's identity, which is kept
        # alive (and checked) in the value; bounded like the core's other caches.
        self._routes: dict[tuple[int, str], tuple[Procedure, _Route]] = {}

    def __repr__(self) -> str:
        return (f"Catalogue({self.province_code} {self.province_name!r}: "
                f"{len(self.agencies)} agencies, {len(self._versions)} procedures)")

    @property
    def procedures(self) -> Mapping[str, tuple[Procedure, ...]]:
        """Every procedure's versions, oldest first."""
        return MappingProxyType(self._versions)

    def agency(self, code: str) -> Agency | None:
        return self.agencies.get(code)

    def procedure(self, code: str, at: datetime | date) -> Procedure | None:
        """The version of procedure ``code`` in force at ``at`` (its province-local date)."""
        starts = self._starts.get(code)
        if starts is None:
            return None
        if isinstance(at, datetime):
            if at.tzinfo is None or at.utcoffset() is None:
                raise ValueError(f"instant {at.isoformat()} has no time zone")
            day = self.calendar.local_date(at)
        else:
            day = at
        i = bisect_right(starts, day) - 1
        return self._versions[code][i] if i >= 0 else None

    def route(
        self, procedure: Procedure, receiving_agency: str
    ) -> tuple[tuple[str, timedelta], ...]:
        """The procedure's steps as (agency code, allotment), placeholders resolved.

        Raises RouteError when a step says ``@parent`` and the receiving agency has none.
        """
        key = (id(procedure), receiving_agency)
        known = self._routes.get(key)
        if known is not None and known[0] is procedure:
            return known[1]
        route = self._resolve(procedure, receiving_agency)
        if len(self._routes) >= 65536:
            self._routes.clear()
        self._routes[key] = (procedure, route)
        return route

    def _resolve(self, procedure: Procedure,
                 receiving_agency: str) -> tuple[tuple[str, timedelta], ...]:
        resolved: list[tuple[str, timedelta]] = []
        for step in procedure.steps:
            code = step.agency
            if code == RECEIVING:
                code = receiving_agency
            elif code == PARENT:
                receiving = self.agencies.get(receiving_agency)
                if receiving is None or receiving.parent is None:
                    raise RouteError(
                        f"procedure {procedure.code} routes to @parent but receiving agency "
                        f"{receiving_agency} has no parent in the catalogue")
                code = receiving.parent
            resolved.append((code, step.allot))
        return tuple(resolved)

    def with_calendar_changes(
        self, *, extra_days_off: Iterable[date] = (), extra_working_days: Iterable[date] = ()
    ) -> Catalogue:
        """A new catalogue whose calendar has these days added (e.g. a day off announced late).

        Everything else is shared; open deadlines are to be recomputed against the result.
        """
        return self._replace(calendar=self.calendar.with_changes(
            extra_days_off=extra_days_off, extra_working_days=extra_working_days))

    def _replace(self, *, calendar: WorkingCalendar) -> Catalogue:
        return Catalogue(
            province_code=self.province_code,
            province_name=self.province_name,
            agencies=self.agencies.values(),
            procedures=(p for vs in self._versions.values() for p in vs),
            calendar=calendar,
            due_soon=self.due_soon,
        )

    def to_dict(self) -> dict[str, Any]:
        """The catalogue as plain JSON data that ``parse_catalogue`` reads back."""
        cal = self.calendar
        return {
            "province": {"code": self.province_code, "name": self.province_name},
            "calendar": {
                "timezone": cal.tz.key,
                "office_hours": [[_hhmm(o), _hhmm(c)] for o, c in cal.office_hours],
                "extra_days_off": sorted(d.isoformat() for d in cal.extra_days_off),
                "extra_working_days": sorted(d.isoformat() for d in cal.extra_working_days),
                "due_soon_hours": _number(self.due_soon / timedelta(hours=1)),
            },
            "agencies": [
                {k: v for k, v in (("code", a.code), ("name", a.name), ("level", a.level),
                                   ("parent", a.parent), ("endpoint", a.endpoint),
                                   ("alert_webhook", a.alert_webhook),
                                   ("alert_email", a.alert_email))
                 if v is not None}
                for a in self.agencies.values()
            ],
            "procedures": [_procedure_dict(p) for vs in self._versions.values() for p in vs],
        }


def _hhmm(t: time) -> str:
    return t.strftime("%H:%M:%S" if t.second else "%H:%M")


def _number(x: float) -> int | float:
    return int(x) if x == int(x) else x


def _allot_dict(t: timedelta) -> dict[str, int | float]:
    return {"hours": _number(t / timedelta(hours=1))}


def _procedure_dict(p: Procedure) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": p.code,
        "name": p.name,
        "total": _allot_dict(p.total),
        "same_day_cutoff": _hhmm(p.same_day_cutoff) if p.same_day_cutoff else None,
        "on_supplement": p.on_supplement,
        "steps": [{"agency": s.agency, "allot": _allot_dict(s.allot)} for s in p.steps],
    }
    if p.effective_from is not None:
        out["effective_from"] = p.effective_from.isoformat()
    if p.citizen_messages:
        out["citizen_messages"] = dict(p.citizen_messages)
    return out


# -- loading -------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    seen: set[Hashable] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        if isinstance(key, Hashable):
            seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_catalogue_data(path: str | Path) -> Any:
    """The file's data, YAML or JSON. Raises OSError if unreadable, CatalogueError if malformed."""
    path = Path(path)
    raw = path.read_bytes()

    def malformed(where: str, message: str) -> CatalogueError:
        return CatalogueError([CatalogueProblem(where, message)], str(path))

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise malformed(f"byte {e.start}", "the file is not UTF-8") from e
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text, object_pairs_hook=_json_object)
        except json.JSONDecodeError as e:
            raise malformed(f"line {e.lineno}, column {e.colno}", f"not valid JSON: {e.msg}") from e
        except ValueError as e:
            raise malformed("(file)", str(e)) from e
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise malformed(where, f"not valid YAML: {e.problem}") from e
    except yaml.YAMLError as e:
        raise malformed("(file)", f"not valid YAML: {e}") from e


def load_catalogue(path: str | Path) -> Catalogue:
    """Read and validate a catalogue file (YAML, or JSON). Raises CatalogueError or OSError."""
    return parse_catalogue(read_catalogue_data(path), source=str(path))


def parse_catalogue(data: Mapping[str, Any], source: str = "<memory>") -> Catalogue:
    """Validate catalogue data (as loaded from YAML/JSON) and build the catalogue.

    Collects every problem before raising one CatalogueError, whose ``source`` is ``source``
    (the problems' paths are inside the data).
    """
    return _Parser(source).catalogue(data)


# -- validation ----------------------------------------------------------------------------------

_TIME = re.compile(r"^\d{2}:\d{2}(?::\d{2})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PROVINCE_CODE = re.compile(r"^[A-Za-z0-9]{1,6}$")
_URL = re.compile(r"^https?://[^\s/]+(?:/\S*)?$")
_TOP_FIELDS = {"province", "calendar", "agencies", "procedures"}
_CALENDAR_FIELDS = {"timezone", "office_hours", "extra_days_off", "extra_working_days",
                    "due_soon_hours"}
_AGENCY_FIELDS = {"code", "name", "level", "parent", "endpoint", "alert_webhook",
                  "alert_email"}
# One mailbox (a person or a distribution list); deliberately loose beyond the shape.
_EMAIL = re.compile(r"^[^@\s,;<>]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_PROCEDURE_FIELDS = {"code", "name", "total", "same_day_cutoff", "on_supplement", "steps",
                     "effective_from", "citizen_messages"}
_STEP_FIELDS = {"agency", "allot"}
_ALLOT_UNITS = ("days", "hours")


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"


@dataclass
class _Parser:
    source: str
    problems: list[CatalogueProblem] = field(default_factory=list)
    # Every agency code listed, valid or not: a step naming a listed agency that has its own
    # problem is not reported a second time as an unknown agency.
    listed: set[object] = field(default_factory=set)

    def problem(self, path: str, message: str) -> None:
        self.problems.append(CatalogueProblem(path or "(top level)", message))

    # -- shapes ---------------------------------------------------------------------------------

    def mapping(self, value: object, path: str, allowed: set[str],
                required: Sequence[str] = ()) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, not {_describe(value)}")
            return None
        for key in value:
            if key not in allowed:
                self.problem(_join(path, str(key)),
                             f"unknown field (expected one of {', '.join(sorted(allowed))})")
        for key in required:
            if key not in value:
                self.problem(_join(path, key), "missing")
        return cast(dict[str, Any], value)

    def sequence(self, value: object, path: str) -> list[Any] | None:
        if not isinstance(value, list):
            self.problem(path, f"must be a list, not {_describe(value)}")
            return None
        return value

    def text(self, value: object, path: str) -> str | None:
        if isinstance(value, str):
            if not value.strip():
                self.problem(path, "must not be empty")
                return None
            return value
        hint = ""
        if isinstance(value, int | float) and not isinstance(value, bool):
            hint = " (put it in quotes: YAML read it as a number)"
        self.problem(path, f"must be a string, not {_describe(value)}{hint}")
        return None

    def checked(
        self, value: object, path: str, check: Callable[[object], str | None]
    ) -> str | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.problem(path, f"must be a string, not {_describe(value)} "
                               "(put it in quotes: YAML read it as a number)")
            return None
        problem = check(value)
        if problem:
            self.problem(path, problem)
            return None
        return cast(str, value)

    def time_of_day(self, value: object, path: str) -> time | None:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            self.problem(path, f"must be a time in quotes such as \"{value // 60:02d}:"
                               f"{value % 60:02d}\": YAML reads an unquoted "
                               f"{value // 60}:{value % 60:02d} as the number {value}")
            return None
        if not isinstance(value, str) or not _TIME.match(value):
            self.problem(path, f"must be a time of day \"HH:MM\", not {_describe(value)}")
            return None
        try:
            return time.fromisoformat(value)
        except ValueError:
            self.problem(path, f"{value!r} is not a valid time of day")
            return None

    def day(self, value: object, path: str) -> date | None:
        if isinstance(value, datetime):
            self.problem(path, f"must be a date (YYYY-MM-DD), not a date and time {value}")
            return None
        if isinstance(value, date):
            return value
        if not isinstance(value, str) or not _DATE.match(value):
            self.problem(path, f"must be a date YYYY-MM-DD, not {_describe(value)}")
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.problem(path, f"{value!r} is not a valid date")
            return None

    def number(self, value: object, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"must be a number, not {_describe(value)}")
            return None
        if not math.isfinite(value) or value < 0:
            self.problem(path, f"must be a non-negative number, not {value!r}")
            return None
        return float(value)

    def allotment(self, value: object, path: str, day_length: timedelta) -> timedelta | None:
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in _ALLOT_UNITS:
            self.problem(path, "must be {days: N} or {hours: N}, not "
                               f"{value if isinstance(value, dict) else _describe(value)}")
            return None
        unit, amount = next(iter(value.items()))
        n = self.number(amount, _join(path, unit))
        if n is None:
            return None
        return n * day_length if unit == "days" else timedelta(hours=n)

    # -- sections -------------------------------------------------------------------------------

    def catalogue(self, data: object) -> Catalogue:
        top = self.mapping(data, "", _TOP_FIELDS, ("province", "agencies", "procedures"))
        if top is None:
            raise CatalogueError(self.problems, self.source)
        province = self.province(top["province"]) if "province" in top else None
        calendar, due_soon = self.calendar(top.get("calendar", {}))
        agencies = self.agencies(top["agencies"]) if "agencies" in top else {}
        day_length = calendar.day_length if calendar else WorkingCalendar().day_length
        procedures = self.procedures(top["procedures"], day_length) if (
            "procedures" in top) else []
        if self.problems or province is None or calendar is None:
            raise CatalogueError(self.problems, self.source)
        return Catalogue(province_code=province[0], province_name=province[1],
                         agencies=agencies.values(), procedures=procedures,
                         calendar=calendar, due_soon=due_soon)

    def province(self, value: object) -> tuple[str, str] | None:
        m = self.mapping(value, "province", {"code", "name"}, ("code", "name"))
        if m is None:
            return None
        code = self.text(m["code"], "province.code") if "code" in m else None
        if code is not None and not _PROVINCE_CODE.match(code):
            self.problem("province.code", f"province code {code!r} must be 1-6 letters or digits")
            code = None
        name = self.text(m["name"], "province.name") if "name" in m else None
        return (code, name) if code is not None and name is not None else None

    def calendar(self, value: object) -> tuple[WorkingCalendar | None, timedelta]:
        due_soon = timedelta(hours=DEFAULT_DUE_SOON_HOURS)
        m = self.mapping(value, "calendar", _CALENDAR_FIELDS)
        if m is None:
            return None, due_soon
        ok = True
        timezone = "Asia/Ho_Chi_Minh"
        if "timezone" in m:
            tz = self.text(m["timezone"], "calendar.timezone")
            try:
                if tz is not None:
                    ZoneInfo(tz)
                    timezone = tz
                else:
                    ok = False
            except (ValueError, KeyError, OSError):
                self.problem("calendar.timezone", f"unknown time zone {tz!r}")
                ok = False
        hours = self.office_hours(m["office_hours"]) if "office_hours" in m else (
            DEFAULT_OFFICE_HOURS)
        off = self.dates(m.get("extra_days_off", []), "calendar.extra_days_off")
        work = self.dates(m.get("extra_working_days", []), "calendar.extra_working_days")
        if off & work:
            listed = ", ".join(sorted(d.isoformat() for d in off & work))
            self.problem("calendar.extra_working_days", f"also listed in extra_days_off: {listed}")
            ok = False
        if "due_soon_hours" in m:
            n = self.number(m["due_soon_hours"], "calendar.due_soon_hours")
            if n is not None:
                due_soon = timedelta(hours=n)
        if not ok or hours is None:
            return None, due_soon
        return WorkingCalendar(timezone=timezone, office_hours=hours, extra_days_off=off,
                               extra_working_days=work), due_soon

    def office_hours(self, value: object) -> tuple[tuple[time, time], ...] | None:
        path = "calendar.office_hours"
        items = self.sequence(value, path)
        if items is None:
            return None
        if not items:
            self.problem(path, "must list at least one window")
            return None
        windows: list[tuple[time, time]] = []
        ok = True
        for i, item in enumerate(items):
            p = _join(path, i)
            if not isinstance(item, list) or len(item) != 2:
                self.problem(p, f"must be a pair [\"open\", \"close\"], not {_describe(item)}")
                ok = False
                continue
            o, c = self.time_of_day(item[0], _join(p, 0)), self.time_of_day(item[1], _join(p, 1))
            if o is None or c is None:
                ok = False
                continue
            if o >= c:
                self.problem(p, f"window {_hhmm(o)}-{_hhmm(c)} closes before it opens")
                ok = False
                continue
            if windows and o < windows[-1][1]:
                prev = windows[-1]
                self.problem(p, f"window {_hhmm(o)}-{_hhmm(c)} overlaps or comes before "
                                f"{_hhmm(prev[0])}-{_hhmm(prev[1])}; list windows in order")
                ok = False
            windows.append((o, c))
        return tuple(windows) if ok else None

    def dates(self, value: object, path: str) -> frozenset[date]:
        items = self.sequence(value if value is not None else [], path)
        out: dict[date, int] = {}
        for i, item in enumerate(items or []):
            d = self.day(item, _join(path, i))
            if d is None:
                continue
            if d in out:
                self.problem(_join(path, i), f"{d} is listed twice (first at {path}[{out[d]}])")
            else:
                out[d] = i
        return frozenset(out)

    def agencies(self, value: object) -> dict[str, Agency]:
        items = self.sequence(value, "agencies")
        if items is None:
            return {}
        if not items:
            self.problem("agencies", "must list at least one agency")
        found: dict[str, tuple[int, Agency]] = {}
        for i, item in enumerate(items):
            path = _join("agencies", i)
            m = self.mapping(item, path, _AGENCY_FIELDS, ("code", "name", "level"))
            if m is None:
                continue
            code = self.checked(m["code"], _join(path, "code"), agency_code_problem) if (
                "code" in m) else None
            name = self.text(m["name"], _join(path, "name")) if "name" in m else None
            level = m.get("level")
            if "level" in m and level not in LEVELS:
                self.problem(_join(path, "level"),
                             f"unknown level {level!r} (expected one of {', '.join(LEVELS)})")
            parent = m.get("parent")
            if parent is not None:
                parent = self.checked(parent, _join(path, "parent"), agency_code_problem)
            endpoint = m.get("endpoint")
            if endpoint is not None:
                endpoint = self.text(endpoint, _join(path, "endpoint"))
                if endpoint is not None and not _URL.match(endpoint):
                    self.problem(_join(path, "endpoint"),
                                 f"endpoint {endpoint!r} must be an http:// or https:// URL")
            webhook = m.get("alert_webhook")
            if webhook is not None:
                webhook = self.text(webhook, _join(path, "alert_webhook"))
                if webhook is not None and not _URL.match(webhook):
                    self.problem(_join(path, "alert_webhook"),
                                 f"alert_webhook {webhook!r} must be an http:// or https:// URL")
                    webhook = None
            email = m.get("alert_email")
            if email is not None:
                email = self.text(email, _join(path, "alert_email"))
                if email is not None and not _EMAIL.match(email):
                    self.problem(_join(path, "alert_email"),
                                 f"alert_email {email!r} must be one e-mail address")
                    email = None
            if code is None:
                continue
            if code in found:
                self.problem(_join(path, "code"),
                             f"duplicate agency code {code!r} "
                             f"(first at agencies[{found[code][0]}])")
                continue
            if name is not None and level in LEVELS:
                found[code] = (i, Agency(code, name, cast(str, level), parent, endpoint,
                                         webhook, email))
        self.parents(items, found)
        return {code: agency for code, (_, agency) in found.items()}

    def parents(self, items: list[Any], found: dict[str, tuple[int, Agency]]) -> None:
        self.listed = {item.get("code") for item in items if isinstance(item, dict)}
        for i, agency in found.values():
            if agency.parent is not None and agency.parent not in self.listed:
                self.problem(f"agencies[{i}].parent", f"unknown agency {agency.parent!r}")
        reported: set[str] = set()
        for code, (i, _) in found.items():
            chain = [code]
            current = found[code][1].parent
            while current is not None and current in found and current not in chain:
                chain.append(current)
                current = found[current][1].parent
            if current == code and code not in reported:
                reported.update(chain)
                cycle = " -> ".join([*chain, code])
                self.problem(f"agencies[{i}].parent", f"parents form a cycle: {cycle}")

    def procedures(self, value: object, day_length: timedelta) -> list[Procedure]:
        items = self.sequence(value, "procedures")
        if items is None:
            return []
        out: list[Procedure] = []
        versions: dict[tuple[str, date | None], int] = {}
        for i, item in enumerate(items):
            path = _join("procedures", i)
            m = self.mapping(item, path, _PROCEDURE_FIELDS, ("code", "name", "total", "steps"))
            if m is None:
                continue
            before = len(self.problems)
            code = self.checked(m["code"], _join(path, "code"), procedure_code_problem) if (
                "code" in m) else None
            name = self.text(m["name"], _join(path, "name")) if "name" in m else None
            total = self.allotment(m["total"], _join(path, "total"), day_length) if (
                "total" in m) else None
            cutoff = m.get("same_day_cutoff")
            if cutoff is not None:
                cutoff = self.time_of_day(cutoff, _join(path, "same_day_cutoff"))
            rule = m.get("on_supplement", "pause")
            if rule not in SUPPLEMENT_RULES:
                self.problem(_join(path, "on_supplement"),
                             f"must be pause or restart, not {_describe(rule)}")
            effective = m.get("effective_from")
            if effective is not None:
                effective = self.day(effective, _join(path, "effective_from"))
            steps = self.steps(m["steps"], _join(path, "steps"), day_length) if (
                "steps" in m) else ()
            messages = self.citizen_messages(m.get("citizen_messages"),
                                             _join(path, "citizen_messages"))
            if code is not None:
                key = (code, effective)
                if key in versions:
                    since = f"effective from {effective}" if effective else "without effective_from"
                    self.problem(_join(path, "effective_from" if effective else "code"),
                                 f"duplicate version of procedure {code} {since} "
                                 f"(first at procedures[{versions[key]}])")
                else:
                    versions[key] = i
            if len(self.problems) == before and code and name and total is not None:
                out.append(Procedure(code, name, total, cutoff, cast(OnSupplement, rule),
                                     steps, effective, messages))
        return out

    def citizen_messages(self, value: object, path: str) -> tuple[tuple[str, str], ...]:
        """A procedure's own wording of citizen notices: {kind: template}."""
        if value is None:
            return ()
        m = self.mapping(value, path, set(NOTICE_KINDS))
        if m is None:
            return ()
        out: list[tuple[str, str]] = []
        for kind, text in m.items():
            if kind not in NOTICE_KINDS:
                continue
            problem = template_problem(text)
            if problem:
                self.problem(_join(path, str(kind)), problem)
            else:
                out.append((str(kind), cast(str, text)))
        return tuple(out)

    def steps(self, value: object, path: str, day_length: timedelta) -> tuple[RouteStep, ...]:
        items = self.sequence(value, path)
        if items is None:
            return ()
        if not items:
            self.problem(path, "must list at least one step")
        out: list[RouteStep] = []
        for i, item in enumerate(items):
            p = _join(path, i)
            m = self.mapping(item, p, _STEP_FIELDS, ("agency", "allot"))
            if m is None:
                continue
            agency = m.get("agency")
            if "agency" in m:
                if isinstance(agency, str) and agency.startswith("@"):
                    if agency not in PLACEHOLDERS:
                        self.problem(_join(p, "agency"),
                                     f"unknown placeholder {agency!r} "
                                     f"(expected {' or '.join(PLACEHOLDERS)})")
                        agency = None
                else:
                    agency = self.checked(agency, _join(p, "agency"), agency_code_problem)
                    if agency is not None and agency not in self.listed:
                        self.problem(_join(p, "agency"), f"unknown agency {agency!r}")
                        agency = None
            allot = self.allotment(m["allot"], _join(p, "allot"), day_length) if (
                "allot" in m) else None
            if isinstance(agency, str) and allot is not None:
                out.append(RouteStep(agency, allot))
        return tuple(out)
