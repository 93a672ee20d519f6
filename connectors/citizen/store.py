"""The notifier's committed progress: one SQLite file (``DATA_DIR/citizen-notify.sqlite``).

What makes each message go out once per (dossier, event, channel) across restarts:

1. A batch of events is applied in **one transaction** with the next offset of each partition:
   the dossiers' facts, the planned messages (``INSERT OR IGNORE`` on the deterministic message
   id) and the timeline reports. A notifier killed mid-batch re-reads the batch from the stored
   offset and plans the same ids again; rows already there stay as they are.
2. A message is marked ``sent`` once the provider took it. Killed between the provider's
   answer and that mark, the notifier sends it again under the same id, which it gives to the
   provider as the idempotency key (SMS ``Idempotency-Key``, Zalo ``tracking_id``, e-mail
   ``Message-ID``): the provider drops the repeat.
3. Timeline reports are written in the same transaction as the change they report and deleted
   only after Kafka acknowledged them (an outbox): none is lost, a repeat carries the same
   (message id, status) and readers keep one.

Personal data: addresses live only in ``dossiers`` and ``messages`` (needed to send) and are
deleted ``keep_days`` after the message finished (:meth:`NoticeStore.purge`); opt-outs keep a
SHA-256 of the address, not the address. The file is created readable by its owner only.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lienthong.services.domain.citizen import Contacts, DossierFacts, Message, Skip, mask

SCHEMA = """
CREATE TABLE IF NOT EXISTS progress (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS dossiers (
    dossier TEXT PRIMARY KEY, procedure TEXT NOT NULL, agency TEXT NOT NULL,
    received_at TEXT NOT NULL, appointment_at TEXT, phone TEXT, email TEXT, zalo TEXT,
    stored_at REAL NOT NULL, ended_at REAL);
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY, dossier TEXT NOT NULL, event_id TEXT NOT NULL,
    kind TEXT NOT NULL, channel TEXT NOT NULL, address TEXT, subject TEXT, text TEXT,
    event_at TEXT NOT NULL, event_ts REAL, not_before REAL NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL, provider_id TEXT,
    detail TEXT NOT NULL DEFAULT '', handed_at REAL, finished_at REAL,
    held INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS messages_due ON messages (status, next_try);
CREATE INDEX IF NOT EXISTS messages_provider ON messages (channel, provider_id);
CREATE TABLE IF NOT EXISTS optouts (
    channel TEXT NOT NULL, address_hash TEXT NOT NULL, at TEXT NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (channel, address_hash));
CREATE TABLE IF NOT EXISTS reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, dossier TEXT NOT NULL, body TEXT NOT NULL);
"""

#: Message statuses: ``queued`` (to send at ``next_try``; held by quiet hours until then),
#: ``sent`` (the provider took it), ``delivered`` / ``failed`` (the provider's delivery report,
#: or given up), ``skipped`` (opted out, stale, no contact).
OPEN = ("queued", "sent")


def address_hash(channel: str, address: str) -> str:
    return hashlib.sha256(f"{channel}:{address}".encode()).hexdigest()


def _ts(t: datetime) -> float:
    return t.timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class StoredMessage:
    """A message as the sender sees it."""

    message_id: str
    dossier: str
    event_id: str
    kind: str
    channel: str
    address: str
    subject: str
    text: str
    attempts: int
    event_ts: float | None
    not_before: float
    provider_id: str | None = None
    handed_at: float | None = None


@dataclass(frozen=True)
class Report:
    """One line of a dossier's timeline: a message's new status (JSON on the topic)."""

    seq: int
    dossier: str
    body: dict[str, Any]


class NoticeStore:
    """The SQLite file; thread-safe (one connection behind a lock; calls are short)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed transaction survives the process being killed (-9); only
        # a power cut may lose the last ones, which are then re-planned under the same ids.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, tuple(args)))

    # -- progress ------------------------------------------------------------------------------

    def offsets(self, topic: str) -> dict[int, int]:
        """The next offset to read of each partition of ``topic`` applied so far."""
        return {p: o for p, o in self._query(
            "SELECT partition, next_offset FROM progress WHERE topic = ?", (topic,))}

    # -- facts ---------------------------------------------------------------------------------

    def facts(self, dossier: str) -> DossierFacts | None:
        rows = self._query("SELECT procedure, agency, received_at, appointment_at, phone, email,"
                           " zalo FROM dossiers WHERE dossier = ?", (dossier,))
        if not rows:
            return None
        procedure, agency, received, appointment, phone, email, zalo = rows[0]
        return DossierFacts(dossier, procedure, agency, datetime.fromisoformat(received),
                            datetime.fromisoformat(appointment) if appointment else None,
                            Contacts(phone, email, zalo))

    # -- applying a batch of events --------------------------------------------------------------

    def apply(self, topic: str, positions: Mapping[int, int], facts: Iterable[DossierFacts],
              messages: Iterable[tuple[Message, float | None]], skipped: Iterable[Skip],
              now: datetime, voids: Iterable[tuple[str, str]] = (),
              ended: Iterable[str] = ()) -> list[Message]:
        """One batch, atomically: facts, messages (with the event's Kafka timestamp), skips,
        their reports, and each partition's next offset. Returns the messages newly planned
        (not those planned before, when a batch is read again)."""
        now_ts = _ts(now)
        added: list[Message] = []
        with self._tx() as db:
            for f in facts:
                db.execute(
                    "INSERT OR IGNORE INTO dossiers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    (f.dossier, f.procedure, f.agency, f.received_at.isoformat(),
                     f.appointment_at.isoformat() if f.appointment_at else None,
                     f.contacts.phone, f.contacts.email, f.contacts.zalo_user_id, now_ts))
            for m, event_ts in messages:
                nb = _ts(m.not_before)
                cur = db.execute(
                    "INSERT OR IGNORE INTO messages (message_id, dossier, event_id, kind, channel,"
                    " address, subject, text, event_at, event_ts, not_before, status, next_try,"
                    " held)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                    (m.message_id, m.dossier, m.event_id, m.kind, m.channel, m.address,
                     m.subject, m.text, m.event_at.isoformat(), event_ts, nb, nb, int(m.held)))
                if cur.rowcount:
                    added.append(m)
                    detail = m.not_before.isoformat() if m.held else ""
                    self._report(db, m.dossier, m.message_id, m.event_id, m.kind, m.channel,
                                 "held" if m.held else "queued", now_ts, detail,
                                 mask(m.channel, m.address))
            for s in skipped:
                cur = db.execute(
                    "INSERT OR IGNORE INTO messages (message_id, dossier, event_id, kind, channel,"
                    " event_at, not_before, status, next_try, detail, finished_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'skipped', ?, ?, ?)",
                    (s.message_id, s.dossier, s.event_id, s.kind, s.channel, "", now_ts,
                     now_ts, s.reason, now_ts))
                if cur.rowcount:
                    self._report(db, s.dossier, s.message_id, s.event_id, s.kind, s.channel,
                                 "skipped", now_ts, s.reason, None)
            for dossier, event_id in voids:     # after the messages: a void may follow its
                self._void(db, dossier, event_id, now_ts)   # event in the same batch
            for dossier in ended:              # returned, withdrawn or stopped
                db.execute("UPDATE dossiers SET ended_at = ? WHERE dossier = ?"
                           " AND ended_at IS NULL", (now_ts, dossier))
            for partition, offset in positions.items():
                db.execute("INSERT INTO progress VALUES (?, ?, ?) ON CONFLICT (topic, partition)"
                           " DO UPDATE SET next_offset = excluded.next_offset",
                           (topic, partition, offset))
        return added

    @staticmethod
    def _report(db: sqlite3.Connection, dossier: str, message_id: str, event_id: str,
                kind: str, channel: str, status: str, at: float, detail: str,
                to: str | None) -> None:
        body = {"message_id": message_id, "dossier": dossier, "event_id": event_id,
                "kind": kind, "channel": channel, "status": status, "at": _iso(at),
                "detail": detail}
        if to is not None:
            body["to"] = to
        db.execute("INSERT INTO reports (dossier, body) VALUES (?, ?)",
                   (dossier, json.dumps(body, ensure_ascii=False)))

    # -- sending ---------------------------------------------------------------------------------

    def due(self, now: datetime, limit: int = 100,
            exclude: Iterable[str] = ()) -> list[StoredMessage]:
        """Queued messages whose time has come, oldest first."""
        skip = set(exclude)
        rows = self._query(
            "SELECT message_id, dossier, event_id, kind, channel, address, subject, text,"
            " attempts, event_ts, not_before FROM messages WHERE status = 'queued'"
            " AND next_try <= ? ORDER BY next_try LIMIT ?", (_ts(now), limit + len(skip)))
        return [StoredMessage(*r) for r in rows if r[0] not in skip][:limit]

    def next_due(self) -> float | None:
        rows = self._query("SELECT MIN(next_try) FROM messages WHERE status = 'queued'")
        return rows[0][0] if rows else None

    def handed(self, m: StoredMessage, provider_id: str | None, now: datetime, *,
               final: bool = False) -> None:
        """The provider took the message; ``final`` for a channel with no delivery report
        (e-mail: handed to the relay is as far as it goes)."""
        ts = _ts(now)
        with self._tx() as db:
            cur = db.execute("UPDATE messages SET status = 'sent', provider_id = ?, handed_at = ?,"
                             " attempts = attempts + 1, finished_at = ? WHERE message_id = ?"
                             " AND status = 'queued'",
                             (provider_id, ts, ts if final else None, m.message_id))
            if cur.rowcount:
                self._report(db, m.dossier, m.message_id, m.event_id, m.kind, m.channel,
                             "sent", ts, f"provider id {provider_id}" if provider_id else "",
                             mask(m.channel, m.address))

    def retry(self, m: StoredMessage, next_try: datetime, detail: str, *,
              counted: bool = True) -> None:
        """Try again at ``next_try``; an attempt refused only for the provider's rate is not
        ``counted`` against the message's attempts."""
        with self._tx() as db:
            db.execute("UPDATE messages SET attempts = attempts + ?, next_try = ?, detail = ?"
                       " WHERE message_id = ? AND status = 'queued'",
                       (int(counted), _ts(next_try), detail, m.message_id))

    def fail(self, m: StoredMessage, detail: str, now: datetime) -> None:
        """Given up (refused by the provider, or out of attempts)."""
        ts = _ts(now)
        with self._tx() as db:
            cur = db.execute("UPDATE messages SET status = 'failed', attempts = attempts + 1,"
                             " detail = ?, finished_at = ? WHERE message_id = ?"
                             " AND status = 'queued'", (detail, ts, m.message_id))
            if cur.rowcount:
                self._report(db, m.dossier, m.message_id, m.event_id, m.kind, m.channel,
                             "failed", ts, detail, mask(m.channel, m.address))

    def delivery_report(self, channel: str, provider_id: str, delivered: bool, detail: str,
                        now: datetime) -> bool:
        """A provider's delivery report; False if no sent message has that provider id."""
        ts = _ts(now)
        status = "delivered" if delivered else "failed"
        with self._tx() as db:
            rows = list(db.execute(
                "SELECT message_id, dossier, event_id, kind, address FROM messages WHERE"
                " channel = ? AND provider_id = ? AND status = 'sent'", (channel, provider_id)))
            for mid, dossier, event_id, kind, address in rows:
                db.execute("UPDATE messages SET status = ?, detail = ?, finished_at = ?"
                           " WHERE message_id = ?", (status, detail, ts, mid))
                self._report(db, dossier, mid, event_id, kind, channel, status, ts, detail,
                             mask(channel, address))
        return bool(rows)

    def awaiting_report(self, channel: str, handed_before: datetime,
                        limit: int = 100) -> list[StoredMessage]:
        """Sent messages of ``channel`` with no delivery report yet (for providers polled)."""
        rows = self._query(
            "SELECT message_id, dossier, event_id, kind, channel, address, subject, text,"
            " attempts, event_ts, not_before, provider_id, handed_at FROM messages"
            " WHERE status = 'sent' AND channel = ? AND handed_at <= ? ORDER BY handed_at"
            " LIMIT ?", (channel, _ts(handed_before), limit))
        return [StoredMessage(*r) for r in rows]

    # -- opt-out ---------------------------------------------------------------------------------

    def opt_out(self, channel: str, address: str, source: str, now: datetime) -> bool:
        """The citizen asked not to be told on ``address``; True if new. Messages still queued
        to that address are skipped."""
        h = address_hash(channel, address)
        ts = _ts(now)
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO optouts VALUES (?, ?, ?, ?)",
                             (channel, h, now.isoformat(), source))
            rows = list(db.execute("SELECT message_id, dossier, event_id, kind FROM messages"
                                   " WHERE channel = ? AND address = ? AND status = 'queued'",
                                   (channel, address)))
            for mid, dossier, event_id, kind in rows:
                db.execute("UPDATE messages SET status = 'skipped', detail = 'opted_out',"
                           " finished_at = ? WHERE message_id = ?", (ts, mid))
                self._report(db, dossier, mid, event_id, kind, channel, "skipped", ts,
                             "opted_out", None)
            return bool(cur.rowcount)

    def _void(self, db: sqlite3.Connection, dossier: str, event_id: str, ts: float) -> None:
        """An operator voided an event (``event_voided``): its messages not sent yet are
        skipped; those already sent stay on record."""
        rows = list(db.execute("SELECT message_id, kind, channel FROM messages WHERE"
                               " dossier = ? AND event_id = ? AND status = 'queued'",
                               (dossier, event_id)))
        for mid, kind, channel in rows:
            db.execute("UPDATE messages SET status = 'skipped', detail = 'voided',"
                       " finished_at = ? WHERE message_id = ?", (ts, mid))
            self._report(db, dossier, mid, event_id, kind, channel, "skipped", ts,
                         "voided", None)

    def opt_in(self, channel: str, address: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM optouts WHERE channel = ? AND address_hash = ?",
                             (channel, address_hash(channel, address)))
            return bool(cur.rowcount)

    def opted_out(self, channel: str, address: str) -> bool:
        return bool(self._query("SELECT 1 FROM optouts WHERE channel = ? AND address_hash = ?",
                                (channel, address_hash(channel, address))))

    # -- the timeline outbox ---------------------------------------------------------------------

    def reports(self, limit: int = 500) -> list[Report]:
        return [Report(seq, dossier, json.loads(body)) for seq, dossier, body in self._query(
            "SELECT seq, dossier, body FROM reports ORDER BY seq LIMIT ?", (limit,))]

    def reported(self, upto_seq: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM reports WHERE seq <= ?", (upto_seq,))

    # -- housekeeping and figures ----------------------------------------------------------------

    def purge(self, before: datetime) -> int:
        """Erase the addresses and texts of messages finished before ``before`` and the
        contacts of dossiers ended before it (Decree 13/2023: personal data no longer than
        needed); message ids stay, so nothing is sent twice."""
        ts = _ts(before)
        with self._tx() as db:
            # Finished, or handed over long ago with no delivery report ever coming.
            cur = db.execute("UPDATE messages SET address = NULL, text = NULL, subject = NULL"
                             " WHERE address IS NOT NULL AND (finished_at < ?"
                             " OR (status = 'sent' AND handed_at < ?))", (ts, ts))
            # A dossier's contacts are kept while it is open (a result may come months
            # after the receipt) and ``before`` after it ended.
            db.execute("DELETE FROM dossiers WHERE ended_at < ? AND dossier NOT IN"
                       " (SELECT dossier FROM messages WHERE status IN ('queued', 'sent'))",
                       (ts,))
            return cur.rowcount

    def counts(self) -> dict[tuple[str, str], int]:
        """Messages by (channel, status)."""
        return {(c, s): n for c, s, n in self._query(
            "SELECT channel, status, COUNT(*) FROM messages GROUP BY channel, status")}

    def messages_of(self, dossier: str) -> list[dict[str, Any]]:
        """A dossier's messages (addresses masked), for the CLI and tests."""
        rows = self._query(
            "SELECT message_id, event_id, kind, channel, address, status, attempts, detail,"
            " not_before, handed_at FROM messages WHERE dossier = ? ORDER BY rowid", (dossier,))
        return [{"message_id": r[0], "event_id": r[1], "kind": r[2], "channel": r[3],
                 "to": mask(r[3], r[4]), "status": r[5], "attempts": r[6], "detail": r[7],
                 "not_before": _iso(r[8]), "handed_at": _iso(r[9]) if r[9] else None}
                for r in rows]
