"""The local hub's own decisions, no broker: what its processes see, which topics it creates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lienthong.deploy.local import APPEND_TIME, LocalHub, isolated_prefix
from lienthong.schemas import topics


def hub(tmp_path: Path, **options: Any) -> LocalHub:
    return LocalHub("127.0.0.1:9", tmp_path, **options)


def test_a_process_sees_the_hubs_settings_and_none_of_the_callers_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIENTHONG_TOPIC_PREFIX", "someone-else.")
    monkeypatch.setenv("LIENTHONG_GATEWAY_PORT", "8400")
    h = hub(tmp_path, partitions=3, replication=3, clock="scaled:2026-11-27T11:35:00+07:00:1")
    env = h.env(LIENTHONG_WORKER_PORT="7001")
    assert env["LIENTHONG_TOPIC_PREFIX"] == h.prefix
    assert env["LIENTHONG_APP_ID"] == f"{h.prefix}worker"
    assert (env["LIENTHONG_PARTITIONS"], env["LIENTHONG_REPLICATION"]) == ("3", "3")
    assert env["LIENTHONG_CLOCK"] == "scaled:2026-11-27T11:35:00+07:00:1"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9"
    assert env["LIENTHONG_WORKER_PORT"] == "7001"
    assert "LIENTHONG_GATEWAY_PORT" not in env


def test_a_benchmark_hub_stamps_only_its_timed_outputs_and_extra_topics(tmp_path: Path) -> None:
    h = hub(tmp_path, broker_timestamps=True, partitions=6)
    n = h.names
    specs = {s.name: s for s in h.topic_specs(extra=(f"{h.prefix}passthrough",))}
    stamped = {name for name, s in specs.items()
               if s.config.get("message.timestamp.type") == "LogAppendTime"}
    assert stamped == {n.deliveries, n.alerts, n.status, f"{h.prefix}passthrough"}
    assert specs[f"{h.prefix}passthrough"].partitions == 6
    # the hub's own configuration (retention, compaction) is kept beside the stamp
    plain = {s.name: s for s in topics.specs(h.settings)}
    assert specs[n.status].config == {**plain[n.status].config, **APPEND_TIME}
    assert specs[n.events] == plain[n.events]


def test_a_test_hub_creates_exactly_the_hubs_topics(tmp_path: Path) -> None:
    h = hub(tmp_path)
    assert h.topic_specs() == topics.specs(h.settings)


@given(st.sampled_from("hbc"))
def test_every_hub_gets_its_own_prefix_on_a_shared_broker(letter: str) -> None:
    a, b = isolated_prefix(letter), isolated_prefix(letter)
    assert a != b and a.startswith(letter) and a.endswith(".")
    first = LocalHub("x", Path("a"), prefix=a).names.all()
    second = LocalHub("x", Path("b"), prefix=b).names.all()
    assert not set(first) & set(second)


def test_a_process_not_started_by_the_hub_is_named_as_such(tmp_path: Path) -> None:
    h = hub(tmp_path)
    with pytest.raises(KeyError, match="no process 'worker0'"):
        h.kill("worker0")
    assert h.log() == "" and h.workers == [] and h.crashed() == []
