"""Lifelike traffic of a province's agency systems, planned in legal (working) time.

``plan(catalogue, seed=..., dossiers=N, start=...)`` returns every event of N dossiers in
canonical JSON, ordered by ``at`` (one dossier's events keep their order on equal instants):
receipts at the desk, online and by post; hand-offs along each procedure's route; supplement
requests (a few of them twice); financial obligations where a tax office is on the route; some
late steps and apologies; results and returns (by post, with VNPost tracking); a few
withdrawals and stops. The same seed gives the same events.

Every event is checked against the domain core while it is planned (``apply_event`` on a
scratch state), so the plan is legal for the engine: ``lienthong replay`` over it rejects no
line. Durations are working time of the province calendar, so agencies act in office hours;
postal legs run in calendar time (VNPost works outside office hours).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lienthong.services.domain.catalogue import Catalogue, Procedure
from lienthong.services.domain.dossier import Applied, DossierState, Rejected, apply_event
from lienthong.services.domain.events import event_to_json, parse_event
from lienthong.services.domain.routing import POSTAL

ZERO = timedelta(0)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Mix:
    """How often things happen (probabilities per dossier unless said)."""

    procedures: Mapping[str, float] = field(default_factory=lambda: {
        "1.001193": 0.22, "1.004227": 0.06, "1.012756": 0.12, "1.009972": 0.05,
        "2.000720": 0.12, "2.000488": 0.10, "2.000815": 0.28, "2.000633": 0.05})
    channels: Mapping[str, float] = field(default_factory=lambda: {
        "desk": 0.55, "online": 0.35, "postal": 0.10})
    online_return_by_post: float = 0.25
    supplement: float = 0.12
    second_supplement: float = 0.15  # of the supplemented ones
    late_step: float = 0.08  # per step
    apology_when_late: float = 0.5
    refused: float = 0.04
    withdrawn: float = 0.015
    stopped: float = 0.01
    appointment_sent: float = 0.3  # the desk software sends its own appointment date
    appointment_wrong: float = 0.05  # of those sent
    postal_failed_once: float = 0.05


# Which desks receive which procedure (level of the receiving agency).
DESK_LEVELS: dict[str, tuple[str, ...]] = {
    "1.001193": ("commune",), "1.004227": ("commune",), "1.012756": ("centre", "commune"),
    "1.009972": ("centre",), "2.000720": ("commune",), "2.000488": ("centre",),
    "2.000815": ("commune",), "2.000633": ("centre",),
}
DEFAULT_DESK_LEVELS = ("commune", "centre")

FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi",
          "Đỗ", "Hồ", "Ngô", "Dương", "Lý")
MIDDLE = ("Văn", "Thị", "Hữu", "Đức", "Minh", "Thanh", "Ngọc", "Quang", "Thu", "Xuân")
GIVEN = ("An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hương", "Khánh", "Lan",
         "Long", "Mai", "Nam", "Phúc", "Quân", "Sơn", "Tâm", "Thảo", "Trang", "Tuấn", "Việt",
         "Yến", "Đức", "Ánh")
SUPPLEMENT_REASONS = (
    "Bổ sung bản sao giấy tờ tùy thân còn hiệu lực",
    "Tờ khai chưa có chữ ký của người yêu cầu",
    "Thiếu giấy tờ chứng minh quyền sử dụng đất",
    "Bản vẽ thiết kế chưa đúng tỷ lệ, đề nghị bổ sung",
    "Bổ sung xác nhận nơi cư trú",
)
WITHDRAW_REASONS = ("Người nộp xin rút hồ sơ để bổ sung sau", "Người dân không còn nhu cầu")
STOP_REASONS = ("Hồ sơ không đủ điều kiện giải quyết theo quy định",)
APOLOGY_REASON = "Hồ sơ cần xác minh thêm; xin lỗi ông/bà và hẹn lại ngày trả kết quả"


class PlanError(RuntimeError):
    """The planner made an event the engine refuses (a bug in the planner)."""


@dataclass
class _Dossier:
    """One dossier being planned: its events and the engine's view of it."""

    index: int
    catalogue: Catalogue
    rng: random.Random
    events: list[dict[str, Any]] = field(default_factory=list)
    state: DossierState | None = None

    def emit(self, etype: str, at: datetime, agency: str, **fields: Any) -> dict[str, Any]:
        cal = self.catalogue.calendar
        at = max(at, self.state.last_at) if self.state is not None else at
        data = {"event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "type": etype, "dossier": fields.pop("dossier", None) or self.state.code,
                "at": at.astimezone(cal.tz).replace(microsecond=0).isoformat(),
                "agency": agency, **fields}
        event = parse_event(data)
        decision = apply_event(self.state, event, self.catalogue, with_deliveries=False)
        if isinstance(decision, Rejected):
            raise PlanError(f"{data}: {decision.reason}: {decision.detail}")
        assert isinstance(decision, Applied)
        self.state = decision.state
        canonical = event_to_json(event)
        self.events.append(canonical)
        return canonical


def _weighted(rng: random.Random, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _applicant(rng: random.Random) -> dict[str, str]:
    name = f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
    province = rng.randint(1, 96)
    id_number = f"{province:03d}{rng.choice('0123')}{rng.randint(40, 99):02d}" \
                f"{rng.randint(0, 999999):06d}"
    return {"name": name, "id_number": id_number}


def _minutes(t: timedelta) -> timedelta:
    return timedelta(minutes=max(1, round(t / MINUTE)))


class Planner:
    def __init__(self, catalogue: Catalogue, *, seed: int = 1, mix: Mix | None = None) -> None:
        self.catalogue = catalogue
        self.rng = random.Random(seed)
        self.mix = mix or Mix()
        self.seq: dict[tuple[str, str], int] = {}
        self.procedures = {c: w for c, w in self.mix.procedures.items()
                           if c in catalogue.procedures} or {
                               c: 1.0 for c in catalogue.procedures}
        self.desks: dict[str, list[str]] = {}
        for code in self.procedures:
            levels = DESK_LEVELS.get(code, DEFAULT_DESK_LEVELS)
            self.desks[code] = [a.code for a in catalogue.agencies.values()
                                if a.level in levels]
        self.procedures = {c: w for c, w in self.procedures.items() if self.desks[c]}
        if not self.procedures:
            raise ValueError("the catalogue has no procedure with a desk to receive it")

    # -- one dossier ----------------------------------------------------------------------------

    def dossier(self, index: int, received_at: datetime) -> list[dict[str, Any]]:
        rng, mix, cat = self.rng, self.mix, self.catalogue
        cal = cat.calendar
        code = _weighted(rng, self.procedures)
        procedure = cat.procedure(code, received_at)
        if procedure is None:
            return []
        desk = rng.choice(self.desks[code])
        try:
            route = cat.route(procedure, desk)
        except ValueError:
            return []
        channels = dict(mix.channels)
        if procedure.same_day_cutoff is not None:
            channels.pop("postal", None)
        channel = _weighted(rng, channels)
        day = cal.local_date(received_at).strftime("%Y%m%d")
        n = self.seq[(desk, day)] = self.seq.get((desk, day), 0) + 1
        dossier_code = f"{desk}-{day}-{n:07d}"
        d = _Dossier(index, cat, rng)
        fields: dict[str, Any] = {"procedure": code, "channel": channel,
                                  "applicant": _applicant(rng)}
        d.emit("received", received_at, desk, dossier=dossier_code, **fields)
        assert d.state is not None
        if rng.random() < mix.appointment_sent:
            # The desk software's own appointment: normally the hub's, now and then a day off.
            appointment = d.state.due_at
            if rng.random() < mix.appointment_wrong:
                appointment += timedelta(days=1)
            d.events[0]["appointment_at"] = appointment.astimezone(cal.tz).isoformat()
        if channel == "postal":
            d.emit("postal_update", received_at, POSTAL, tracking_number=self._tracking(),
                   leg="dossier_in", status="delivered")
        self._route(d, procedure, route, desk, channel)
        return d.events

    def _tracking(self) -> str:
        return f"EL{self.rng.randint(0, 10**9 - 1):09d}VN"

    def _route(self, d: _Dossier, procedure: Procedure,
               route: tuple[tuple[str, timedelta], ...], desk: str, channel: str) -> None:
        rng, mix, cat = self.rng, self.mix, self.catalogue
        cal = cat.calendar
        assert d.state is not None
        steps = list(route)
        if not steps or steps[0][0] != desk:
            steps.insert(0, (desk, timedelta(minutes=30)))
        supplement_at = rng.randrange(len(steps)) if rng.random() < mix.supplement else -1
        end_early = rng.random()
        withdraw_at = rng.randrange(len(steps)) if end_early < mix.withdrawn else -1
        stop_at = rng.randrange(len(steps)) if (
            mix.withdrawn <= end_early < mix.withdrawn + mix.stopped) else -1
        t = d.state.last_at
        for i, (agency, allot) in enumerate(steps):
            late = rng.random() < mix.late_step
            factor = rng.uniform(1.1, 1.8) if late else rng.uniform(0.15, 0.95)
            work = _minutes((allot if allot > ZERO else timedelta(minutes=30)) * factor)
            if i == withdraw_at:
                t = cal.add_working_time(t, work / 2)
                d.emit("withdrawn", t, desk, reason=rng.choice(WITHDRAW_REASONS))
                return
            if i == stop_at:
                t = cal.add_working_time(t, work / 2)
                d.emit("stopped", t, agency, reason=rng.choice(STOP_REASONS))
                return
            done = ZERO
            if i == supplement_at:
                first = _minutes(work * rng.uniform(0.1, 0.5))
                t = cal.add_working_time(t, first)
                done = first
                t = self._supplement(d, t, agency, desk)
                if rng.random() < mix.second_supplement:
                    t = self._supplement(d, cal.add_working_time(t, timedelta(hours=1)),
                                         agency, desk)
            if self._is_tax(agency) and not d.state.paused:
                first = _minutes((work - done) * rng.uniform(0.2, 0.6))
                t = cal.add_working_time(t, first)
                done += first
                d.emit("obligation_requested", t, agency,
                       amount_vnd=rng.randrange(500_000, 60_000_000, 1000))
                t = cal.add_working_time(t, _minutes(timedelta(hours=rng.uniform(2, 24))))
                d.emit("obligation_paid", t, desk, amount_vnd=d.events[-1]["amount_vnd"])
            end = cal.add_working_time(t, max(MINUTE, work - done))
            due = d.state.due_at
            if late and end > due and rng.random() < mix.apology_when_late:
                at = max(t, cal.add_working_time(t, _minutes((end - t) / 3)))
                if at < end:
                    new_due = cal.add_working_time(end, timedelta(hours=8))
                    d.emit("apology_issued", at, agency,
                           new_due_at=new_due.astimezone(cal.tz).isoformat(),
                           reason=APOLOGY_REASON)
            t = end
            if i + 1 < len(steps):
                nxt = steps[i + 1][0]
                if nxt != agency:
                    d.emit("handoff", t, agency, to_agency=nxt)
        holder = d.state.holder
        d.emit("result_ready", t, holder,
               decision="refused" if rng.random() < mix.refused else "approved")
        by_post = channel == "postal" or (
            channel == "online" and rng.random() < mix.online_return_by_post)
        t = cal.add_working_time(t, _minutes(timedelta(hours=rng.uniform(0.2, 12))))
        d.emit("returned", t, desk, channel="postal" if by_post else "desk")
        if by_post:
            tracking = self._tracking()
            statuses = ["picked_up", "in_transit"]
            if rng.random() < mix.postal_failed_once:
                statuses.append("failed")
            statuses.append("delivered")
            for status in statuses:
                t += _minutes(timedelta(hours=rng.uniform(1, 20)))
                d.emit("postal_update", t, POSTAL, tracking_number=tracking, leg="result_out",
                       status=status)

    def _supplement(self, d: _Dossier, t: datetime, agency: str, desk: str) -> datetime:
        cal = self.catalogue.calendar
        d.emit("supplement_requested", t, agency, reason=self.rng.choice(SUPPLEMENT_REASONS))
        t = cal.add_working_time(t, _minutes(timedelta(hours=self.rng.uniform(1, 24))))
        d.emit("supplement_received", t, desk)
        return t

    def _is_tax(self, agency: str) -> bool:
        a = self.catalogue.agency(agency)
        return a is not None and a.name.startswith("Thuế")


def receipt_instants(catalogue: Catalogue, start: datetime, count: int, *,
                     per_working_hour: float, rng: random.Random) -> Iterator[datetime]:
    """Receipt instants: a Poisson stream of ``per_working_hour`` in office hours."""
    cal = catalogue.calendar
    t = cal.next_opening(start)
    for _ in range(count):
        gap = timedelta(hours=rng.expovariate(per_working_hour))
        t = cal.add_working_time(t, gap)
        if not cal.is_working_instant(t):  # a receipt exactly at closing time: next morning
            t = cal.next_opening(t + timedelta(seconds=1))
        yield t.replace(microsecond=0)


def plan(catalogue: Catalogue, *, seed: int = 1, dossiers: int = 100,
         start: datetime, per_working_hour: float = 60.0,
         mix: Mix | None = None) -> list[dict[str, Any]]:
    """Every event of ``dossiers`` dossiers received from ``start`` on, ordered by ``at``."""
    if start.tzinfo is None:
        raise ValueError("start needs a UTC offset")
    planner = Planner(catalogue, seed=seed, mix=mix)
    arrivals = random.Random(seed ^ 0x5EED)
    keyed: list[tuple[datetime, int, int, dict[str, Any]]] = []
    for i, at in enumerate(receipt_instants(catalogue, start, dossiers,
                                            per_working_hour=per_working_hour, rng=arrivals)):
        for j, event in enumerate(planner.dossier(i, at)):
            keyed.append((datetime.fromisoformat(event["at"]), i, j, event))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    return [k[3] for k in keyed]
