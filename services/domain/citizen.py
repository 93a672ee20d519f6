"""Citizen notifications (thông báo cho người dân): what the applicant is told, on which
channel, when, and under which id. Plain Python: the ``citizen-notify`` shell hands events in
and sends what comes out.

The applicant hears of six moments of a dossier:

=====================  ======================================================================
notice                 from the event
=====================  ======================================================================
``received``           ``received``: the dossier was accepted (tiếp nhận), with the appointment
``handoff``            ``handoff`` to an agency other than the receiving one (chuyển hồ sơ)
``supplement``         ``supplement_requested``: papers to add, with the reason (bổ sung)
``apology``            ``apology_issued``: the apology and the new date (xin lỗi, hẹn lại)
``result_ready``       ``result_ready``: the result can be collected (có kết quả)
``result_posted``      ``postal_update`` of the result leg, ``picked_up``: sent by post, with the
                       tracking number (đã gửi kết quả qua bưu chính)
=====================  ======================================================================

Channels: Zalo OA when the applicant gave a Zalo id, else SMS when they gave a phone number
(one message to the phone, not two), and e-mail as well when they gave an address. Contacts
come from the ``received`` event's ``applicant`` (``phone``, ``email``, ``zalo_user_id``).

Each message has a deterministic id (:func:`message_id` of dossier, event id and channel): the
shell stores it before sending and gives it to the provider as the idempotency key, so a
message is sent once per (dossier, event, channel) however often the event is read again.

Quiet hours: no SMS at night (21:00–07:00 local time of the province by default); an SMS planned
then waits to the morning. Zalo and e-mail are read when the citizen chooses and go out at once.

Personal data (Decree 13/2023): messages name the dossier and the procedure, never the
applicant's name or identity number; logs get contacts only through :func:`mask`.
"""

from __future__ import annotations

import re
import string
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Literal

NoticeKind = Literal["received", "handoff", "supplement", "apology", "result_ready",
                     "result_posted"]
NOTICE_KINDS: tuple[str, ...] = ("received", "handoff", "supplement", "apology",
                                 "result_ready", "result_posted")
Channel = Literal["sms", "zalo", "email"]
CHANNELS: tuple[str, ...] = ("sms", "zalo", "email")

#: The placeholders a template may use; anything else in braces is a catalogue error.
PLACEHOLDERS: tuple[str, ...] = (
    "dossier", "procedure", "procedure_name", "agency_name", "to_agency_name", "reason",
    "appointment", "new_due", "decision", "tracking_number", "province",
)

#: Sensible defaults per notice; a procedure may override any of them in the catalogue
#: (``citizen_messages: {supplement: "..."}``).
DEFAULT_TEMPLATES: Mapping[str, str] = {
    "received": ("{agency_name} đã tiếp nhận hồ sơ {dossier} ({procedure_name}). "
                 "Ngày hẹn trả kết quả: {appointment}."),
    "handoff": ("Hồ sơ {dossier} đã được chuyển đến {to_agency_name} để giải quyết "
                "theo quy trình liên thông."),
    "supplement": ("Hồ sơ {dossier} cần bổ sung: {reason}. Đề nghị ông/bà bổ sung tại "
                   "{agency_name} hoặc trên Cổng dịch vụ công."),
    "apology": ("{agency_name} xin lỗi ông/bà vì hồ sơ {dossier} chưa giải quyết đúng hẹn "
                "({reason}). Ngày hẹn trả kết quả mới: {new_due}."),
    "result_ready": ("Hồ sơ {dossier} đã có kết quả ({decision}). Mời ông/bà nhận kết quả "
                     "tại {agency_name} hoặc theo hình thức đã đăng ký."),
    "result_posted": ("Kết quả hồ sơ {dossier} đã được gửi qua bưu chính, "
                      "mã bưu gửi {tracking_number}."),
}

SUBJECTS: Mapping[str, str] = {
    "received": "Đã tiếp nhận hồ sơ {dossier}",
    "handoff": "Hồ sơ {dossier} được chuyển xử lý",
    "supplement": "Hồ sơ {dossier} cần bổ sung",
    "apology": "Thư xin lỗi và hẹn lại ngày trả kết quả hồ sơ {dossier}",
    "result_ready": "Hồ sơ {dossier} đã có kết quả",
    "result_posted": "Kết quả hồ sơ {dossier} đã gửi qua bưu chính",
}

DECISION_WORDS: Mapping[str, str] = {"approved": "được chấp thuận",
                                     "refused": "không được chấp thuận"}

# uuid5 namespace of message ids (fixed forever: changing it would re-send every message).
MESSAGE_NAMESPACE = uuid.UUID("5d0f3c1e-7a2b-5c4d-9e8f-6a1b2c3d4e5f")

_FORMATTER = string.Formatter()
_PHONE = re.compile(r"^(?:\+?84|0)(\d{9})$")
_EMAIL = re.compile(r"^[^@\s,;<>]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_ZALO_ID = re.compile(r"^\d{6,32}$")


# -- templates -----------------------------------------------------------------------------------


def template_problem(text: object) -> str | None:
    """Why ``text`` cannot be a message template (None when it can)."""
    if not isinstance(text, str) or not text.strip():
        return "must be a non-empty string"
    try:
        parts = list(_FORMATTER.parse(text))
    except ValueError as exc:
        return f"is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            return f"unknown placeholder {{{name}}} (expected one of {', '.join(PLACEHOLDERS)})"
        if spec or conversion:
            return f"placeholder {{{name}}} takes no format or conversion"
    return None


def render(template: str, values: Mapping[str, str]) -> str:
    """The template with its placeholders filled (a missing value reads as an empty string)."""
    return template.format_map({name: values.get(name, "") for name in PLACEHOLDERS})


def plain_text(text: str) -> str:
    """Vietnamese without diacritics ("Hồ sơ" → "Ho so"): brandname SMS in Vietnam goes out
    unaccented, 160 characters a segment instead of 70."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


# -- contacts and personal data --------------------------------------------------------------


@dataclass(frozen=True)
class Contacts:
    """Where the applicant asked to be told; each None when not given or not usable."""

    phone: str | None = None          # E.164 without the plus: 84912345678
    email: str | None = None
    zalo_user_id: str | None = None

    def address(self, channel: str) -> str | None:
        if channel == "sms":
            return self.phone
        if channel == "zalo":
            return self.zalo_user_id
        return self.email


def normalise_phone(text: object) -> str | None:
    """A Vietnamese mobile number as 84 + 9 digits, or None ("0912 345 678" → 84912345678)."""
    if not isinstance(text, str):
        return None
    m = _PHONE.match(re.sub(r"[\s.\-()]", "", text))
    return f"84{m.group(1)}" if m else None


def contacts_of(applicant: Mapping[str, Any] | None) -> Contacts:
    """The contacts in a ``received`` event's ``applicant`` (unusable ones are left out)."""
    if not applicant:
        return Contacts()
    email = applicant.get("email")
    zalo = applicant.get("zalo_user_id")
    return Contacts(
        phone=normalise_phone(applicant.get("phone")),
        email=email.strip().lower() if isinstance(email, str) and _EMAIL.match(email.strip())
        else None,
        zalo_user_id=zalo.strip() if isinstance(zalo, str) and _ZALO_ID.match(zalo.strip())
        else None,
    )


def mask(channel: str, address: str | None) -> str:
    """A contact as logs may show it: 849****5678, n***a@gmail.com, zalo …4321."""
    if not address:
        return "-"
    if channel == "sms":
        return address[:3] + "*" * max(0, len(address) - 7) + address[-4:]
    if channel == "email":
        local, _, domain = address.partition("@")
        head = local[:1] + "*" * max(1, len(local) - 2) + (local[-1:] if len(local) > 1 else "")
        return f"{head}@{domain}"
    return "…" + address[-4:]


# -- quiet hours -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QuietHours:
    """Local hours in which a channel sends nothing; ``start`` > ``end`` spans midnight."""

    start: time = time(21, 0)
    end: time = time(7, 0)

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours must not start and end at the same time")

    def holds(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def release(self, at: datetime, tz: tzinfo) -> datetime:
        """``at`` if it is outside the quiet hours, else the end of this quiet period."""
        local = at.astimezone(tz)
        if not self.holds(local.time().replace(tzinfo=None)):
            return at
        day = local.date()
        if self.start > self.end and local.time().replace(tzinfo=None) >= self.start:
            day += timedelta(days=1)
        morning = datetime.combine(day, self.end, tzinfo=tz)
        return morning


def parse_quiet_hours(text: str) -> QuietHours | None:
    """``"21:00-07:00"`` → QuietHours; ``"off"`` → None. Raises ValueError otherwise."""
    if text.strip().lower() in ("off", "none", ""):
        return None
    try:
        a, b = (part.strip() for part in text.split("-"))
        start, end = time.fromisoformat(a), time.fromisoformat(b)
    except ValueError:
        raise ValueError(f"quiet hours {text!r}: expected HH:MM-HH:MM or 'off'") from None
    return QuietHours(start, end)


# -- planning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DossierFacts:
    """What the notifier keeps of a dossier from its ``received`` event."""

    dossier: str
    procedure: str
    agency: str                       # the receiving agency
    received_at: datetime
    appointment_at: datetime | None
    contacts: Contacts


@dataclass(frozen=True)
class Policy:
    """How messages are sent. ``quiet``: channels that keep quiet hours (SMS by default).
    ``max_age``: an event older than this when read is not told (a notifier started after a
    long stop does not tell citizens of last month's hand-offs)."""

    quiet_hours: QuietHours | None = field(default_factory=QuietHours)
    quiet: frozenset[str] = frozenset({"sms"})
    max_age: timedelta = timedelta(days=2)
    channels: frozenset[str] = frozenset(CHANNELS)


@dataclass(frozen=True)
class Message:
    """One message to send: a channel, an address and a text, not before ``not_before``."""

    message_id: str
    dossier: str
    event_id: str
    kind: str
    channel: str
    address: str
    subject: str
    text: str
    event_at: datetime
    not_before: datetime
    held: bool = False                # ``not_before`` is the end of quiet hours


@dataclass(frozen=True)
class Skip:
    """A message not sent, and why: ``opted_out``, ``stale``, ``no_contact``."""

    message_id: str
    dossier: str
    event_id: str
    kind: str
    channel: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """What an event asks of the notifier."""

    facts: DossierFacts | None = None        # new facts to keep (a ``received`` event)
    messages: tuple[Message, ...] = ()
    skipped: tuple[Skip, ...] = ()


def message_id(dossier: str, event_id: str, channel: str) -> str:
    """The message's id, the same every time the event is read: uuid5(dossier, event, channel)."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{dossier}|{event_id}|{channel}"))


def notice_kind(event: Mapping[str, Any], facts: DossierFacts | None) -> str | None:
    """Which notice an event (canonical JSON) is, if any."""
    etype = event.get("type")
    if etype == "received":
        return "received"
    if etype == "handoff":
        to = event.get("to_agency")
        # A hand-back to the desk that received it is internal; the citizen hears of the result.
        return "handoff" if facts is None or to != facts.agency else None
    if etype == "supplement_requested":
        return "supplement"
    if etype == "apology_issued":
        return "apology"
    if etype == "result_ready":
        return "result_ready"
    if etype == "postal_update" and event.get("leg") == "result_out" \
            and event.get("status") == "picked_up":
        return "result_posted"
    return None


def channels_for(contacts: Contacts, allowed: Iterable[str] = CHANNELS) -> list[str]:
    """Zalo if given, else SMS if given (one message to the phone); e-mail as well."""
    allowed = set(allowed)
    out: list[str] = []
    if contacts.zalo_user_id and "zalo" in allowed:
        out.append("zalo")
    elif contacts.phone and "sms" in allowed:
        out.append("sms")
    if contacts.email and "email" in allowed:
        out.append("email")
    return out


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def facts_of(event: Mapping[str, Any]) -> DossierFacts | None:
    """The facts of a ``received`` event; None for any other event or a malformed one."""
    at = _instant(event.get("at"))
    if event.get("type") != "received" or at is None:
        return None
    dossier, procedure, agency = event.get("dossier"), event.get("procedure"), event.get("agency")
    if not (isinstance(dossier, str) and isinstance(procedure, str) and isinstance(agency, str)):
        return None
    applicant = event.get("applicant")
    return DossierFacts(dossier, procedure, agency, at, _instant(event.get("appointment_at")),
                        contacts_of(applicant if isinstance(applicant, Mapping) else None))


TemplateLookup = Callable[[str, str, datetime], str | None]
"""(procedure code, notice kind, received at) → the procedure's own template, if any."""
NameLookup = Callable[[str], str | None]
"""An agency or procedure code → its name in the catalogue."""


@dataclass(frozen=True)
class Wording:
    """What the templates need from the catalogue: names, the province, its time zone."""

    tz: tzinfo
    province: str = ""
    agency_name: NameLookup = lambda code: None
    procedure_name: Callable[[str, datetime], str | None] = lambda code, at: None
    template: TemplateLookup = lambda procedure, kind, at: None


def _local(t: datetime | None, tz: tzinfo, with_time: bool = True) -> str:
    if t is None:
        return ""
    local = t.astimezone(tz)
    return local.strftime("%H:%M ngày %d/%m/%Y" if with_time else "%d/%m/%Y")


def values_for(event: Mapping[str, Any], facts: DossierFacts, wording: Wording,
               appointment: datetime | None) -> dict[str, str]:
    """The placeholders' values for one event of a dossier."""
    def name(code: object) -> str:
        if not isinstance(code, str):
            return ""
        return wording.agency_name(code) or code

    decision = event.get("decision")
    return {
        "dossier": facts.dossier,
        "procedure": facts.procedure,
        "procedure_name": wording.procedure_name(facts.procedure, facts.received_at)
        or facts.procedure,
        "agency_name": name(event.get("agency") if event.get("type") != "postal_update"
                            else facts.agency),
        "to_agency_name": name(event.get("to_agency")),
        "reason": str(event.get("reason") or ""),
        "appointment": _local(appointment, wording.tz) or "sẽ được thông báo sau",
        "new_due": _local(_instant(event.get("new_due_at")), wording.tz),
        "decision": DECISION_WORDS.get(str(decision), str(decision or "")),
        "tracking_number": str(event.get("tracking_number") or ""),
        "province": wording.province,
    }


def plan(event: Mapping[str, Any], facts: DossierFacts | None, *, now: datetime,
         wording: Wording, policy: Policy = Policy(),
         opted_out: Callable[[str, str], bool] = lambda channel, address: False,
         appointment: datetime | None = None) -> Plan:
    """What to send for ``event`` (canonical JSON) of a dossier whose facts are ``facts``.

    ``now``: when the event is handled (quiet hours and staleness are judged then).
    ``appointment``: the hub's appointment for a ``received`` (the source's when None).
    ``opted_out(channel, address)``: the citizen asked not to be told on that address.
    A dossier the notifier never saw received (``facts`` None) gets nothing but its facts.
    """
    new_facts = facts_of(event)
    if new_facts is not None:
        if facts is not None:       # a second received is the tracker's to reject; tell once
            return Plan()
        facts = new_facts
    if facts is None:
        return Plan()
    kind = notice_kind(event, facts)
    event_id, at = event.get("event_id"), _instant(event.get("at"))
    if kind is None or not isinstance(event_id, str) or at is None:
        return Plan(facts=new_facts)
    messages: list[Message] = []
    skipped: list[Skip] = []
    targets = channels_for(facts.contacts, policy.channels)
    if not targets:
        skipped.append(Skip(message_id(facts.dossier, event_id, "none"), facts.dossier,
                            event_id, kind, "none", "no_contact"))
    stale = now - at > policy.max_age
    wanted = appointment or facts.appointment_at
    values = values_for(event, facts, wording, wanted)
    template = wording.template(facts.procedure, kind, facts.received_at) or \
        DEFAULT_TEMPLATES[kind]
    text = render(template, values)
    subject = render(SUBJECTS[kind], values)
    for channel in targets:
        address = facts.contacts.address(channel)
        assert address is not None
        mid = message_id(facts.dossier, event_id, channel)
        reason = "stale" if stale else "opted_out" if opted_out(channel, address) else None
        if reason is not None:
            skipped.append(Skip(mid, facts.dossier, event_id, kind, channel, reason))
            continue
        # From when it is planned: an event stamped a little ahead (a source's clock) is not
        # waited for.
        start = now
        release = start
        if policy.quiet_hours is not None and channel in policy.quiet:
            release = policy.quiet_hours.release(start, wording.tz)
        body = plain_text(text) if channel == "sms" else text
        messages.append(Message(mid, facts.dossier, event_id, kind, channel, address, subject,
                                body, at, release, release > start))
    return Plan(facts=new_facts, messages=tuple(messages), skipped=tuple(skipped))


def sms_fallback(refused: Message, facts: DossierFacts, *, now: datetime, tz: tzinfo,
                 policy: Policy = Policy(),
                 opted_out: Callable[[str, str], bool] = lambda channel, address: False,
                 ) -> Message | Skip | None:
    """Zalo refused a message for good (the applicant does not follow the OA, blocked it):
    the same notice by SMS when the applicant gave a phone number, under the SMS id of that
    event (so it is planned once); None without a phone or for a channel other than Zalo."""
    phone = facts.contacts.phone
    if refused.channel != "zalo" or phone is None or "sms" not in policy.channels:
        return None
    mid = message_id(refused.dossier, refused.event_id, "sms")
    if opted_out("sms", phone):
        return Skip(mid, refused.dossier, refused.event_id, refused.kind, "sms", "opted_out")
    release = now
    if policy.quiet_hours is not None and "sms" in policy.quiet:
        release = policy.quiet_hours.release(now, tz)
    return Message(mid, refused.dossier, refused.event_id, refused.kind, "sms", phone,
                   refused.subject, plain_text(refused.text), refused.event_at, release,
                   release > now)


# -- sending: what a provider's answer means -------------------------------------------------

Outcome = Literal["accepted", "retry", "rejected"]


@dataclass(frozen=True)
class RetryRule:
    """Backoff for a message a provider did not take: ``base`` · 2ⁿ up to ``cap``, given up
    after ``attempts`` tries (a 429's ``Retry-After`` is honoured up to ``cap``)."""

    attempts: int = 8
    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=5)

    def next_try(self, attempts_made: int, now: datetime,
                 retry_after: float | None = None) -> datetime | None:
        """When to try again after ``attempts_made`` failed tries; None to give up."""
        if attempts_made >= self.attempts:
            return None
        wait: timedelta = self.base * (2 ** max(0, attempts_made - 1))
        if retry_after is not None:
            wait = max(wait, timedelta(seconds=retry_after))
        return now + min(wait, self.cap)


def classify_http(status: int) -> Outcome:
    """A provider's HTTP status: 2xx taken; 408/425/429/5xx again later; other 4xx refused."""
    if 200 <= status < 300:
        return "accepted"
    if status in (408, 425, 429) or status >= 500:
        return "retry"
    return "rejected"


OPT_OUT_WORDS = frozenset({"TU CHOI", "TUCHOI", "HUY", "STOP", "DUNG", "HUY TB", "TC"})


def is_opt_out(text: str) -> bool:
    """An SMS reply asking to stop ("TU CHOI", "Từ chối", "STOP", "HUY")."""
    return " ".join(plain_text(text).upper().split()) in OPT_OUT_WORDS
