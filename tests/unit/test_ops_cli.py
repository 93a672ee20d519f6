"""``lienthong dashboard``: no start without operator accounts outside --demo; accounts managed
from the command line with hashed passwords."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lienthong.services.cli import main
from lienthong.services.ops.auth import load_users, verify_password


def test_the_dashboard_refuses_to_start_without_a_users_file(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIENTHONG_DASHBOARD_USERS", raising=False)
    assert main(["dashboard", "--port", "0"]) == 2
    assert "no default password" in capsys.readouterr().err


def test_users_add_stores_a_hash_and_the_scope(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    users = tmp_path / "users.yaml"
    monkeypatch.setattr("sys.stdin", io.StringIO("một mật khẩu dài\n"))
    assert main(["dashboard", "users", "add", "lan", "--role", "operator", "--agency",
                 "000.00.20.H99", "--personal-data", "--users", str(users),
                 "--password-stdin"]) == 0
    lan = load_users(users)["lan"]
    assert (lan.role, lan.agency, lan.may_see_personal_data) == ("operator", "000.00.20.H99",
                                                                 True)
    assert "một mật khẩu" not in users.read_text(encoding="utf-8")
    assert verify_password("một mật khẩu dài", lan.password_hash)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["dashboard", "users", "add", "kim", "--users", str(users),
                 "--password-stdin"]) == 1


def test_users_set_changes_rights_keeps_the_password_and_is_audited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    users, audit = tmp_path / "users.yaml", tmp_path / "audit.jsonl"
    monkeypatch.setattr("sys.stdin", io.StringIO("một mật khẩu dài\n"))
    assert main(["dashboard", "--audit-log", str(audit), "users", "add", "lan", "--role",
                 "admin", "--personal-data", "--users", str(users), "--password-stdin"]) == 0
    before = load_users(users)["lan"].password_hash
    assert main(["dashboard", "--audit-log", str(audit), "users", "set", "lan", "--role",
                 "viewer", "--agency", "000.00.20.H99", "--no-personal-data",
                 "--users", str(users)]) == 0
    lan = load_users(users)["lan"]
    assert (lan.role, lan.agency, lan.may_see_personal_data) == ("viewer", "000.00.20.H99",
                                                                 False)
    assert lan.password_hash == before
    assert main(["dashboard", "--audit-log", str(audit), "users", "set", "lan", "--agency",
                 "province", "--users", str(users)]) == 0
    assert load_users(users)["lan"].agency is None
    assert main(["dashboard", "--audit-log", str(audit), "users", "set", "kim",
                 "--users", str(users)]) == 1
    entries = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    assert [e["action"] for e in entries] == ["operator_saved", "operator_changed",
                                              "operator_changed"]
    assert entries[1]["operator"] == "lan" and entries[1]["role"] == "viewer"
    assert "mật khẩu" not in audit.read_text(encoding="utf-8")
