"""The topic catalogue: names with the prefix, partitions, replication and retention."""

from __future__ import annotations

import pytest

from lienthong.schemas import topics
from lienthong.services.settings import Settings


def test_prefix_is_prepended_to_every_topic_name() -> None:
    n = topics.names(Settings(topic_prefix="run42."))
    assert n.events == "run42.dossier.events"
    assert all(name.startswith("run42.") for name in n.all())
    assert topics.names(Settings()).all() == (
        "dossier.events", "deliveries", "alerts", "deadletter", "catalog", "dossier.status",
        "gateway.nonces", "citizen.notifications", "receipts", "operator.actions", "audit.log",
        "audit.checkpoints", "receipts.expected")


def test_prefix_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIENTHONG_TOPIC_PREFIX", "t1-")
    assert topics.names(Settings.from_env()).deliveries == "t1-deliveries"


def test_production_replication_demands_two_in_sync_replicas() -> None:
    by_name = {s.name: s for s in topics.specs(Settings(partitions=12, replication_factor=3))}
    events = by_name["dossier.events"]
    assert (events.partitions, events.replication) == (12, 3)
    assert all(s.config["min.insync.replicas"] == "2" for s in by_name.values())
    embedded = topics.specs(Settings(replication_factor=1))
    assert all(s.config["min.insync.replicas"] == "1" for s in embedded)


def test_the_legal_record_and_dead_letters_are_kept_forever() -> None:
    by_name = {s.name: s for s in topics.specs(Settings())}
    for name in ("dossier.events", "deadletter"):
        assert by_name[name].config["retention.ms"] == "-1"
        assert by_name[name].config.get("cleanup.policy", "delete") == "delete"
    assert by_name["deliveries"].config["retention.ms"] == str(30 * 24 * 3600 * 1000)


def test_catalog_and_status_are_compacted_with_one_or_keyed_partitions() -> None:
    by_name = {s.name: s for s in topics.specs(Settings(partitions=8))}
    assert by_name["catalog"].config["cleanup.policy"] == "compact"
    assert by_name["catalog"].partitions == 1
    assert by_name["dossier.status"].config["cleanup.policy"] == "compact"
    assert by_name["dossier.status"].partitions == 8


def test_nonsense_partition_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        topics.specs(Settings(partitions=0))


def test_gateway_nonces_outlive_the_replay_window_and_then_go() -> None:
    # A claim is live at most 2 x 300 s + 1 s (a timestamp 5 minutes ahead, then the window).
    spec = {s.name: s for s in topics.specs(Settings(partitions=8))}["gateway.nonces"]
    assert spec.config["cleanup.policy"] == "compact,delete"
    assert int(spec.config["retention.ms"]) >= 2 * 601 * 1000
    assert int(spec.config["segment.ms"]) < int(spec.config["retention.ms"])
    assert spec.partitions == 8


def test_nothing_ever_deletes_from_the_legal_record() -> None:
    by_name = {s.name: s for s in topics.specs(Settings())}
    for name in topics.LEGAL_RECORD:
        assert by_name[name].config["retention.ms"] == "-1"
        assert by_name[name].config["retention.bytes"] == "-1"
        assert "compact" not in by_name[name].config.get("cleanup.policy", "delete")


def test_evidence_topics_are_kept_forever_and_the_audit_log_has_the_keyed_partitions() -> None:
    by_name = {s.name: s for s in topics.specs(Settings(partitions=6))}
    for name in ("receipts", "operator.actions", "audit.log", "audit.checkpoints"):
        assert by_name[name].config["retention.ms"] == "-1"
        assert by_name[name].config.get("cleanup.policy", "delete") == "delete"
    assert by_name["audit.log"].partitions == by_name["dossier.events"].partitions == 6
    assert by_name["audit.checkpoints"].partitions == 1


def test_the_receipt_watch_is_compacted_and_keyed_like_the_deliveries() -> None:
    by_name = {s.name: s for s in topics.specs(Settings(partitions=6))}
    watch = by_name["receipts.expected"]
    assert watch.config["cleanup.policy"] == "compact"
    assert watch.partitions == by_name["deliveries"].partitions == 6
    assert "receipts.expected" not in topics.LEGAL_RECORD  # state, not evidence
