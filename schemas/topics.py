"""The one place that knows the hub's Kafka topics: names, partitions, replication, retention.

==================  =========  ==================================================================
topic               key        what, and why its configuration
==================  =========  ==================================================================
dossier.events      dossier    every event of every dossier (Avro, ``codec.EVENTS``). The legal
                               record of who did what when: never deleted by Kafka
                               (``retention.ms=-1``, ``retention.bytes=-1``); archive or tiered
                               storage is an operations decision, not a retention setting.
deliveries          dossier    what must reach a destination system (``codec.DELIVERIES``).
                               Consumed within seconds; kept 30 days for audit and re-sends.
alerts              dossier or every alert (``codec.ALERTS``); consumers deduplicate by id. Kept
                    destination 90 days so a dashboard can rebuild its feed.
deadletter          original   anything the hub could not process (``codec.DEADLETTERS``).
                    key        Never deleted: nothing is silently dropped.
catalog             entry id   agencies, procedures, calendar. Compacted: the latest value of
                               each key is the catalogue.
dossier.status      dossier    the latest snapshot of each dossier (JSON), written by the
                               tracker for the dashboard and timelines. Compacted.
gateway.nonces      agency +   every nonce a gateway accepted (replay protection shared by all
                    nonce      gateways, ``connectors/gateway/shared_nonces.py``). Compacted and
                               deleted after 1 hour (a claim is live at most 10 minutes);
                               segments roll every 10 minutes so the deletion happens.
citizen.            dossier    what the applicant was told and how it went (JSON, one record per
notifications                  status of a message: queued, held, sent, delivered, failed,
                               skipped), written by ``citizen-notify`` for the dossier's
                               timeline. Masked addresses only. Kept 400 days (a year of
                               complaints about "nobody told me" can be answered).
receipts            dossier    signed receipts of applied deliveries (``codec.RECEIPTS``), written
                               by the delivery service once the receiver's signature checks out.
                               Evidence: never deleted.
receipts.expected   delivery   the deliveries whose signed receipt the delivery service still
                    id         awaits (``codec.RECEIPTS_EXPECTED``: destination, dossier, kind,
                               due, deliveries partition), written before the delivery's offset
                               is committed; a tombstone once the receipt is recorded or its
                               ``receipt_missing`` alert raised. Compacted: the latest value of
                               each key is the watch, read back when a delivery service takes a
                               deliveries partition, so a restart loses no pending alert.
operator.actions    operator   the dashboard's operator actions (sign-ins, views of personal data,
                               re-sends, account changes), one JSON object each, as in its
                               JSONL audit file; chained into audit.log. Never deleted.
audit.log           dossier or the hash-chained audit log (``codec.AUDIT_ENTRIES``), one chain per
                    source     partition; its only writer is ``lienthong audit chain``. Evidence:
                               never deleted, never compacted.
audit.checkpoints   none       signed chain heads of every audit partition
                               (``codec.AUDIT_CHECKPOINTS``). One partition, kept forever.
==================  =========  ==================================================================

Partitions of the keyed topics come from ``Settings.partitions`` (one dossier's records stay in
order on one partition; a nonce's claims stay on one partition, chosen from its key);
``catalog`` and ``deadletter`` have one. Replication is
``Settings.replication_factor`` (3 in production, 1 embedded); with 3 or more replicas
``min.insync.replicas`` is 2, so an ``acks=all`` write survives the loss of one broker.
``Settings.topic_prefix`` (``LIENTHONG_TOPIC_PREFIX``) is prepended to every name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from lienthong.services.settings import Settings

log = logging.getLogger(__name__)

DOSSIER_EVENTS = "dossier.events"
DELIVERIES = "deliveries"
ALERTS = "alerts"
DEADLETTER = "deadletter"
CATALOG = "catalog"
DOSSIER_STATUS = "dossier.status"
GATEWAY_NONCES = "gateway.nonces"
CITIZEN_NOTIFICATIONS = "citizen.notifications"
RECEIPTS = "receipts"
RECEIPTS_EXPECTED = "receipts.expected"
OPERATOR_ACTIONS = "operator.actions"
AUDIT_LOG = "audit.log"
AUDIT_CHECKPOINTS = "audit.checkpoints"

LEGAL_RECORD = (DOSSIER_EVENTS, DEADLETTER, RECEIPTS, OPERATOR_ACTIONS, AUDIT_LOG,
                AUDIT_CHECKPOINTS)
"""Topics Kafka must never delete from (retention -1, never compacted): the legal record and
its evidence."""

_DAY_MS = 24 * 3600 * 1000
_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
_COMPACTED = {"cleanup.policy": "compact", "retention.ms": "-1", "retention.bytes": "-1"}
_HOUR_MS = 3600 * 1000
_NONCES = {"cleanup.policy": "compact,delete", "retention.ms": str(_HOUR_MS),
           "segment.ms": str(_HOUR_MS // 6)}


@dataclass(frozen=True)
class TopicSpec:
    """One topic as it must exist on the cluster."""

    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicNames:
    """The hub's topic names with the prefix applied."""

    events: str
    deliveries: str
    alerts: str
    deadletter: str
    catalog: str
    status: str
    nonces: str
    receipts: str
    operator_actions: str
    audit_log: str
    audit_checkpoints: str
    citizen: str = CITIZEN_NOTIFICATIONS
    receipts_expected: str = RECEIPTS_EXPECTED

    def all(self) -> tuple[str, ...]:
        return (self.events, self.deliveries, self.alerts, self.deadletter, self.catalog,
                self.status, self.nonces, self.citizen, self.receipts, self.operator_actions,
                self.audit_log, self.audit_checkpoints, self.receipts_expected)


def names(settings: Settings) -> TopicNames:
    p = settings.topic_prefix
    return TopicNames(events=p + DOSSIER_EVENTS, deliveries=p + DELIVERIES, alerts=p + ALERTS,
                      deadletter=p + DEADLETTER, catalog=p + CATALOG, status=p + DOSSIER_STATUS,
                      nonces=p + GATEWAY_NONCES, citizen=p + CITIZEN_NOTIFICATIONS,
                      receipts=p + RECEIPTS, operator_actions=p + OPERATOR_ACTIONS,
                      audit_log=p + AUDIT_LOG, audit_checkpoints=p + AUDIT_CHECKPOINTS,
                      receipts_expected=p + RECEIPTS_EXPECTED)


DOSSIER_TABLE = "dossiers"


def changelog(settings: Settings) -> str:
    """The changelog of the worker's dossier table, as faust names it (``{app id}-{table
    name}-changelog``) and creates it: compacted, with ``Settings.partitions`` partitions, each
    dossier's state on the partition of its events."""
    return f"{settings.app_id}-{DOSSIER_TABLE}-changelog"


def specs(settings: Settings) -> list[TopicSpec]:
    """Every hub topic with its partitions, replication and configuration."""
    rf = settings.replication_factor
    if rf < 1 or settings.partitions < 1:
        raise ValueError("partitions and replication factor must be at least 1")
    common = {
        "min.insync.replicas": "2" if rf >= 3 else "1",
        "unclean.leader.election.enable": "false",  # never trade records for availability
    }
    n = names(settings)
    keyed = settings.partitions
    return [
        TopicSpec(n.events, keyed, rf, {**common, **_FOREVER}),
        TopicSpec(n.deliveries, keyed, rf, {**common, "retention.ms": str(30 * _DAY_MS)}),
        TopicSpec(n.alerts, keyed, rf, {**common, "retention.ms": str(90 * _DAY_MS)}),
        TopicSpec(n.deadletter, 1, rf, {**common, **_FOREVER}),
        TopicSpec(n.catalog, 1, rf, {**common, **_COMPACTED}),
        TopicSpec(n.status, keyed, rf, {**common, **_COMPACTED}),
        TopicSpec(n.nonces, keyed, rf, {**common, **_NONCES}),
        TopicSpec(n.citizen, keyed, rf, {**common, "retention.ms": str(400 * _DAY_MS)}),
        TopicSpec(n.receipts, keyed, rf, {**common, **_FOREVER}),
        TopicSpec(n.operator_actions, 1, rf, {**common, **_FOREVER}),
        # Same partition count as the keyed sources: audit partition p chains source partition
        # p of every keyed topic, so one dossier's whole history is one chain.
        TopicSpec(n.audit_log, keyed, rf, {**common, **_FOREVER}),
        TopicSpec(n.audit_checkpoints, 1, rf, {**common, **_FOREVER}),
        # Keyed like deliveries: deliveries partition p is watched on partition p (modulo).
        TopicSpec(n.receipts_expected, keyed, rf, {**common, **_COMPACTED}),
    ]


def ensure_topics(bootstrap_servers: str | Iterable[str], settings: Settings, *,
                  timeout_s: float = 30.0, wanted: list[TopicSpec] | None = None) -> list[str]:
    """Create the hub's topics that do not exist yet; returns the names it created.

    ``wanted`` replaces ``specs(settings)`` (e.g. those specs with broker append timestamps
    and extra topics of a benchmark).

    Idempotent: an existing topic is left as it is (its partition count is checked, as a
    topic with fewer partitions than configured would move dossiers between partitions when
    grown). Waits until every topic has a leader for each partition.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    wanted = specs(settings) if wanted is None else wanted
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="lienthong-topics",
                             request_timeout_ms=int(timeout_s * 1000))
    created: list[str] = []
    try:
        existing = set(admin.list_topics())
        for spec in wanted:
            if spec.name in existing:
                continue
            try:
                admin.create_topics({spec.name: {"num_partitions": spec.partitions,
                                                 "replication_factor": spec.replication,
                                                 "configs": spec.config}},
                                    timeout_ms=int(timeout_s * 1000))
                created.append(spec.name)
                log.info("created topic %s (%d partitions, replication %d)", spec.name,
                         spec.partitions, spec.replication)
            except TopicAlreadyExistsError:
                pass  # another process created it meanwhile
        admin.wait_for_topics([s.name for s in wanted], timeout_ms=int(timeout_s * 1000))
        described = {t.get("name", t.get("topic")): len(t["partitions"])
                     for t in admin.describe_topics([s.name for s in wanted])}
        for spec in wanted:
            have = described.get(spec.name)
            if have is not None and have < spec.partitions:
                log.warning("topic %s has %d partitions, configured %d; grow it by hand only "
                            "with the workers stopped", spec.name, have, spec.partitions)
    finally:
        admin.close()
    return created
