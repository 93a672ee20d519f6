"""Command-line checks of ``lienthong delivery`` and ``lienthong deadletter`` (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lienthong.services.cli import main


def test_delivery_refuses_to_send_unsigned_without_being_told(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["delivery", "--bootstrap", "127.0.0.1:9", "--keys-file", ""]) == 2
    assert "--allow-unsigned" in capsys.readouterr().err


def test_delivery_needs_the_hub_key_in_the_keys_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("000.00.15.H99:\n  - {key_id: k1, secret: 0123456789abcdef0123}\n")
    assert main(["delivery", "--bootstrap", "127.0.0.1:9", "--keys-file", str(keys)]) == 2
    assert "no live key for LIENTHONG" in capsys.readouterr().err


def test_deadletter_resend_needs_offsets_or_all_deliveries(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deadletter", "--bootstrap", "127.0.0.1:9", "--topic", "dl", "resend"]) == 2
    assert "--all-deliveries" in capsys.readouterr().err


def test_deadletter_help_names_both_actions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["deadletter", "--help"])
    out = capsys.readouterr().out
    assert "list" in out and "resend" in out


def test_the_delivery_topics_follow_the_hub_topic_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    from lienthong.connectors.delivery.records import hub_topic

    monkeypatch.setenv("LIENTHONG_TOPIC_PREFIX", "h1.")
    assert [hub_topic(n) for n in ("DELIVERIES", "ALERTS", "DEADLETTER")] == [
        "h1.deliveries", "h1.alerts", "h1.deadletter"]
    monkeypatch.delenv("LIENTHONG_TOPIC_PREFIX")
    assert hub_topic("ALERTS") == "alerts"
